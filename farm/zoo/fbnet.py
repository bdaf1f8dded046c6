"""The FBNet search space (Wu et al., CVPR 2019) in HW-NAS-Bench's CIFAR-100 setting, as
graph IR built without torch — exactly as ``../shared/data/fbnet-latency/README.md`` describes
it (the space of HELP's and HW-NAS-Bench's 5,000-architecture latency table).

An architecture picks one of 9 ops for each of 22 layers. Two spellings, both in the CSV:

- ``arch``: op names joined by ``-``, layer 1 first: ``k5_e6-skip-k3_e1_g2-…``
- ``op_idx``: op indices (0-8, :data:`OPS` order) joined by ``-``: ``7-8-1-…``

``kK_eE`` is an inverted-residual block: 1×1 conv to E×C_in channels + BN + ReLU, K×K
depthwise conv with the layer's stride + BN + ReLU, 1×1 conv to C_out + BN, and a residual
add when stride is 1 and C_in = C_out. ``_g2`` uses groups=2 in both 1×1 convs with a channel
shuffle (Reshape→Transpose→Reshape) after the first, as FBNet's ``IRFBlock`` places it.
``skip`` is the identity, or 1×1 conv + BN + ReLU where the layer changes channels or stride
(layers 2, 6, 10, 14, 18, 22).

Macro network: 32×32×3 input; 3×3 conv to 16, stride 1, BN, ReLU; 7 stages of
``[1,4,4,4,4,4,1]`` layers with ``[16,24,32,64,112,184,352]`` channels and first-layer strides
``[1,1,2,2,1,2,1]``; 1×1 conv 352→1504 + BN + ReLU; global average pool; FC 1504→100.
"""

from __future__ import annotations

from collections.abc import Sequence

from farm.ir.builder import IRBuilder
from farm.ir.graph import Graph

__all__ = ["OPS", "LAYERS", "NUM_LAYERS", "parse_arch", "arch_str", "op_idx_str", "build_fbnet", "layer_macs"]

OPS = ("k3_e1", "k3_e1_g2", "k3_e3", "k3_e6", "k5_e1", "k5_e1_g2", "k5_e3", "k5_e6", "skip")
STAGE_LAYERS = (1, 4, 4, 4, 4, 4, 1)
STAGE_CHANNELS = (16, 24, 32, 64, 112, 184, 352)
STAGE_STRIDES = (1, 1, 2, 2, 1, 2, 1)
STEM_CHANNELS = 16
HEAD_CHANNELS = 1504


def _layers() -> tuple[tuple[int, int, int], ...]:
    out, cin = [], STEM_CHANNELS
    for n, c, s in zip(STAGE_LAYERS, STAGE_CHANNELS, STAGE_STRIDES, strict=True):
        for i in range(n):
            out.append((cin, c, s if i == 0 else 1))
            cin = c
    return tuple(out)


LAYERS: tuple[tuple[int, int, int], ...] = _layers()  # (C_in, C_out, stride) of layers 1…22
NUM_LAYERS = len(LAYERS)


def parse_arch(spec: str | Sequence[int] | Sequence[str]) -> tuple[int, ...]:
    """An ``arch`` string, an ``op_idx`` string, or a sequence of 22 names or indices → 22
    op indices. Raises ValueError naming what is wrong."""
    if isinstance(spec, str):
        parts = [p.strip() for p in spec.strip().split("-")]
    else:
        parts = [str(p).strip() for p in spec]
    if len(parts) != NUM_LAYERS:
        raise ValueError(f"FBNet architecture {_short(spec)}: expected {NUM_LAYERS} '-'-separated ops "
                         f"(names like k3_e6 or indices 0-8), got {len(parts)}")
    out = []
    for i, p in enumerate(parts, start=1):
        if p.isdigit() and int(p) < len(OPS):
            out.append(int(p))
        elif p in OPS:
            out.append(OPS.index(p))
        else:
            raise ValueError(f"FBNet architecture {_short(spec)}: layer {i}: unknown op {p!r} "
                             f"(ops: {', '.join(OPS)}, or indices 0-{len(OPS) - 1})")
    return tuple(out)


def _short(spec: object) -> str:
    s = spec if isinstance(spec, str) else "-".join(map(str, spec))  # type: ignore[call-overload]
    return repr(s if len(s) <= 60 else s[:57] + "...")


def arch_str(ops: Sequence[int]) -> str:
    return "-".join(OPS[i] for i in ops)


def op_idx_str(ops: Sequence[int]) -> str:
    return "-".join(str(i) for i in ops)


def _op(name: str) -> tuple[int, int, int]:
    """``kK_eE[_g2]`` → (kernel, expansion, groups)."""
    parts = name.split("_")
    return int(parts[0][1:]), int(parts[1][1:]), 2 if len(parts) == 3 else 1


def _cbr(b: IRBuilder, name: str, x: str, cout: int, k: int, stride: int = 1, *, group: int = 1,
         relu: bool = True) -> str:
    if group == b.shape(x)[1] == cout and group > 1:
        x = b.dwconv(f"{name}.conv", x, k, stride)
    else:
        x = b.conv(f"{name}.conv", x, cout, k, stride, group=group)
    x = b.bn(f"{name}.bn", x)
    return b.relu(f"{name}.relu", x) if relu else x


def _layer(b: IRBuilder, name: str, x: str, op: str, cin: int, cout: int, stride: int) -> str:
    if op == "skip":
        if stride == 1 and cin == cout:
            return x
        return _cbr(b, f"{name}.skip", x, cout, 1, stride)
    k, e, g = _op(op)
    mid = cin * e
    y = _cbr(b, f"{name}.pw", x, mid, 1, group=g)
    if g > 1:
        y = b.channel_shuffle(f"{name}.shuffle", y, g)
    y = _cbr(b, f"{name}.dw", y, mid, k, stride, group=mid)
    y = _cbr(b, f"{name}.pwl", y, cout, 1, group=g, relu=False)
    return b.add(f"{name}.add", x, y) if stride == 1 and cin == cout else y


def build_fbnet(spec: str | Sequence[int] | Sequence[str], *, num_classes: int = 100, resolution: int = 32,
                dtype: str = "float32") -> Graph:
    """The CIFAR-100 FBNet network of one architecture (either spelling, or 22 indices)."""
    ops = parse_arch(spec)
    b = IRBuilder((1, 3, resolution, resolution), dtype=dtype)
    x = _cbr(b, "stem", "input", STEM_CHANNELS, 3)
    for i, (op, (cin, cout, stride)) in enumerate(zip(ops, LAYERS, strict=True), start=1):
        x = _layer(b, f"layer{i}", x, OPS[op], cin, cout, stride)
    x = _cbr(b, "head", x, HEAD_CHANNELS, 1)
    x = b.gemm("classifier", b.flatten("flatten", b.global_avgpool("gap", x)), num_classes)
    return b.build(f"fbnet-{op_idx_str(ops)}", x)


def layer_macs(graph: Graph) -> list[int]:
    """MACs of layers 1…22 of a graph from :func:`build_fbnet` (identity skips: 0)."""
    out = [0] * NUM_LAYERS
    for n in graph.nodes:
        head = n.name.split(".", 1)[0]
        if head.startswith("layer"):
            out[int(head[5:]) - 1] += n.macs
    return out
