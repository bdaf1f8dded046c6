"""ONNX → graph IR, with shapes from ONNX shape inference and per-node cost counts.

Copes with the files people actually have:
- old IR versions (< 4) that list every initializer as a graph input too: those are
  weights, not model inputs;
- weights computed by constant subgraphs (``Constant``, ``ConstantOfShape``, a
  ``Constant → Reshape/Cast/Transpose`` chain): their outputs count as weights of the
  consumer, and the constant-only nodes are folded away (they cost nothing at run time
  once a runtime has constant-folded them, which onnxruntime does);
- any opset: MACs are computed from shapes, not from opset-specific attributes;
- a tensor whose shape cannot be determined (dynamic dims, missing value_info) is a
  :class:`~farm.errors.ModelError` naming the node and tensor: we need static shapes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .errors import ModelError
from .graph import Graph, Node, TensorInfo

__all__ = ["graph_from_onnx", "load_onnx_graph", "node_macs"]

# Ops whose output is a function of constants only, when all their inputs are constant.
_FOLDABLE = {"Constant", "ConstantOfShape", "Reshape", "Cast", "Transpose", "Unsqueeze", "Squeeze",
             "Identity", "Concat", "Shape", "Gather", "Slice", "DequantizeLinear", "Mul", "Add", "Div", "Sub",
             "Flatten", "Expand", "Range", "Tile"}


def _numel(shape: tuple[int, ...]) -> int:
    return math.prod(shape) if shape else 1


def node_macs(op: str, ins: list[TensorInfo], outs: list[TensorInfo], attrs: dict[str, Any]) -> int:
    """Multiply-accumulates of one node from its shapes (0 for ops that do no MACs)."""
    if not outs:
        return 0
    out = outs[0].shape
    if op in ("Conv", "ConvInteger", "QLinearConv"):
        w = ins[3 if op == "QLinearConv" else 1].shape  # [Cout, Cin/group, k...]
        return _numel(out) * _numel(w[1:])
    if op == "ConvTranspose":
        x, w = ins[0].shape, ins[1].shape  # w: [Cin, Cout/group, k...]
        return _numel(x) * _numel(w[1:])
    if op == "Gemm":
        a = ins[0].shape
        k = a[0] if attrs.get("transA", 0) else a[-1]
        return _numel(out) * k
    if op in ("MatMul", "MatMulInteger", "QLinearMatMul"):
        a = ins[0].shape
        return _numel(out) * (a[-1] if a else 1)
    if op in ("LSTM", "GRU", "RNN"):
        x, w, r = ins[0].shape, ins[1].shape, ins[2].shape  # w: [dirs, gates*H, I], r: [dirs, gates*H, H]
        seq, batch = x[0], x[1]
        return seq * batch * (_numel(w) + _numel(r))
    return 0


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import AttributeProto, helper

    out: dict[str, Any] = {}
    for a in node.attribute:
        if a.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS):
            out[a.name] = "<subgraph>"
        elif a.type in (AttributeProto.TENSOR, AttributeProto.SPARSE_TENSOR):
            out[a.name] = "<tensor>"
        else:
            v = helper.get_attribute_value(a)
            if isinstance(v, bytes):
                v = v.decode("utf-8", "replace")
            elif isinstance(v, list):
                v = [x.decode("utf-8", "replace") if isinstance(x, bytes) else x for x in v]
            out[a.name] = v
    return out


def _dtype_name(elem_type: int) -> str:
    from onnx import helper

    try:
        return str(helper.tensor_dtype_to_np_dtype(elem_type))
    except (KeyError, ValueError, TypeError):
        return "float32"


def graph_from_onnx(model: Any, *, source: str = "<memory>") -> Graph:
    """Build the IR of an ``onnx.ModelProto``. Raises ModelError with ``source`` in the message."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception as err:  # onnx raises InferenceError, ValidationError, RuntimeError...
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(f"{source}: ONNX shape inference failed: {msg}") from None
    g = inferred.graph

    info: dict[str, tuple[tuple[int, ...] | None, str]] = {}

    def record(vi: Any) -> None:
        tt = vi.type.tensor_type
        if not vi.type.HasField("tensor_type"):
            return
        dims: tuple[int, ...] | None = None
        if tt.HasField("shape"):
            values = [int(d.dim_value) for d in tt.shape.dim if d.HasField("dim_value") and d.dim_value > 0]
            dims = tuple(values) if len(values) == len(tt.shape.dim) else None
        if dims is None and info.get(vi.name, (None, ""))[0] is not None:
            return  # a declared-but-shapeless graph output must not erase an inferred shape
        info[vi.name] = (dims, _dtype_name(tt.elem_type))

    for vi in list(g.input) + list(g.value_info) + list(g.output):
        record(vi)
    weights: set[str] = set()
    for init in g.initializer:
        info[init.name] = (tuple(int(d) for d in init.dims), _dtype_name(init.data_type))
        weights.add(init.name)

    # Constant folding of the weight subgraphs: a node whose inputs are all constant.
    const_nodes: set[int] = set()
    for i, n in enumerate(g.node):
        if n.op_type in _FOLDABLE and all((x in weights) for x in n.input if x) and (
            n.op_type in ("Constant", "ConstantOfShape") or any(n.input)
        ):
            const_nodes.add(i)
            weights.update(o for o in n.output if o)

    def tensor(name: str, node_name: str, op: str) -> TensorInfo:
        shape, dtype = info.get(name, (None, "float32"))
        if shape is None:
            # A scalar declared with an empty shape is fine; unknown dims are not.
            raise ModelError(f"{source}: node {node_name!r} ({op}): shape of tensor {name!r} is unknown; "
                             "export the model with static input shapes")
        return TensorInfo(name, shape, dtype)

    init_names = {i.name for i in g.initializer}
    graph_inputs = []
    for vi in g.input:
        if vi.name in init_names:  # IR < 4: weights listed as inputs
            continue
        shape, dtype = info.get(vi.name, (None, "float32"))
        if shape is None:
            dims = [d.dim_param or (d.dim_value if d.dim_value > 0 else "?") for d in vi.type.tensor_type.shape.dim]
            raise ModelError(f"{source}: input {vi.name!r} has a dynamic shape {dims}; "
                             "export the model with static input shapes")
        graph_inputs.append(TensorInfo(vi.name, shape, dtype))

    nodes: list[Node] = []
    seen_names: set[str] = set()
    for i, n in enumerate(g.node):
        if i in const_nodes:
            continue
        name = n.name or f"{n.op_type}_{i}"
        if name in seen_names:
            name = f"{name}_{i}"
        seen_names.add(name)
        ins = [tensor(x, name, n.op_type) for x in n.input if x]
        outs = [tensor(x, name, n.op_type) for x in n.output if x]
        attrs = _attrs(n)
        w = tuple(x for x in n.input if x and x in weights)
        params = sum(t.numel for t in ins if t.name in weights)
        nodes.append(Node(
            name=name, op=n.op_type, inputs=tuple(ins), outputs=tuple(outs), attrs=attrs, weights=w,
            macs=node_macs(n.op_type, ins, outs, attrs), params=params,
            bytes_moved=sum(t.nbytes for t in ins) + sum(t.nbytes for t in outs),
        ))
    if not nodes:
        raise ModelError(f"{source}: the graph computes nothing (no nodes after folding constants)")
    graph_outputs = tuple(tensor(o.name, "<graph output>", "output") for o in g.output)
    return Graph(name=g.name or Path(source).stem, nodes=tuple(nodes), inputs=tuple(graph_inputs),
                 outputs=graph_outputs, source_format="onnx")


def load_onnx_graph(path: str | Path) -> Graph:
    """Read an ONNX file and build its IR (missing, truncated or non-ONNX files → ModelError)."""
    from .workload import load_workload

    return load_workload(path).graph
