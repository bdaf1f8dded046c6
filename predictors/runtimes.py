"""What each runtime does to a graph: fusion defaults, constant folding, CSE, blocked layouts.

The generic code (:mod:`predictors.kernels`, :mod:`predictors.kernel_model`) asks this module
and never names a runtime itself:

- **fusion defaults** (:data:`RUNTIME_FUSION`): the op sequences a runtime runs as one kernel
  when the device's own rules were never detected;
- **constant folding** (:func:`folds_constants`) and **common-subexpression elimination**
  (:func:`dedupes`) by the runtime's converter or graph optimizer;
- **blocked layouts** (onnxruntime's NCHWc on x86): the block size per SIMD extension
  (:func:`layout_block`), which kernels run blocked (:func:`blocked_layout`), which read the
  plain layout themselves (:func:`reads_plain_input`), what a reorder moves
  (:func:`blocked_kb`, :func:`plane_aliased`), and the layout conversion ops the optimizer
  inserts (:data:`LAYOUT_OPS`).
"""

from __future__ import annotations

from typing import Any, Protocol

from farm.ir.graph import Node

__all__ = ["FusionPattern", "RUNTIME_FUSION", "DEFAULT_RUNTIME", "canonical_runtime", "fusion_defaults",
           "folds_constants", "dedupes", "layout_block", "LAYOUT_OPS", "PLAIN_LAYOUT_TYPES",
           "BLOCKED_CONV_ACTIVATIONS", "blocked_layout", "blocked_kb", "plane_aliased", "reads_plain_input"]

FusionPattern = tuple[str, ...]

DEFAULT_RUNTIME = "onnxruntime"

# onnxruntime's CPU provider at ORT_ENABLE_ALL folds BatchNormalization into a preceding Conv
# and fuses a following activation (ConvActivationFusion → FusedConv), Gemm+activation
# (GemmActivationFusion) and MatMul+Add (→ Gemm). LiteRT's converter does the same for
# Conv/DepthwiseConv/FullyConnected + BN + ReLU/ReLU6 and Add + ReLU.
_ORT_CPU: tuple[FusionPattern, ...] = (
    ("Conv", "BatchNormalization", "Relu"), ("Conv", "BatchNormalization", "Clip"), ("Conv", "BatchNormalization"),
    ("Conv", "Relu"), ("Conv", "Clip"), ("Gemm", "Relu"), ("MatMul", "Add"),
)
_LITERT: tuple[FusionPattern, ...] = _ORT_CPU + (("Add", "Relu"), ("Add", "Clip"))
RUNTIME_FUSION: dict[str, tuple[FusionPattern, ...]] = {"onnxruntime": _ORT_CPU, "litert": _LITERT}
# Runtimes whose graph optimizer runs the same op on the same input once (onnxruntime's
# CommonSubexpressionElimination; LiteRT's converter folds and dedupes, see fold_constants).
_CSE_RUNTIMES = {"onnxruntime", "litert"}


def canonical_runtime(runtime: str | None) -> str:
    """The runtime whose graph rules apply (``benchmark_model`` runs LiteRT; none: onnxruntime)."""
    rt = runtime or DEFAULT_RUNTIME
    return "litert" if rt == "benchmark_model" else rt


def fusion_defaults(runtime: str) -> tuple[FusionPattern, ...]:
    """The runtime's documented fusions (onnxruntime's CPU provider's for a runtime not listed)."""
    return RUNTIME_FUSION.get(runtime, _ORT_CPU)


def folds_constants(runtime: str) -> bool:
    """Does the runtime's converter drop input-independent and dead subgraphs (LiteRT's)?"""
    return runtime == "litert"


def dedupes(runtime: str) -> bool:
    """Does the runtime's graph optimizer run the same op on the same input once?"""
    return runtime in _CSE_RUNTIMES


# onnxruntime's MLAS blocks NCHWc tensors by the vector width in floats, and only on x86.
_ORT_LAYOUT_BLOCK = {"avx512f": 16, "avx2": 8, "avx": 8}


def layout_block(runtime: str, simd: object) -> int:
    """The blocked-layout channel count ``runtime`` uses on a CPU with widest SIMD
    extension ``simd`` (the agent's provenance field); 0 for none or unknown."""
    return _ORT_LAYOUT_BLOCK.get(str(simd), 0) if runtime == "onnxruntime" else 0


# Layout conversions onnxruntime inserts around NCHWc kernels: not kernels of their own.
LAYOUT_OPS = frozenset({"ReorderInput", "ReorderOutput"})

# Kernel types that need their input in the plain layout (a Gemm, a Flatten/Reshape/Transpose
# reads memory in NCHW order): a tensor that goes from a boundary kernel to one of these (or
# to an op of no known type) leaves the domain. Every other type runs in whatever layout its
# input has (onnxruntime runs convolutions, pools, activations, adds and concats on blocked
# NCHWc tensors when their input is blocked), so it stays inside a run of boundary kernels.
PLAIN_LAYOUT_TYPES = frozenset({"gemm", "reshape"})

# activations a blocked convolution applies itself (MLAS's fused activation kinds)
BLOCKED_CONV_ACTIVATIONS = frozenset({"Relu", "LeakyRelu", "Clip", "Sigmoid", "Tanh", "HardSigmoid"})

_ALIAS_BYTES = 4096  # an x86 core's L1 set stride: planes this far apart land in the same cache sets


class _Kernel(Protocol):
    """What the layout rules read of a kernel (:class:`predictors.kernels.DetectedKernel`)."""

    @property
    def type(self) -> str: ...

    @property
    def nodes(self) -> tuple[Node, ...]: ...


def _channels(k: _Kernel) -> int | None:
    """The channel count of a kernel's first activation input (NCHW), if it has one."""
    head = k.nodes[0] if k.nodes else None
    if head is None or not head.inputs or len(head.inputs[0].shape) != 4:
        return None
    return int(head.inputs[0].shape[1])


def blocked_layout(k: _Kernel, block: int) -> bool | None:
    """Can this kernel run on ``block``-channel blocked tensors (onnxruntime's NCHWc rules)?
    True/False for the types the layout pass decides itself; None for the types that follow
    their inputs' layout (activations, batch norms, binary element-wise ops)."""
    c = _channels(k)
    head = k.nodes[0] if k.nodes else None
    if k.type == "conv":
        group = int(head.attrs.get("group", 1)) if head is not None else 1
        if group == 1:
            return True
        # a grouped convolution runs blocked when each group's input and output channels
        # fill whole blocks (two groups of 16 under AVX-512), else plain
        w = head.inputs[1].shape if head is not None and len(head.inputs) > 1 else ()
        return len(w) == 4 and w[0] % group == 0 and w[1] % block == 0 and (w[0] // group) % block == 0
    if k.type == "dwconv":
        return True
    if k.type in ("pool", "gpool"):  # blocked only when the channels fill whole blocks
        return c is not None and c % block == 0
    acts = [t for t in head.inputs if t.name not in head.weights] if head is not None else []
    if k.type in ("act", "bn") or (k.type == "eltwise" and len(acts) >= 2):
        return None
    if k.type == "concat" and head is not None and int(head.attrs.get("axis", 1)) in (1, -3) and \
            all(len(t.shape) == 4 and t.shape[1] % block == 0 for t in acts):
        return None  # a channel concat of whole blocks runs on blocked inputs
    return False  # a Mul/Add by a constant, Gemm, Reshape, other concats, unknown ops: the plain layout


def _tensor(k: _Kernel, name: str) -> Any:
    for n in k.nodes:
        for t in (*n.inputs, *n.outputs):
            if t.name == name:
                return t
    return None


def blocked_kb(k: _Kernel, name: str, size: int, block: int) -> float:
    """KB a reorder of tensor ``name`` (``size`` bytes, NCHW) moves: a blocked tensor pads
    its channels up to whole blocks (8 channels take a 16-channel block under AVX-512)."""
    t = _tensor(k, name) if block else None
    if t is None or len(t.shape) != 4 or t.shape[1] <= 0:
        return size / 1024.0
    c = int(t.shape[1])
    return size / 1024.0 * (-(-c // block) * block) / c


def plane_aliased(k: _Kernel, name: str) -> bool:
    """Is tensor ``name`` of kernel ``k`` an NCHW tensor whose channel planes are a whole
    multiple of 4 KB apart? A reorder to or from a blocked layout reads (or writes) a
    block's planes at once; planes a multiple of 4 KB apart map to the same L1 sets and
    evict each other. onnxruntime on this project's host: a lone 3×3 pool's reorders cost
    36–55 ns/KB at 32×32 and 64×64 (4 KB and 16 KB planes), 21–28 ns/KB at 28–36 otherwise."""
    t = _tensor(k, name)
    if t is None or len(t.shape) != 4:
        return False
    plane = t.nbytes // max(t.shape[0] * t.shape[1], 1)
    return plane > 0 and plane % _ALIAS_BYTES == 0


def reads_plain_input(k: _Kernel, block: int) -> bool:
    """A blocked convolution whose input has fewer channels than a block reads it in the
    plain layout (no reorder in front of it: the network's first convolution on RGB)."""
    c = _channels(k)
    return k.type == "conv" and c is not None and c < block
