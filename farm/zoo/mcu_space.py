"""The MCU search space (MCUNet's TinyNAS, Lin et al., NeurIPS 2020) as graph IR, int8, no torch.

TinyNAS searches a MobileNetV2-like backbone after first choosing a global width multiplier
and an input resolution that make the space fit the microcontroller; so does this space:

- width multiplier ``w`` ∈ {0.2, 0.3, …, 1.0} and input resolution ``r`` ∈ {48, 64, …, 224};
- six stages of inverted residual blocks with ``[24, 32, 64, 96, 160, 320]``·w channels
  (rounded to multiples of 8, at least 8) and first-block strides ``[2, 2, 2, 1, 2, 1]``;
  stages 1–5 have depth 2, 3 or 4, stage 6 one block;
- per block a depthwise kernel ``k`` ∈ {3, 5, 7} and an expansion ratio ``e`` ∈ {3, 4, 6};
- per stage an activation: ReLU6 (TinyNAS, everywhere), or h-swish (MobileNetV3's later
  stages). The second choice exists for accelerator-aware search: an int8 MCU runs both,
  but an accelerator compiler may not map h-swish and send the rest of the graph to its
  host CPU (the Edge TPU's rule); see :mod:`nas.accelerator`.

Fixed around the searched part (MobileNetV2's): 3×3/2 conv to 32·w + BN + ReLU6, a 3×3
depthwise-separable block to 16·w, and after stage 6 a 1×1 conv to 1280·w + BN (with stage
6's activation), global average pool, classifier to ``classes`` (1000, ImageNet, as MCUNet).
A block is 1×1 expand to e·C_in + BN + act, k×k depthwise with the block's stride + BN + act,
1×1 project + BN, and a residual add where the stride is 1 and the channels match. Convs
have no bias (BN follows; its 4 int8 numbers per channel weigh what the int32 bias it folds
into does); the classifier's bias is int32, as in an int8 ``.tflite``. Padding is
TensorFlow's SAME, what such a file holds (no separate PAD tensors).

The graph is int8 throughout (``dtype="float32"`` builds its float twin, for ONNX export):
peak SRAM under the execution order and flash come from :mod:`farm.ir.memory`. Its BN and
activation nodes keep their own output tensors, so its peak SRAM bounds what the fused int8
``.tflite`` needs on the device from above (equal where the peak sits at a convolution, as
for most architectures; down to 0.6× where it sits at a BN or activation); flash matches
the ``.tflite``'s weights to within a few dozen bytes (ReLU6 bounds here, shape tensors there).

Spelling (canonical, what ``resolve`` returns; stages joined by ``-``, blocks by ``_``;
``h`` after a stage's number marks h-swish)::

    w0.5-r128-s1:k3e4_k5e3-s2:k5e6_k3e3_k7e4-s3:k3e3_k3e3-s4h:k5e6_k5e6-s5h:k7e6_k7e6_k7e6_k7e6-s6h:k3e6
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from farm.errors import InputError
from farm.ir.builder import IRBuilder
from farm.ir.graph import Graph
from farm.zoo.mobilenet import make_divisible

__all__ = ["WIDTHS", "RESOLUTIONS", "STAGES", "DEPTHS", "KERNELS", "EXPANDS", "ACTS", "MCUArch", "parse_arch",
           "arch_str", "build_mcu", "channels", "MCUSpace"]

WIDTHS: tuple[float, ...] = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
RESOLUTIONS: tuple[int, ...] = tuple(range(48, 225, 16))
STAGES: tuple[tuple[int, int], ...] = ((24, 2), (32, 2), (64, 2), (96, 1), (160, 2), (320, 1))  # (channels, stride)
DEPTHS: tuple[tuple[int, ...], ...] = ((2, 3, 4),) * 5 + ((1,),)  # choices per stage
KERNELS: tuple[int, ...] = (3, 5, 7)
EXPANDS: tuple[int, ...] = (3, 4, 6)
ACTS: tuple[str, ...] = ("relu6", "hswish")
STEM_CHANNELS, FIRST_CHANNELS, HEAD_CHANNELS = 32, 16, 1280

_STAGE_RE = re.compile(r"s(\d+)(h?):(.+)")
_BLOCK_RE = re.compile(r"k(\d+)e(\d+)")


@dataclass(frozen=True)
class MCUArch:
    """One architecture: ``stages[i]`` is (activation, ((kernel, expand) per block, …))."""

    width: float
    resolution: int
    stages: tuple[tuple[str, tuple[tuple[int, int], ...]], ...]

    def __post_init__(self) -> None:
        _check(self)


def _check(a: MCUArch) -> None:
    """ValueError naming what is outside the space."""
    if not any(math.isclose(a.width, w) for w in WIDTHS):
        raise ValueError(f"width multiplier {a.width:g} is not one of {', '.join(f'{w:g}' for w in WIDTHS)}")
    if a.resolution not in RESOLUTIONS:
        raise ValueError(f"resolution {a.resolution} is not one of {RESOLUTIONS[0]}, {RESOLUTIONS[1]}, …, "
                         f"{RESOLUTIONS[-1]} (step {RESOLUTIONS[1] - RESOLUTIONS[0]})")
    if len(a.stages) != len(STAGES):
        raise ValueError(f"expected {len(STAGES)} stages, got {len(a.stages)}")
    for i, (act, blocks) in enumerate(a.stages, start=1):
        if act not in ACTS:
            raise ValueError(f"stage {i}: activation {act!r} is not one of {', '.join(ACTS)}")
        if len(blocks) not in DEPTHS[i - 1]:
            raise ValueError(f"stage {i}: depth {len(blocks)} is not one of {', '.join(map(str, DEPTHS[i - 1]))}")
        for j, (k, e) in enumerate(blocks, start=1):
            if k not in KERNELS or e not in EXPANDS:
                raise ValueError(f"stage {i} block {j}: k{k}e{e} is not a block of the space (kernel "
                                 f"{'/'.join(map(str, KERNELS))}, expand {'/'.join(map(str, EXPANDS))})")


def _width_str(w: float) -> str:
    return f"{w:.1f}"


def arch_str(a: MCUArch) -> str:
    """The canonical spelling."""
    parts = [f"w{_width_str(a.width)}", f"r{a.resolution}"]
    for i, (act, blocks) in enumerate(a.stages, start=1):
        parts.append(f"s{i}{'h' if act == 'hswish' else ''}:" + "_".join(f"k{k}e{e}" for k, e in blocks))
    return "-".join(parts)


def _short(spec: str) -> str:
    return repr(spec if len(spec) <= 60 else spec[:57] + "...")


def parse_arch(spec: str) -> MCUArch:
    """A spelling (spaces around it ignored) → :class:`MCUArch`; ValueError naming what is wrong."""
    parts = [p.strip() for p in spec.strip().split("-")]
    want = 2 + len(STAGES)
    if len(parts) != want:
        raise ValueError(f"MCU architecture {_short(spec)}: expected {want} '-'-separated parts "
                         f"(wW-rR-s1:…-…-s{len(STAGES)}:…), got {len(parts)}")
    w, r = parts[0], parts[1]
    try:
        if not w.startswith("w") or not r.startswith("r"):
            raise ValueError
        width, resolution = float(w[1:]), int(r[1:])
    except ValueError:
        raise ValueError(f"MCU architecture {_short(spec)}: expected a width 'w0.5' and a resolution 'r128' "
                         f"first, got {w!r} and {r!r}") from None
    stages = []
    for i, part in enumerate(parts[2:], start=1):
        m = _STAGE_RE.fullmatch(part)
        if m is None or int(m.group(1)) != i:
            raise ValueError(f"MCU architecture {_short(spec)}: stage {i} should read 's{i}:k3e4_…' "
                             f"(or 's{i}h:…' for h-swish), got {part!r}")
        blocks = []
        for b in m.group(3).split("_"):
            mb = _BLOCK_RE.fullmatch(b.strip())
            if mb is None:
                raise ValueError(f"MCU architecture {_short(spec)}: stage {i}: block {b!r} should read 'k3e4'")
            blocks.append((int(mb.group(1)), int(mb.group(2))))
        stages.append(("hswish" if m.group(2) else "relu6", tuple(blocks)))
    width = next((x for x in WIDTHS if math.isclose(x, width)), width)
    try:
        return MCUArch(width, resolution, tuple(stages))
    except ValueError as err:
        raise ValueError(f"MCU architecture {_short(spec)}: {err}") from None


def channels(c: int, width: float) -> int:
    """Channels at width multiplier ``width``: multiples of 8, at least 8 (MobileNetV2's rounding)."""
    return make_divisible(c * width, 8)


def _act(b: IRBuilder, name: str, x: str, act: str) -> str:
    return b.relu6(f"{name}.relu6", x) if act == "relu6" else b.act(f"{name}.hswish", "HardSwish", x)


def _cba(b: IRBuilder, name: str, x: str, cout: int, k: int, stride: int = 1, *, act: str | None,
         depthwise: bool = False) -> str:
    if depthwise:
        x = b.dwconv(f"{name}.conv", x, k, stride, pad="same")
    else:
        x = b.conv(f"{name}.conv", x, cout, k, stride, pad="same")
    x = b.bn(f"{name}.bn", x)
    return x if act is None else _act(b, name, x, act)


def build_mcu(arch: str | MCUArch, *, classes: int = 1000, dtype: str = "int8") -> Graph:
    """The architecture's graph IR (int8 by default; ``dtype="float32"`` for export)."""
    a = parse_arch(arch) if isinstance(arch, str) else arch
    if classes < 1:
        raise ValueError(f"classes must be >= 1, got {classes}")
    w = a.width
    b = IRBuilder((1, 3, a.resolution, a.resolution), dtype=dtype)
    x = _cba(b, "stem", "input", channels(STEM_CHANNELS, w), 3, 2, act="relu6")
    x = _cba(b, "first.dw", x, 0, 3, act="relu6", depthwise=True)
    x = _cba(b, "first.project", x, channels(FIRST_CHANNELS, w), 1, act=None)
    cin = channels(FIRST_CHANNELS, w)
    for i, ((c, s), (act, blocks)) in enumerate(zip(STAGES, a.stages, strict=True), start=1):
        cout = channels(c, w)
        for j, (k, e) in enumerate(blocks, start=1):
            stride = s if j == 1 else 1
            name = f"s{i}.b{j}"
            y = _cba(b, f"{name}.expand", x, cin * e, 1, act=act)
            y = _cba(b, f"{name}.dw", y, 0, k, stride, act=act, depthwise=True)
            y = _cba(b, f"{name}.project", y, cout, 1, act=None)
            x = b.add(f"{name}.add", x, y) if stride == 1 and cin == cout else y
            cin = cout
    x = _cba(b, "head", x, channels(HEAD_CHANNELS, w), 1, act=a.stages[-1][0])
    x = b.flatten("flatten", b.global_avgpool("gap", x))
    # The classifier's bias is int32 in an int8 model (as the converter writes it), so flash counts 4 bytes each.
    n, k = b.shape(x)
    x = b.node("classifier", "Gemm", [x], (n, classes), {"weight": (classes, k), "bias": (classes,)},
               weight_dtypes={"bias": "int32"} if dtype == "int8" else None, transB=1)
    return b.build(f"mcu_{arch_str(a)}", x)


class MCUSpace:
    """The MCU space (see the module doc): candidates are spellings, graphs are int8.

    Optuna parameters (:mod:`nas.params`): ``width``, ``resolution``, per stage ``sI_depth``
    and ``sI_act``, per block slot ``sI_bJ_k`` and ``sI_bJ_e`` (slots past a stage's depth
    are ignored when decoding, and encode as the first option)."""

    name = "mcu"
    size = (len(WIDTHS) * len(RESOLUTIONS) * len(ACTS) ** len(STAGES)
            * math.prod(sum((len(KERNELS) * len(EXPANDS)) ** d for d in ds) for ds in DEPTHS))
    table_columns = ("arch_idx", "arch")

    def __init__(self, *, classes: int = 1000) -> None:
        self.classes = classes

    def sample(self, rng: np.random.Generator) -> str:
        width = WIDTHS[int(rng.integers(len(WIDTHS)))]
        res = RESOLUTIONS[int(rng.integers(len(RESOLUTIONS)))]
        stages = []
        for ds in DEPTHS:
            depth = ds[int(rng.integers(len(ds)))]
            act = ACTS[int(rng.integers(len(ACTS)))]
            stages.append((act, tuple((KERNELS[int(rng.integers(len(KERNELS)))],
                                       EXPANDS[int(rng.integers(len(EXPANDS)))]) for _ in range(depth))))
        return arch_str(MCUArch(width, res, tuple(stages)))

    def to_graph(self, arch: str) -> Graph:
        return self.graph(arch)

    def graph(self, arch: str, *, dtype: str = "int8") -> Graph:
        """The graph IR; ``dtype="float32"`` builds the float twin (ONNX export, torch check)."""
        try:
            return build_mcu(arch, classes=self.classes, dtype=dtype)
        except ValueError as err:
            raise InputError(str(err)) from None

    def resolve(self, spec: str, *, table: Path | None = None) -> str:
        """A spelling, or an ``arch_idx`` looked up in a table with ``arch_idx`` and ``arch``
        (or ``arch_str``) columns."""
        spec = spec.strip()
        if not spec.isdigit():
            try:
                return arch_str(parse_arch(spec))
            except ValueError as err:
                raise InputError(str(err)) from None
        if table is None:
            raise InputError(f"architecture index {spec} needs a table with arch_idx and arch columns (--table)")
        with open(table, newline="") as f:
            reader = csv.DictReader(f)
            cols = set(reader.fieldnames or ())
            col = "arch" if "arch" in cols else "arch_str"
            if "arch_idx" not in cols or col not in cols:
                raise InputError(f"{table}: not an architecture table (needs columns arch_idx and arch)")
            for row in reader:
                if row["arch_idx"] == spec:
                    try:
                        return arch_str(parse_arch(row[col]))
                    except ValueError as err:
                        raise InputError(f"{table}: arch_idx {spec}: {err}") from None
        raise InputError(f"{table}: no architecture with arch_idx {spec}")

    # -- Optuna parameters (nas.params) ---------------------------------------------------

    def params(self) -> tuple[tuple[str, tuple[Any, ...]], ...]:
        out: list[tuple[str, tuple[Any, ...]]] = [("width", WIDTHS), ("resolution", RESOLUTIONS)]
        for i, ds in enumerate(DEPTHS, start=1):
            out += [(f"s{i}_depth", ds), (f"s{i}_act", ACTS)]
            for j in range(1, max(ds) + 1):
                out += [(f"s{i}_b{j}_k", KERNELS), (f"s{i}_b{j}_e", EXPANDS)]
        return tuple(out)

    def from_params(self, values: Any) -> str:
        try:
            stages = []
            for i in range(1, len(STAGES) + 1):
                depth = int(values[f"s{i}_depth"])
                stages.append((str(values[f"s{i}_act"]), tuple((int(values[f"s{i}_b{j}_k"]),
                                                                 int(values[f"s{i}_b{j}_e"]))
                                                                for j in range(1, depth + 1))))
            return arch_str(MCUArch(float(values["width"]), int(values["resolution"]), tuple(stages)))
        except KeyError as err:
            raise InputError(f"MCU parameters: no value for {err.args[0]!r}") from None
        except ValueError as err:
            raise InputError(f"MCU parameters: {err}") from None

    def to_params(self, arch: str) -> dict[str, Any]:
        try:
            a = parse_arch(arch)
        except ValueError as err:
            raise InputError(str(err)) from None
        out: dict[str, Any] = {"width": next(w for w in WIDTHS if math.isclose(w, a.width)),
                               "resolution": a.resolution}
        for i, (ds, (act, blocks)) in enumerate(zip(DEPTHS, a.stages, strict=True), start=1):
            out[f"s{i}_depth"], out[f"s{i}_act"] = len(blocks), act
            for j in range(1, max(ds) + 1):
                k, e = blocks[j - 1] if j <= len(blocks) else (KERNELS[0], EXPANDS[0])
                out[f"s{i}_b{j}_k"], out[f"s{i}_b{j}_e"] = k, e
        return out
