"""The hwfarm model directory: a trained network as data, never as a pickle.

What ``hwfarm train`` writes and ``hwfarm compress`` reads and writes::

    DIR/arch.json            what to rebuild and how it was made (below)
    DIR/weights.safetensors  the module's state_dict (safetensors, loads strictly)
    DIR/model.onnx           the same network for any runtime (opset 17, batch 1, input "input",
                             output "logits", BN folded, weights inside the file)

``arch.json`` (``"format": "hwfarm-model/1"``): ``arch`` (the spec :func:`nas.modules.build_module`
takes), ``in_channels``, ``input_size``, ``num_classes``, ``input``/``output`` (ONNX names and
shapes), ``data`` (the :mod:`nas.data` dataset name it was trained on: inputs are that
dataset's normalized images), ``accuracy`` (top-1 % on that dataset's held-out split, or null),
``params`` and ``macs`` (of the ONNX export, counted by farm's importer), ``size_kb`` (the
ONNX file, 1 kB = 1024 bytes), ``train`` (the training config and result), ``files`` (sha256
and bytes of the two weight files, checked on load), ``shapes`` (below), ``hwfarm_version``,
``torch_version``, ``created``, ``extra`` (anything the writer adds: e.g. compress's history).

**Pruned networks.** Structured pruning changes channel counts, so the spec alone no longer
rebuilds the module. :func:`save_model_dir` compares the module with a fresh build of the spec
and records every ``Conv2d``, ``BatchNorm1d/2d`` and ``Linear`` whose size differs under
``shapes`` — module name → its new size (``{"type": "Conv2d", "in_channels", "out_channels",
"groups"}``, ``{"type": "BatchNorm2d", "num_features"}``, ``{"type": "Linear", "in_features",
"out_features"}``). :func:`load_model_dir` rebuilds the spec, resizes exactly those layers
(attributes and empty parameters), then loads the weights strictly. So a pruned module saves
and loads like any other; a weight file that does not fit (a layer outside ``shapes`` of the
wrong size, a missing or extra tensor) is still refused. Only those layer types may change
size; any other change of structure is refused at save time.

Writes are atomic: everything goes to a hidden temporary folder beside the target, which is
renamed into place at the end; an error leaves nothing behind. An existing non-empty folder is
refused unless ``overwrite=True``.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from farm.errors import InputError, ModelError

__all__ = ["FORMAT", "ARCH_JSON", "WEIGHTS", "ONNX", "LoadedModel", "save_model_dir", "load_model_dir",
           "read_model_meta", "is_model_dir", "layer_shapes", "export_onnx"]

FORMAT = "hwfarm-model/1"
ARCH_JSON = "arch.json"
WEIGHTS = "weights.safetensors"
ONNX = "model.onnx"
OPSET = 17
INPUT_NAME, OUTPUT_NAME = "input", "logits"

# Layer types whose size may differ from the spec (what structured pruning changes): the
# attributes that say their size.
_SIZED = {"Conv2d": ("in_channels", "out_channels", "groups"), "BatchNorm1d": ("num_features",),
          "BatchNorm2d": ("num_features",), "Linear": ("in_features", "out_features")}


@dataclass(frozen=True)
class LoadedModel:
    """A model directory brought back: the torch ``module`` (eval mode) and ``arch.json``."""

    path: Path
    module: Any
    meta: dict[str, Any]

    @property
    def arch(self) -> str:
        return str(self.meta["arch"])

    @property
    def onnx_path(self) -> Path:
        return self.path / ONNX

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (1, int(self.meta["in_channels"]), int(self.meta["input_size"]), int(self.meta["input_size"]))

    @property
    def accuracy(self) -> float | None:
        """Top-1 % on the held-out split of ``meta["data"]`` (None when not measured)."""
        a = self.meta.get("accuracy")
        return None if a is None else float(a)


def is_model_dir(path: str | Path) -> bool:
    """Whether ``path`` is a folder holding an ``arch.json`` (a model directory, or a damaged one:
    :func:`load_model_dir` says what is wrong)."""
    p = Path(path)
    return p.is_dir() and (p / ARCH_JSON).is_file()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def layer_shapes(module: Any) -> dict[str, dict[str, Any]]:
    """Name → size attributes of every layer whose size may change (``_SIZED`` types)."""
    out: dict[str, dict[str, Any]] = {}
    for name, m in module.named_modules():
        kind = type(m).__name__
        if kind in _SIZED:
            out[name] = {"type": kind, **{a: int(getattr(m, a)) for a in _SIZED[kind]}}
    return out


def _resize(module: Any, shapes: Mapping[str, Any], *, source: str) -> None:
    """Give the named layers of ``module`` new sizes (empty parameters, to be loaded)."""
    import torch
    from torch import nn

    for name, attrs in shapes.items():
        try:
            m = module.get_submodule(name)
        except AttributeError:
            raise InputError(f"{source}: shapes names layer {name!r}, which the architecture does not have") from None
        kind = type(m).__name__
        if not isinstance(attrs, Mapping) or attrs.get("type") != kind or kind not in _SIZED:
            raise InputError(f"{source}: shapes[{name!r}] does not describe the architecture's {kind} layer")
        try:
            size = {a: int(attrs[a]) for a in _SIZED[kind]}
        except (KeyError, TypeError, ValueError):
            raise InputError(f"{source}: shapes[{name!r}] needs integer {', '.join(_SIZED[kind])}") from None
        if any(v < 1 for v in size.values()):
            raise InputError(f"{source}: shapes[{name!r}] has a size below 1")
        for a, v in size.items():
            setattr(m, a, v)

        def param(*shape: int) -> nn.Parameter:
            return nn.Parameter(torch.empty(*shape))

        if kind == "Conv2d":
            if size["in_channels"] % size["groups"] or size["out_channels"] % size["groups"]:
                raise InputError(f"{source}: shapes[{name!r}]: channels are not a multiple of groups")
            m.weight = param(size["out_channels"], size["in_channels"] // size["groups"], *m.kernel_size)
            if m.bias is not None:
                m.bias = param(size["out_channels"])
        elif kind == "Linear":
            m.weight = param(size["out_features"], size["in_features"])
            if m.bias is not None:
                m.bias = param(size["out_features"])
        else:  # BatchNorm
            n = size["num_features"]
            if m.affine:
                m.weight, m.bias = param(n), param(n)
            if m.track_running_stats:
                m.running_mean, m.running_var = torch.zeros(n), torch.ones(n)


def _shape_mismatch(module: Any, state: Mapping[str, Any]) -> str | None:
    """What keeps ``state`` from loading strictly into ``module`` (None when it fits)."""
    want = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in state.items()}
    missing, extra = sorted(want.keys() - have.keys()), sorted(have.keys() - want.keys())
    wrong = [f"{k} is {list(have[k])}, the architecture has {list(want[k])}" for k in want
             if k in have and have[k] != want[k]]
    for what, items in (("missing", missing), ("unexpected", extra), ("", wrong)):
        if items:
            more = f" (and {len(items) - 1} more)" if len(items) > 1 else ""
            return f"{what + ' tensor ' if what else ''}{items[0]}{more}"
    return None


def export_onnx(module: Any, path: Path, shape: tuple[int, int, int, int]) -> None:
    """``module`` as ONNX at ``path``: the TorchScript exporter (``dynamo=False``), opset 17, weights
    inside the file, fixed input ``shape`` named "input", output "logits", BN folded in eval mode.
    ModelError (one line) when the exporter fails."""
    import warnings

    import torch

    was_training = module.training
    module.eval()
    part = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
            torch.onnx.export(module, (torch.zeros(*shape),), str(part), dynamo=False, external_data=False,
                              opset_version=OPSET, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              do_constant_folding=True)
        os.replace(part, path)
    except Exception as e:  # an op the exporter does not know, a shape error: one line
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ModelError(f"could not export the module to ONNX: {first}") from None
    finally:
        part.unlink(missing_ok=True)
        module.train(was_training)


def save_model_dir(path: str | Path, *, arch_spec: str, module: Any, dataset: str | None, input_size: int,
                   in_channels: int, num_classes: int, accuracy: float | None,
                   train: Mapping[str, Any] | None = None, extra: Mapping[str, Any] | None = None,
                   overwrite: bool = False) -> Path:
    """Write ``module`` (built from ``arch_spec``, possibly pruned since) as a model directory at
    ``path`` and return it. ``accuracy``: top-1 % on ``dataset``'s held-out split. Atomic;
    InputError if ``path`` is a non-empty folder (unless ``overwrite``) or the module does not
    fit the spec."""
    import torch
    from safetensors.torch import save as save_safetensors

    import farm
    from farm.formats.onnx import graph_from_onnx, parse_onnx
    from nas.modules import build_module

    target = Path(path)
    if target.exists() and not target.is_dir():
        raise InputError(f"{target}: exists and is not a folder")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise InputError(f"{target}: folder exists and is not empty (overwrite it, or choose another output)")

    # What rebuilds this module: the spec, plus the layers whose size differs from it.
    ref = build_module(arch_spec, num_classes=num_classes, in_channels=in_channels, input_size=input_size)
    ref_shapes, own_shapes = layer_shapes(ref), layer_shapes(module)
    shapes = {k: v for k, v in own_shapes.items() if ref_shapes.get(k) != v}
    for k in shapes:
        if k not in ref_shapes:
            raise InputError(f"cannot save: layer {k!r} is not part of architecture {arch_spec!r}")
    _resize(ref, shapes, source=arch_spec)
    state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    bad = _shape_mismatch(ref, state)
    if bad is not None:
        raise InputError(f"cannot save: the module does not fit architecture {arch_spec!r} ({bad}); only "
                         f"{', '.join(_SIZED)} layers may change size")

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp"
    tmp.mkdir()
    try:
        shape = (1, in_channels, input_size, input_size)
        # (bytes, then an ordinary write: save_file would leave the file readable by its owner only)
        (tmp / WEIGHTS).write_bytes(save_safetensors(state, metadata={"format": "pt", "arch": arch_spec}))
        export_onnx(module, tmp / ONNX, shape)
        g = graph_from_onnx(parse_onnx((tmp / ONNX).read_bytes(), source=str(target / ONNX)),
                            source=str(target / ONNX))
        meta: dict[str, Any] = {
            "format": FORMAT,
            "arch": arch_spec,
            "in_channels": in_channels,
            "input_size": input_size,
            "num_classes": num_classes,
            "input": {"name": INPUT_NAME, "shape": list(shape), "dtype": "float32"},
            "output": {"name": OUTPUT_NAME, "shape": [1, num_classes]},
            "data": dataset,
            "accuracy": None if accuracy is None else round(float(accuracy), 4),
            "params": int(g.params),
            "macs": int(g.macs),
            "size_kb": round((tmp / ONNX).stat().st_size / 1024, 2),
            "shapes": shapes,
            "train": dict(train) if train is not None else None,
            "files": {f: {"sha256": _sha256(tmp / f), "bytes": (tmp / f).stat().st_size} for f in (WEIGHTS, ONNX)},
            "hwfarm_version": farm.__version__,
            "torch_version": str(torch.__version__),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "extra": dict(extra) if extra is not None else {},
        }
        (tmp / ARCH_JSON).write_text(json.dumps(meta, indent=2) + "\n")
        if target.exists():
            old = target.parent / f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}.old"
            os.rename(target, old)
            try:
                os.rename(tmp, target)
            except BaseException:
                os.rename(old, target)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def read_model_meta(path: str | Path) -> dict[str, Any]:
    """``arch.json`` of a model directory, checked for the keys a rebuild needs (no torch)."""
    p = Path(path)
    if not p.is_dir():
        raise InputError(f"{p}: no such model directory")
    f = p / ARCH_JSON
    try:
        meta = json.loads(f.read_text())
    except FileNotFoundError:
        raise InputError(f"{p}: not a model directory (no {ARCH_JSON})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{f}: unreadable or not JSON ({type(e).__name__})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise InputError(f"{f}: not an hwfarm model description (expected \"format\": \"{FORMAT}\")")
    for key, kind in (("arch", str), ("in_channels", int), ("input_size", int), ("num_classes", int),
                      ("files", dict)):
        if not isinstance(meta.get(key), kind):
            raise InputError(f"{f}: field {key!r} is missing or not {kind.__name__}")
    if not isinstance(meta.get("shapes") or {}, dict):
        raise InputError(f"{f}: field 'shapes' is not an object")
    return meta


def load_model_dir(path: str | Path) -> LoadedModel:
    """Rebuild the module of a model directory and load its weights (eval mode). InputError for
    a missing or corrupt file, a file that does not match its sha256, weights that do not fit."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from nas.modules import build_module

    p = Path(path)
    meta = read_model_meta(p)
    for name in (WEIGHTS, ONNX):
        f = p / name
        if not f.is_file():
            raise InputError(f"{f}: missing (the model directory is incomplete)")
        want = (meta["files"].get(name) or {}).get("sha256")
        if want is not None and _sha256(f) != want:
            raise InputError(f"{f}: contents do not match the sha256 in {ARCH_JSON} (modified or corrupt)")
    module = build_module(meta["arch"], num_classes=meta["num_classes"], in_channels=meta["in_channels"],
                          input_size=meta["input_size"])
    _resize(module, meta.get("shapes") or {}, source=str(p / ARCH_JSON))
    try:
        state = load_file(str(p / WEIGHTS))
    except (SafetensorError, OSError, ValueError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise InputError(f"{p / WEIGHTS}: not a readable safetensors file: {first}") from None
    bad = _shape_mismatch(module, state)
    if bad is not None:
        raise InputError(f"{p / WEIGHTS}: weights do not fit architecture {meta['arch']!r}: {bad}")
    module.load_state_dict(state, strict=True)
    module.eval()
    return LoadedModel(path=p, module=module, meta=meta)
