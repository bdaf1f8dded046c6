"""The analytical latency/energy model behind simulated devices.

1. **Kernels.** A device executes kernels, not ONNX nodes: consecutive nodes matching one of
   the profile's fusion patterns (e.g. Conv→BatchNormalization→Relu) run as one kernel when
   each intermediate tensor has a single consumer. Fusion rules differ per device.
2. **Cost per kernel** (class = conv3x3, conv1x1, dwconv, gemm, pool, eltwise, …, optionally
   per dtype as ``conv3x3@int8``)::

       t = macs_aligned / peak_c + bytes / bandwidth_c + overhead_c

   ``macs_aligned`` rounds input and output channels up to the vector width, which makes
   latency step at multiples of it, as real SIMD/tiled kernels do. The compute term scales
   with threads by Amdahl's law.
3. **Energy** = static power × time + dynamic power × compute time + energy per byte moved.

Everything here is a pure function of (graph, profile, threads).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ..graph import Graph, Node
from .profile import SimProfile

__all__ = ["Kernel", "KernelTime", "SimResult", "kernel_class", "live_nodes", "form_kernels", "kernel_latency_ms",
           "simulate"]

_ACT = {"Relu", "Clip", "Sigmoid", "HardSwish", "HardSigmoid", "LeakyRelu", "Tanh", "Relu6"}
_ELTWISE = {"Add", "Mul", "Sub", "Div", "Sum", "Max", "Min"}
_RESHAPE = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Transpose", "Cast"}


def kernel_class(node: Node) -> str:
    op = node.op
    if op in ("Conv", "ConvInteger", "QLinearConv", "CONV_2D", "DEPTHWISE_CONV_2D"):
        w = node.inputs[3 if op == "QLinearConv" else 1].shape if len(node.inputs) > 1 else ()
        group = int(node.attrs.get("group", 1))
        if op == "DEPTHWISE_CONV_2D" or (group > 1 and len(w) > 1 and w[1] == 1):
            return "dwconv"
        if op == "CONV_2D" and len(w) == 4:
            return f"conv{w[1]}x{w[2]}"
        k = tuple(node.attrs.get("kernel_shape", w[2:] if len(w) > 2 else (1, 1)))
        return f"conv{k[0]}x{k[-1]}" if k else "conv"
    if op in ("Gemm", "MatMul", "FULLY_CONNECTED", "BATCH_MATMUL", "MatMulInteger", "QLinearMatMul"):
        return "gemm"
    if op in ("AveragePool", "MaxPool", "AVERAGE_POOL_2D", "MAX_POOL_2D"):
        return "pool"
    if op in ("GlobalAveragePool", "GlobalMaxPool", "MEAN"):
        return "gpool"
    if op in _ELTWISE or op in ("ADD", "MUL"):
        return "eltwise"
    if op in _ACT or op in ("RELU", "RELU6", "LOGISTIC", "HARD_SWISH"):
        return "act"
    if op == "BatchNormalization":
        return "bn"
    if op in _RESHAPE or op in ("RESHAPE",):
        return "reshape"
    return op.lower()


@dataclass(frozen=True)
class Kernel:
    name: str
    ops: tuple[str, ...]
    nodes: tuple[str, ...]
    kernel_class: str
    dtype: str
    macs: int
    macs_aligned: float
    bytes: int


@dataclass(frozen=True)
class KernelTime:
    kernel: Kernel
    latency_ms: float
    compute_ms: float
    placement: str = "cpu"


@dataclass(frozen=True)
class SimResult:
    latency_ms: float
    kernels: tuple[KernelTime, ...]
    energy_mj: float | None


def _aligned_macs(node: Node, width: int) -> float:
    if node.macs == 0 or width <= 1 or not node.outputs:
        return float(node.macs)

    def up(c: int) -> int:
        return math.ceil(c / width) * width

    out = node.outputs[0].shape
    if node.op in ("Conv", "QLinearConv", "ConvInteger") and len(out) == 4 and len(node.inputs) > 1:
        w = node.inputs[3 if node.op == "QLinearConv" else 1].shape
        cout, cin_g = w[0], w[1]
        group = int(node.attrs.get("group", 1))
        if group > 1 and cin_g == 1:  # depthwise: channels are the vector dimension
            return node.macs * up(cout) / cout
        return node.macs * (up(cout) / cout) * (up(cin_g) / cin_g)
    if node.op in ("Gemm", "MatMul") and out:
        n = out[-1]
        k = node.macs // max(math.prod(out), 1)
        return node.macs * (up(n) / n) * (up(k) / k if k else 1.0)
    return float(node.macs)


def live_nodes(graph: Graph) -> set[str]:
    """Nodes a folding converter keeps. A graph whose outputs do not depend on its inputs
    (every path passes a node marked ``zero_output``, like NB201's ``x * 0``) folds to a
    constant: nothing runs. Otherwise dead code is removed and the rest runs — converters
    do not simplify ``x * 0`` algebraically, so work on a zero tensor still costs (this is
    what the NB201 latencies measured with TFLite on the Raspberry Pi 4 and Pixel 3 show)."""
    variable = {t.name for t in graph.inputs}
    for n in graph.nodes:
        if not n.attrs.get("zero_output") and any(t.name in variable for t in n.inputs if t.name not in n.weights):
            variable.update(t.name for t in n.outputs)
    if not any(t.name in variable for t in graph.outputs):
        return set()
    needed = {t.name for t in graph.outputs}
    live: set[str] = set()
    for n in reversed(graph.nodes):
        if any(t.name in needed for t in n.outputs):
            live.add(n.name)
            needed.update(t.name for t in n.inputs)
    return live


def _dedupe(graph: Graph) -> Graph:
    """Common-subexpression elimination of weight-free nodes: the same op with the same
    attributes on the same inputs runs once (NB201 applies a ReLU per edge to one tensor)."""
    alias: dict[str, str] = {}
    seen: dict[tuple[object, ...], Node] = {}
    nodes = []
    for n in graph.nodes:
        ins = tuple(replace(t, name=alias.get(t.name, t.name)) for t in n.inputs)
        n = replace(n, inputs=ins) if ins != n.inputs else n
        if not n.weights and len(n.outputs) == 1:
            key = (n.op, tuple(t.name for t in ins), repr(sorted(n.attrs.items())))
            first = seen.get(key)
            if first is not None:
                alias[n.outputs[0].name] = first.outputs[0].name
                continue
            seen[key] = n
        nodes.append(n)
    outputs = tuple(replace(t, name=alias.get(t.name, t.name)) for t in graph.outputs)
    return replace(graph, nodes=tuple(nodes), outputs=outputs)


def form_kernels(graph: Graph, fusion: tuple[tuple[str, ...], ...], vector_width: int = 1,
                 *, fold_constants: bool = False) -> list[Kernel]:
    """Group nodes into the kernels a device with these fusion rules executes (after
    dropping constant and dead nodes when the runtime folds them)."""
    if fold_constants:
        graph = _dedupe(graph)
        keep = live_nodes(graph)
        graph = replace(graph, nodes=tuple(n for n in graph.nodes if n.name in keep))
    consumers: dict[str, int] = {}
    for n in graph.nodes:
        for t in n.inputs:
            consumers[t.name] = consumers.get(t.name, 0) + 1
    for t in graph.outputs:
        consumers[t.name] = consumers.get(t.name, 0) + 1
    patterns = sorted(fusion, key=len, reverse=True)
    nodes = graph.nodes
    kernels: list[Kernel] = []
    i = 0
    while i < len(nodes):
        length = 1
        for pat in patterns:
            L = len(pat)
            if i + L > len(nodes) or tuple(n.op for n in nodes[i:i + L]) != pat:
                continue
            chain_ok = all(
                nodes[j].outputs and consumers.get(nodes[j].outputs[0].name, 0) == 1
                and nodes[j].outputs[0].name in {t.name for t in nodes[j + 1].inputs}
                for j in range(i, i + L - 1)
            )
            if chain_ok:
                length = L
                break
        group = nodes[i:i + length]
        inner = {g.outputs[0].name for g in group[:-1]}
        moved = sum(t.nbytes for g in group for t in g.inputs if t.name not in inner)
        moved += sum(t.nbytes for t in group[-1].outputs)
        head = group[0]
        kernels.append(Kernel(
            name=head.name, ops=tuple(g.op for g in group), nodes=tuple(g.name for g in group),
            kernel_class=kernel_class(head), dtype=head.dtype, macs=sum(g.macs for g in group),
            macs_aligned=sum(_aligned_macs(g, vector_width) for g in group), bytes=moved,
        ))
        i += length
    return kernels


def kernel_latency_ms(k: Kernel, profile: SimProfile, threads: int = 1) -> tuple[float, float]:
    """(total, compute) milliseconds of one kernel."""
    c = profile.kernels.get(f"{k.kernel_class}@{k.dtype}") or profile.cost(k.kernel_class)
    compute = k.macs_aligned / (c.gmacs * 1e6) if c.gmacs > 0 else 0.0
    t = max(1, min(threads, profile.threads_max))
    compute *= (1 - profile.parallel_fraction) + profile.parallel_fraction / t
    memory = k.bytes / (c.gbs * 1e6) if c.gbs > 0 else 0.0
    return compute + memory + c.overhead_us / 1e3, compute


def simulate(graph: Graph, profile: SimProfile, *, threads: int = 1) -> SimResult:
    """Noise-free latency (ms), per-kernel breakdown and energy (mJ, None without a power model)."""
    times = []
    for k in form_kernels(graph, profile.fusion, profile.vector_width, fold_constants=profile.fold_constants):
        total, compute = kernel_latency_ms(k, profile, threads)
        times.append(KernelTime(k, total, compute))
    latency = profile.invoke_overhead_us / 1e3 + sum(t.latency_ms for t in times)
    energy = None
    if profile.power is not None:
        p = profile.power
        energy = (p.static_w * latency + p.dynamic_w * sum(t.compute_ms for t in times)
                  + p.pj_per_byte * sum(t.kernel.bytes for t in times) * 1e-9)
    return SimResult(latency, tuple(times), energy)
