"""How a compress command judges a model: what goes in, held-out accuracy, latency on the device.

- :func:`resolve_model`: MODEL is an ONNX file or an hwfarm model directory (its ``model.onnx``,
  and the dataset its ``arch.json`` names as the default data);
- :func:`accuracy_onnx`: every compress command reports accuracy before and after on the same
  held-out images (:func:`nas.data.load_dataset` ``split="test"``), computed the same way for
  the original and the compressed file: onnxruntime on the host CPU, the file as deployed;
- :func:`measure_speedup`: both files measured by the farm on the device — on a real device in
  paired rounds (:func:`farm.compare`, the project's proof of a speedup), on a simulated one
  profiled once each — and :func:`predict_pair`: the device predictor's view of both.

Models exported for a device usually have a fixed batch of 1 (the farm needs static shapes).
:func:`logits_onnx` then runs a copy whose batch dimension is made symbolic, checked against
the file itself on the first images (a Reshape that hard-codes the batch would break it, so
any disagreement or failure falls back to one image per run: correct first, fast where safe).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from farm.errors import HwfarmError, InputError, ModelError
from nas.data import Dataset

__all__ = ["ImageInput", "ResolvedModel", "Latencies", "image_input", "resolve_model", "check_data", "logits_onnx",
           "accuracy_onnx", "measure_speedup", "predict_pair"]

_CHECK_IMAGES = 8  # images a batched copy must reproduce before it is trusted


@dataclass(frozen=True)
class ImageInput:
    """A model's one image input: NCHW, ``batch`` None when symbolic."""

    name: str
    batch: int | None
    channels: int
    height: int
    width: int

    @property
    def size(self) -> int:
        return self.height


def _load(path: Path) -> Any:
    import onnx

    if not path.is_file():
        raise ModelError(f"{path}: model file not found" if not path.exists() else f"{path}: not a model file")
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as err:  # protobuf's DecodeError and friends: not an ONNX file
        raise ModelError(f"{path}: not a readable ONNX model ({type(err).__name__})") from None


def image_input(path: str | os.PathLike[str]) -> ImageInput:
    """The one float32 4-D (N, C, H, W) square image input of an ONNX model; a ModelError
    naming the file otherwise (several inputs, not 4-D, not float, a symbolic C/H/W)."""
    from onnx import TensorProto

    p = Path(path)
    model = _load(p)
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ModelError(f"{p}: expected one image input, found {len(inputs)} ({', '.join(i.name for i in inputs)})")
    t = inputs[0].type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
    if t.elem_type != TensorProto.FLOAT or len(dims) != 4:
        raise ModelError(f"{p}: input {inputs[0].name!r} is not a 4-D float image (N, C, H, W): "
                         f"{len(dims)}-D, {TensorProto.DataType.Name(t.elem_type).lower()}")
    n, c, h, w = dims
    if c is None or h is None or w is None or c not in (1, 3) or h != w:
        raise ModelError(f"{p}: input {inputs[0].name!r} has shape {dims}; expected (N, 1 or 3, S, S) with "
                         f"static channels and size")
    return ImageInput(inputs[0].name, n if n else None, c, h, w)


def check_data(inp: ImageInput, data: Dataset, *, label: str) -> None:
    """InputError unless ``data``'s images fit ``inp`` (channels and size)."""
    if (data.channels, data.input_size) != (inp.channels, inp.size):
        raise InputError(f"{label}: the model takes {inp.channels}x{inp.size}x{inp.size} images, dataset "
                         f"{data.name!r} gives {data.channels}x{data.input_size}x{data.input_size}")


def _session(model: Any, threads: int | None) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])


def _batched_copy(path: Path) -> bytes:
    """The model's bytes with the input's and outputs' first dimension symbolic."""
    import onnx

    model = onnx.load(str(path))
    for vi in (*model.graph.input, *model.graph.output):
        shape = vi.type.tensor_type.shape
        if len(shape.dim):
            shape.dim[0].Clear()
            shape.dim[0].dim_param = "batch"
    del model.graph.value_info[:]  # fixed intermediate shapes would contradict the new batch
    return bytes(model.SerializeToString())


def _run(sess: Any, name: str, x: np.ndarray) -> np.ndarray:
    return np.asarray(sess.run(None, {name: x})[0])


def logits_onnx(path: str | os.PathLike[str], x: np.ndarray, *, batch_size: int = 256,
                threads: int | None = None) -> np.ndarray:
    """(n, classes) outputs of the model's first output for images ``x`` (n, C, H, W)."""
    p = Path(path)
    inp = image_input(p)
    if x.shape[1:] != (inp.channels, inp.height, inp.width):
        raise InputError(f"{p}: images of shape {x.shape[1:]} do not fit input {inp.name!r} "
                         f"({inp.channels}, {inp.height}, {inp.width})")
    if len(x) == 0:
        return np.zeros((0, 0), np.float32)
    own = _session(str(p), threads)
    if inp.batch is None:
        return np.concatenate([_run(own, inp.name, x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
    fixed = inp.batch
    if fixed == 1 and len(x) > 1:
        try:
            batched = _session(_batched_copy(p), threads)
            k = min(_CHECK_IMAGES, len(x))
            want = np.concatenate([_run(own, inp.name, x[i:i + 1]) for i in range(k)])
            got = _run(batched, inp.name, x[:k])
            scale = float(np.abs(want).max()) or 1.0
            if got.shape == want.shape and np.allclose(got, want, rtol=1e-3, atol=1e-3 * scale) \
                    and (got.argmax(-1) == want.argmax(-1)).all():
                return np.concatenate([want] + [_run(batched, inp.name, x[i:i + batch_size])
                                                for i in range(k, len(x), batch_size)])
        except Exception:  # any failure of the copy: run the file itself, one image at a time
            pass
    out = []
    for i in range(0, len(x), fixed):
        chunk = x[i:i + fixed]
        short = fixed - len(chunk)
        if short:  # pad the last chunk with copies of its first image, drop their outputs
            chunk = np.concatenate([chunk, np.repeat(chunk[:1], short, axis=0)])
        out.append(_run(own, inp.name, np.ascontiguousarray(chunk))[:fixed - short])
    return np.concatenate(out)


def accuracy_onnx(path: str | os.PathLike[str], data: Dataset, *, batch_size: int = 256,
                  threads: int | None = None) -> float:
    """Top-1 accuracy in % of the ONNX model at ``path`` on ``data`` (use the held-out split)."""
    inp = image_input(path)
    check_data(inp, data, label=str(path))
    logits = logits_onnx(path, data.x, batch_size=batch_size, threads=threads)
    if logits.ndim != 2 or logits.shape[0] != len(data):
        raise ModelError(f"{path}: expected (n, classes) outputs, got shape {logits.shape}")
    return float((logits.argmax(1) == data.y).mean() * 100.0)


@dataclass(frozen=True)
class ResolvedModel:
    """MODEL as given: the ONNX file to read, and what a model directory says about it."""

    onnx: Path
    directory: Path | None  # the model directory, when MODEL was one
    data: str | None  # the dataset it was trained on (a model directory's arch.json)
    accuracy: float | None  # held-out accuracy arch.json records


def resolve_model(model: str | os.PathLike[str]) -> ResolvedModel:
    """An ONNX file, or a model directory written by hwfarm (``nas.modeldir``: its model.onnx).
    ModelError / InputError naming the path for anything else."""
    from nas.modeldir import ONNX, is_model_dir, read_model_meta

    p = Path(model)
    if is_model_dir(p):
        meta = read_model_meta(p)
        f = p / ONNX
        if not f.is_file():
            raise InputError(f"{f}: missing (the model directory is incomplete)")
        acc = meta.get("accuracy")
        data = meta.get("data")
        return ResolvedModel(f, p, str(data) if data else None, float(acc) if isinstance(acc, int | float) else None)
    if p.is_dir():
        raise InputError(f"{p}: a folder but not a model directory (no arch.json); give an .onnx file or a "
                         f"folder written by `hwfarm train`")
    if not p.exists():
        raise ModelError(f"{p}: model file not found")
    if p.suffix.lower() != ".onnx":
        raise ModelError(f"{p}: expected an .onnx file or a model directory")
    return ResolvedModel(p, None, None, None)


@dataclass(frozen=True)
class Latencies:
    """The farm's latencies of a model before and after compression on one device.

    ``measured``: both are farm measurements (``simulated``: by a simulated device); else
    ``error`` says why not (an unreachable device, a model the device refused). ``speedup`` is
    before / after; ``ci95`` and ``pairs`` only from paired rounds on a real device."""

    before_ms: float | None
    after_ms: float | None
    measured: bool
    simulated: bool = False
    speedup: float | None = None
    ci95: tuple[float, float] | None = None
    pairs: int | None = None
    error: str | None = None


def measure_speedup(before: str | os.PathLike[str], after: str | os.PathLike[str], *, device: str,
                    registry: str | os.PathLike[str] = "devices.yaml", db: str | os.PathLike[str] = "hwfarm.db",
                    rounds: int | None = None) -> Latencies:
    """Measure both models on ``device`` through the farm (stored in ``db`` like any profile).
    A real device runs them in ``rounds`` paired rounds each (default
    :data:`farm.api.PAIRED_ROUNDS`); a simulated one profiles each once. A failure to measure
    (device unreachable, a model it refuses) gives ``measured=False`` with the reason; bad input
    (an unknown device, a missing file) raises."""
    import math

    from farm.api import PAIRED_ROUNDS, compare, profile
    from farm.devices.caps import device_caps
    from farm.registry.spec import load_registry

    spec = load_registry(registry).get(device)
    simulated = device_caps(spec).simulated
    try:
        if simulated:
            ra, rb = profile([before, after], device=device, registry=registry, db=db)
            for r in (ra, rb):
                if r.measurement is None:
                    raise HwfarmError(r.error or f"{r.model}: not measured")
            assert ra.measurement is not None and rb.measurement is not None
            a, b = ra.measurement.latency_ms, rb.measurement.latency_ms
            return Latencies(a, b, True, True, a / b if b > 0 else None)
        c = compare(before, after, device=device, rounds=rounds or PAIRED_ROUNDS, registry=registry, db=db)
    except InputError:
        raise
    except HwfarmError as err:
        return Latencies(None, None, False, simulated, error=str(err))
    assert c.a.measurement is not None and c.b.measurement is not None
    ratio = c.ratio  # after / before
    lo = 1.0 / ratio.ci_high if ratio.ci_high > 0 and math.isfinite(ratio.ci_high) else 0.0
    hi = 1.0 / ratio.ci_low if ratio.ci_low > 0 else math.inf
    return Latencies(c.a.measurement.latency_ms, c.b.measurement.latency_ms, True, False, 1.0 / ratio.ratio,
                     (lo, hi), ratio.pairs)


def predict_pair(before: str | os.PathLike[str], after: str | os.PathLike[str], *, device: str,
                 db: str | os.PathLike[str] = "hwfarm.db") -> tuple[str, float, float] | None:
    """(bundle id, predicted ms before, after) from ``device``'s newest predictor bundle beside
    ``db``; None when the device has none."""
    from predictors.api import load

    try:
        p = load(device, db=db)
    except InputError:
        return None
    a, b = p.predict_many([before, after])
    return p.bundle_id, a.latency_ms, b.latency_ms
