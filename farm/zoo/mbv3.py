"""The MobileNetV3 / Once-for-All search space (Cai et al., ICLR 2020) as graph IR, no torch.

The layout is OFA's ``OFAMobileNetV3`` (``ofa/imagenet_classification/elastic_nn/networks/
ofa_mbv3.py``), whose sub-networks are the space:

- a 3×3/2 conv to 16·w + BN + h-swish; a first block that is an MBConv with expand ratio 1
  (3×3 depthwise + BN + ReLU, 1×1 project to 16·w + BN, residual add);
- five stages with ``[24, 40, 80, 112, 160]``·w channels, first-block strides ``[2, 2, 2, 1,
  2]``, activations ReLU, ReLU, h-swish, h-swish, h-swish, and squeeze-excite in the stages of
  40, 112 and 160 channels; each stage keeps its first 2, 3 or 4 blocks (**depth**), and each
  block has its own depthwise **kernel** 3, 5 or 7 and **expand ratio** 3, 4 or 6;
- a 1×1 conv to 960·w + BN + h-swish, global average pool, a 1×1 conv to 1280·w (no BN, no
  bias) + h-swish, and the classifier (1000 classes, ImageNet, as OFA).

An MBConv block: 1×1 expand to ``make_divisible(C_in·e, 8)`` + BN + act (absent for e = 1),
k×k depthwise with the block's stride + BN + act, squeeze-excite where the stage has it, 1×1
project + BN, and a residual add where the stride is 1 and the channels match. Squeeze-excite
(OFA's ``SEModule``): global average pool, 1×1 conv (with bias) to ``make_divisible(C/4, 8)``,
ReLU, 1×1 conv (with bias) back to C, hard-sigmoid, times the block's tensor — the ops
``torch.onnx.export`` writes for ``AdaptiveAvgPool2d(1)``, ``nn.Hardsigmoid`` (``HardSigmoid``
with alpha 1/6, beta 0.5) and ``nn.Hardswish`` (``HardSwish``). Convs without a bias are
followed by BN; padding is ``k // 2`` on every side (PyTorch's, OFA's ``get_same_padding``).

Choices around the searched part:

- input resolution ∈ {128, 144, …, 224} (OFA trains at these, step 16; any size whose
  five stride-2 steps leave a pixel would build);
- width multiplier ∈ {1.0, 1.2}: the two OFA MobileNetV3 supernets that were trained
  (``ofa_mbv3_d234_e346_k357_w1.0`` and ``…_w1.2``); channels ``make_divisible(c·w, 8)``
  (w1.2: 24, 24, 32, 48, 96, 136, 192, 1152, 1536).

Spelling (canonical, what ``resolve`` returns; the width, the resolution, then the stages
joined by ``-``, each stage's active blocks joined by ``,`` — its depth is how many)::

    w1.0-r160-s1:k3e4,k5e3-s2:k5e6,k3e3,k7e4-s3:k3e3,k3e3-s4:k5e6,k5e6-s5:k7e6,k7e6,k7e6,k7e6

The same shape as the MCU space's (:mod:`farm.zoo.mcu_space`), whose stages also carry an
activation; here each stage's activation is fixed by OFA's layout.

For fast pricing, :func:`blocks` splits an architecture into hashable block specs and
:func:`block_graph` builds one block alone: the full graph is those blocks' nodes in order
(both are written by the same code), so a per-block lookup table of any per-kernel cost
adds up to the cost of the whole graph (see ``nas.lut``).
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from farm.errors import InputError
from farm.ir.builder import IRBuilder
from farm.ir.graph import Graph
from farm.zoo.mobilenet import make_divisible

__all__ = ["WIDTHS", "RESOLUTIONS", "STAGES", "DEPTHS", "KERNELS", "EXPANDS", "MBV3Arch", "Block", "parse_arch",
           "arch_str", "channels", "blocks", "block_graph", "block_macs", "build_mbv3", "MBV3Space"]

WIDTHS: tuple[float, ...] = (1.0, 1.2)
RESOLUTIONS: tuple[int, ...] = tuple(range(128, 225, 16))
# (channels at w=1, first-block stride, activation, squeeze-excite) of the five searched stages
STAGES: tuple[tuple[int, int, str, bool], ...] = (
    (24, 2, "relu", False), (40, 2, "relu", True), (80, 2, "hswish", False),
    (112, 1, "hswish", True), (160, 2, "hswish", True),
)
DEPTHS: tuple[int, ...] = (2, 3, 4)
KERNELS: tuple[int, ...] = (3, 5, 7)
EXPANDS: tuple[int, ...] = (3, 4, 6)
STEM_CHANNELS, FIRST_CHANNELS, EXPAND_CHANNELS, LAST_CHANNELS = 16, 16, 960, 1280
SE_REDUCTION = 4

_STAGE_RE = re.compile(r"s(\d+):(.+)")
_BLOCK_RE = re.compile(r"k(\d+)e(\d+)")


@dataclass(frozen=True)
class MBV3Arch:
    """One architecture: ``stages[i]`` holds (kernel, expand) of each active block of stage i+1."""

    width: float
    resolution: int
    stages: tuple[tuple[tuple[int, int], ...], ...]

    def __post_init__(self) -> None:
        check(self)

    @property
    def depths(self) -> tuple[int, ...]:
        return tuple(len(s) for s in self.stages)


def check(a: MBV3Arch) -> None:
    """ValueError naming what is outside the space."""
    if not any(math.isclose(a.width, w) for w in WIDTHS):
        raise ValueError(f"width multiplier {a.width:g} is not one of {', '.join(f'{w:.1f}' for w in WIDTHS)}")
    if a.resolution not in RESOLUTIONS:
        raise ValueError(f"resolution {a.resolution} is not one of {RESOLUTIONS[0]}, {RESOLUTIONS[1]}, …, "
                         f"{RESOLUTIONS[-1]} (step {RESOLUTIONS[1] - RESOLUTIONS[0]})")
    if len(a.stages) != len(STAGES):
        raise ValueError(f"expected {len(STAGES)} stages, got {len(a.stages)}")
    for i, blocks_ in enumerate(a.stages, start=1):
        if len(blocks_) not in DEPTHS:
            raise ValueError(f"stage {i}: depth {len(blocks_)} is not one of {', '.join(map(str, DEPTHS))}")
        for j, (k, e) in enumerate(blocks_, start=1):
            if k not in KERNELS or e not in EXPANDS:
                raise ValueError(f"stage {i} block {j}: k{k}e{e} is not a block of the space (kernel "
                                 f"{'/'.join(map(str, KERNELS))}, expand {'/'.join(map(str, EXPANDS))})")


def arch_str(a: MBV3Arch) -> str:
    """The canonical spelling."""
    return "-".join([f"w{a.width:.1f}", f"r{a.resolution}"] +
                    [f"s{i}:" + ",".join(f"k{k}e{e}" for k, e in s) for i, s in enumerate(a.stages, start=1)])


def _short(spec: str) -> str:
    return repr(spec if len(spec) <= 60 else spec[:57] + "...")


@lru_cache(maxsize=4096)  # a search asks for the same few candidates again and again
def parse_arch(spec: str) -> MBV3Arch:
    """A spelling (spaces around parts ignored) → :class:`MBV3Arch`; ValueError naming what is wrong."""
    parts = [p.strip() for p in spec.strip().split("-")]
    want = 2 + len(STAGES)
    if len(parts) != want:
        raise ValueError(f"MobileNetV3 architecture {_short(spec)}: expected {want} '-'-separated parts "
                         f"(wW-rR-s1:…-…-s{len(STAGES)}:…), got {len(parts)}")
    w, r = parts[0], parts[1]
    try:
        if not w.startswith("w") or not r.startswith("r"):
            raise ValueError
        width, resolution = float(w[1:]), int(r[1:])
    except ValueError:
        raise ValueError(f"MobileNetV3 architecture {_short(spec)}: expected a width 'w1.0' and a resolution "
                         f"'r224' first, got {w!r} and {r!r}") from None
    stages = []
    for i, part in enumerate(parts[2:], start=1):
        m = _STAGE_RE.fullmatch(part)
        if m is None or int(m.group(1)) != i:
            raise ValueError(f"MobileNetV3 architecture {_short(spec)}: stage {i} should read 's{i}:k3e4,…', "
                             f"got {part!r}")
        stage = []
        for b in m.group(2).split(","):
            mb = _BLOCK_RE.fullmatch(b.strip())
            if mb is None:
                raise ValueError(f"MobileNetV3 architecture {_short(spec)}: stage {i}: block {b!r} should read "
                                 f"'k3e4' (kernel {'/'.join(map(str, KERNELS))}, expand "
                                 f"{'/'.join(map(str, EXPANDS))})")
            stage.append((int(mb.group(1)), int(mb.group(2))))
        stages.append(tuple(stage))
    width = next((x for x in WIDTHS if math.isclose(x, width)), width)
    try:
        return MBV3Arch(width, resolution, tuple(stages))
    except ValueError as err:
        raise ValueError(f"MobileNetV3 architecture {_short(spec)}: {err}") from None


def channels(c: int, width: float) -> int:
    """Channels at width multiplier ``width``: OFA's ``make_divisible(c · w, 8)``."""
    return make_divisible(c * width, 8)


# -- blocks ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """One piece of the network, enough to build it alone (:func:`block_graph`); equal
    blocks cost the same wherever they sit.

    ``kind``: ``stem`` (3×3/2 conv to ``cout`` + BN + h-swish), ``mb`` (an MBConv block:
    ``mid`` channels after the expand) or ``head`` (1×1 conv to ``mid`` + BN + h-swish,
    pool, 1×1 conv to ``mix`` + h-swish, classifier to ``cout`` classes). ``hw`` is the
    input's height and width."""

    kind: str
    cin: int
    cout: int
    hw: int
    k: int = 1
    e: int = 1
    stride: int = 1
    act: str = "hswish"
    se: bool = False
    mid: int = 0
    mix: int = 0


def _mid(cin: int, e: int) -> int:
    return make_divisible(round(cin * e), 8)


def _out(hw: int, k: int, stride: int) -> int:
    return (hw + 2 * (k // 2) - k) // stride + 1


def _layout(a: MBV3Arch, classes: int) -> list[tuple[str, Block]]:
    """(node-name prefix, block) of every block, input to output."""
    w, hw = a.width, a.resolution
    stem = channels(STEM_CHANNELS, w)
    out = [("stem", Block("stem", 3, stem, hw, 3, 1, 2, "hswish"))]
    hw = _out(hw, 3, 2)
    first = channels(FIRST_CHANNELS, w)
    out.append(("first", Block("mb", stem, first, hw, 3, 1, 1, "relu", False, _mid(stem, 1))))
    cin = first
    for i, ((c, s, act, se), stage) in enumerate(zip(STAGES, a.stages, strict=True), start=1):
        cout = channels(c, w)
        for j, (k, e) in enumerate(stage, start=1):
            stride = s if j == 1 else 1
            out.append((f"s{i}.b{j}", Block("mb", cin, cout, hw, k, e, stride, act, se, _mid(cin, e))))
            hw = _out(hw, k, stride)
            cin = cout
    out.append(("head", Block("head", cin, classes, hw, mid=channels(EXPAND_CHANNELS, w),
                              mix=channels(LAST_CHANNELS, w))))
    return out


@lru_cache(maxsize=4096)
def blocks(arch: str, classes: int = 1000) -> tuple[Block, ...]:
    """The architecture's blocks, input to output (ValueError for a bad spelling)."""
    return tuple(blk for _, blk in _layout(parse_arch(arch), classes))


def _act(b: IRBuilder, name: str, x: str, act: str) -> str:
    return b.relu(f"{name}.relu", x) if act == "relu" else b.act(f"{name}.hswish", "HardSwish", x)


def _cba(b: IRBuilder, name: str, x: str, cout: int, k: int, stride: int = 1, *, act: str | None,
         depthwise: bool = False) -> str:
    x = b.dwconv(f"{name}.conv", x, k, stride) if depthwise else b.conv(f"{name}.conv", x, cout, k, stride)
    x = b.bn(f"{name}.bn", x)
    return x if act is None else _act(b, name, x, act)


def _se(b: IRBuilder, name: str, x: str) -> str:
    c = b.shape(x)[1]
    y = b.global_avgpool(f"{name}.pool", x)
    y = b.relu(f"{name}.relu", b.conv(f"{name}.reduce", y, make_divisible(c // SE_REDUCTION, 8), 1, bias=True))
    y = b.conv(f"{name}.expand", y, c, 1, bias=True)
    y = b.node(f"{name}.hsigmoid", "HardSigmoid", [y], b.shape(y), alpha=1.0 / 6.0, beta=0.5)
    return b.mul(f"{name}.mul", x, y)


def _emit(b: IRBuilder, name: str, x: str, blk: Block) -> str:
    """Append one block's nodes (named ``name.…``) reading ``x``; its output tensor."""
    if blk.kind == "stem":
        return _cba(b, name, x, blk.cout, blk.k, blk.stride, act=blk.act)
    if blk.kind == "head":
        y = _cba(b, f"{name}.expand", x, blk.mid, 1, act=blk.act)
        y = b.global_avgpool(f"{name}.pool", y)
        y = _act(b, f"{name}.mix", b.conv(f"{name}.mix.conv", y, blk.mix, 1), blk.act)
        return b.gemm(f"{name}.classifier", b.flatten(f"{name}.flatten", y), blk.cout)
    y = x if blk.e == 1 else _cba(b, f"{name}.expand", x, blk.mid, 1, act=blk.act)
    y = _cba(b, f"{name}.dw", y, 0, blk.k, blk.stride, act=blk.act, depthwise=True)
    if blk.se:
        y = _se(b, f"{name}.se", y)
    y = _cba(b, f"{name}.project", y, blk.cout, 1, act=None)
    return b.add(f"{name}.add", x, y) if blk.stride == 1 and blk.cin == blk.cout else y


def block_graph(blk: Block, *, dtype: str = "float32") -> Graph:
    """One block alone, reading a (1, cin, hw, hw) input: the same nodes the full graph has."""
    b = IRBuilder((1, blk.cin, blk.hw, blk.hw), dtype=dtype)
    return b.build(f"mbv3-{blk.kind}", _emit(b, blk.kind, "input", blk))


@lru_cache(maxsize=None)  # the space has a few thousand distinct blocks
def block_macs(blk: Block) -> int:
    """MACs of one block (memoized: a MACs objective or stand-in costs a lookup per block)."""
    return block_graph(blk).macs


def build_mbv3(arch: str | MBV3Arch, *, classes: int = 1000, dtype: str = "float32") -> Graph:
    """The architecture's graph IR (float32; ``dtype="int8"`` for int8-only accelerators)."""
    a = parse_arch(arch) if isinstance(arch, str) else arch
    if classes < 1:
        raise ValueError(f"classes must be >= 1, got {classes}")
    b = IRBuilder((1, 3, a.resolution, a.resolution), dtype=dtype)
    x = "input"
    for name, blk in _layout(a, classes):
        x = _emit(b, name, x, blk)
    return b.build(f"mbv3_{arch_str(a)}", x)


# -- the space ---------------------------------------------------------------------------------


def _stage_count() -> int:
    per_block = len(KERNELS) * len(EXPANDS)
    return sum(per_block ** d for d in DEPTHS)


class MBV3Space:
    """The MobileNetV3 / OFA space (see the module doc): candidates are spellings.

    Optuna parameters (:mod:`nas.params`): ``width``, ``resolution``, per stage ``sI_depth``,
    per block slot ``sI_bJ_k`` and ``sI_bJ_e`` — all 20 slots always (so every sampler sees
    one fixed space); slots past a stage's depth are ignored when decoding, and encode as
    the first option. :meth:`blocks` and :meth:`block_graph` serve per-block lookup tables
    (``nas.lut.KernelLUTLatencyModel``)."""

    name = "mbv3"
    size = len(WIDTHS) * len(RESOLUTIONS) * _stage_count() ** len(STAGES)
    table_columns = ("arch_idx", "arch")

    def __init__(self, *, classes: int = 1000) -> None:
        if classes < 1:
            raise ValueError(f"classes must be >= 1, got {classes}")
        self.classes = classes

    def sample(self, rng: np.random.Generator) -> str:
        width = WIDTHS[int(rng.integers(len(WIDTHS)))]
        res = RESOLUTIONS[int(rng.integers(len(RESOLUTIONS)))]
        stages = []
        for _ in STAGES:
            depth = DEPTHS[int(rng.integers(len(DEPTHS)))]
            stages.append(tuple((KERNELS[int(rng.integers(len(KERNELS)))], EXPANDS[int(rng.integers(len(EXPANDS)))])
                                for _ in range(depth)))
        return arch_str(MBV3Arch(width, res, tuple(stages)))

    def parse(self, arch: str) -> MBV3Arch:
        """The spelling as an :class:`MBV3Arch`; InputError naming what is wrong."""
        try:
            return parse_arch(arch)
        except ValueError as err:
            raise InputError(str(err)) from None

    def to_graph(self, arch: str) -> Graph:
        return self.graph(arch)

    def graph(self, arch: str, *, dtype: str = "float32") -> Graph:
        return build_mbv3(self.parse(arch), classes=self.classes, dtype=dtype)

    def blocks(self, arch: str) -> tuple[Block, ...]:
        """The architecture's blocks, input to output (:func:`blocks`)."""
        try:
            return blocks(arch, self.classes)
        except ValueError as err:
            raise InputError(str(err)) from None

    def block_graph(self, blk: Block) -> Graph:
        return block_graph(blk)

    def resolve(self, spec: str, *, table: Path | None = None) -> str:
        """A spelling, or an ``arch_idx`` looked up in a table with ``arch_idx`` and ``arch``
        (or ``arch_str``) columns."""
        spec = spec.strip()
        if not spec.isdigit():
            return arch_str(self.parse(spec))
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
        for i in range(1, len(STAGES) + 1):
            out.append((f"s{i}_depth", DEPTHS))
            for j in range(1, max(DEPTHS) + 1):
                out += [(f"s{i}_b{j}_k", KERNELS), (f"s{i}_b{j}_e", EXPANDS)]
        return tuple(out)

    def from_params(self, values: Mapping[str, Any]) -> str:
        try:
            stages = []
            for i in range(1, len(STAGES) + 1):
                depth = int(values[f"s{i}_depth"])
                stages.append(tuple((int(values[f"s{i}_b{j}_k"]), int(values[f"s{i}_b{j}_e"]))
                                    for j in range(1, depth + 1)))
            return arch_str(MBV3Arch(float(values["width"]), int(values["resolution"]), tuple(stages)))
        except KeyError as err:
            raise InputError(f"MobileNetV3 parameters: no value for {err.args[0]!r}") from None
        except (TypeError, ValueError) as err:
            raise InputError(f"MobileNetV3 parameters: {err}") from None

    def to_params(self, arch: str) -> dict[str, Any]:
        a = self.parse(arch)
        out: dict[str, Any] = {"width": next(w for w in WIDTHS if math.isclose(w, a.width)),
                               "resolution": a.resolution}
        for i, stage in enumerate(a.stages, start=1):
            out[f"s{i}_depth"] = len(stage)
            for j in range(1, max(DEPTHS) + 1):
                k, e = stage[j - 1] if j <= len(stage) else (KERNELS[0], EXPANDS[0])
                out[f"s{i}_b{j}_k"], out[f"s{i}_b{j}_e"] = k, e
        return out
