"""Kernels: what a device executes. Nodes matching one of a device's fusion patterns (e.g.
Conv→BatchNormalization→Relu, each intermediate with a single consumer) run as one kernel;
:func:`kernel_class` names a kernel's cost class (conv3x3, dwconv, gemm, pool, eltwise, …);
:func:`dedupe` and :func:`live_nodes` are what a constant-folding runtime does first."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from farm.ir.graph import Graph, Node

__all__ = ["Kernel", "kernel_class", "live_nodes", "dedupe", "form_kernels", "aligned_macs"]

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
    if op in ("GlobalAveragePool", "GlobalMaxPool", "MEAN", "REDUCE_MAX"):
        return "gpool"
    if op in _ELTWISE or op in ("ADD", "MUL", "SUB"):
        return "eltwise"
    if op in _ACT or op in ("RELU", "RELU6", "LOGISTIC", "HARD_SWISH", "TANH"):
        return "act"
    if op == "BatchNormalization":
        return "bn"
    if op in _RESHAPE or op in ("RESHAPE", "TRANSPOSE", "SQUEEZE", "EXPAND_DIMS"):
        return "reshape"
    if op == "CONCATENATION":
        return "concat"
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
    weight_bytes: int = 0
    inputs: tuple[tuple[str, int], ...] = ()  # activation tensors read from outside the kernel: (name, bytes)
    outputs: tuple[tuple[str, int], ...] = ()


def aligned_macs(node: Node, width: int) -> float:
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


def dedupe(graph: Graph, *, share_scalars: bool = False) -> Graph:
    """Common-subexpression elimination of weight-free nodes: the same op with the same
    attributes on the same inputs runs once (NB201 applies a ReLU per edge to one tensor).
    ``share_scalars``: single-number constants of equal value count as one input, so a node
    whose only weights are such numbers is eliminated too (onnxruntime's ConstantSharing
    runs before its CSE: NB201's ``none`` edges, ``x * 0`` per edge, run once per tensor)."""
    alias: dict[str, str] = {}
    seen: dict[tuple[object, ...], Node] = {}
    nodes = []
    for n in graph.nodes:
        ins = tuple(replace(t, name=alias.get(t.name, t.name)) for t in n.inputs)
        n = replace(n, inputs=ins) if ins != n.inputs else n
        shared = dict(n.consts) if share_scalars else {}
        if all(w in shared for w in n.weights) and len(n.outputs) == 1:
            key = (n.op, tuple((t.dtype, t.shape, shared[t.name]) if t.name in shared else t.name for t in ins),
                   repr(sorted(n.attrs.items())))
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
        graph = dedupe(graph)
        keep = live_nodes(graph)
        graph = replace(graph, nodes=tuple(n for n in graph.nodes if n.name in keep))
    consumers = graph.consumer_counts()
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
        wbytes = sum(t.nbytes for g in group for t in g.inputs if t.name in g.weights)
        ins = tuple(dict.fromkeys((t.name, t.nbytes) for g in group for t in g.inputs
                                  if t.name not in inner and t.name not in g.weights))
        head = group[0]
        kernels.append(Kernel(
            name=head.name, ops=tuple(g.op for g in group), nodes=tuple(g.name for g in group),
            kernel_class=kernel_class(head), dtype=head.dtype, macs=sum(g.macs for g in group),
            macs_aligned=sum(aligned_macs(g, vector_width) for g in group), bytes=moved,
            weight_bytes=wbytes, inputs=ins, outputs=tuple((t.name, t.nbytes) for t in group[-1].outputs),
        ))
        i += length
    return kernels
