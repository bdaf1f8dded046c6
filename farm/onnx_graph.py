"""ONNX → graph IR, with shapes from ONNX shape inference and per-node cost counts.

Copes with the files people actually have:

- old IR versions (< 4) that list every initializer as a graph input too: those are
  weights, not model inputs, so they are left out of ``Graph.inputs``;
- weights computed by constant subgraphs (``Constant``, ``ConstantOfShape``, a
  ``Constant → Reshape/Cast/Transpose/DequantizeLinear`` chain, ...): any deterministic node
  whose inputs are all constant is **folded away**, and its outputs count as weights
  (``Node.weights``, ``params``) of the nodes that read them. Folded nodes cost nothing at
  run time once a runtime has constant-folded them, which onnxruntime and TFLite converters
  do. ``Shape`` and ``Size`` are constants too (shapes are static), so the
  ``Shape → Gather → Concat → Reshape`` chains of traced exports fold into the Reshape.
  Random generators and nodes with subgraphs are never folded;
- nodes out of topological order (onnxruntime accepts them) are sorted first, stably;
- model-local functions (``ModelProto.functions``, as the dynamo exporter writes) are
  inlined, so the ops inside them are counted;
- external data is not needed: costs come from initializer dims. :func:`load_onnx_graph`
  reads only the small integer tensors (shapes, axes) that shape inference must see;
- any opset (7 to the newest the installed ``onnx`` knows): MACs come from shapes, not from
  opset-specific attributes;
- a tensor whose shape cannot be determined (dynamic dims, missing value_info, a custom op
  without shape inference) is a :class:`~farm.errors.ModelError` naming the node and
  tensor; a graph input with a symbolic dim (``'batch'``) is one naming the input. We need
  static shapes.

Counting rules (:func:`node_macs`): MACs are counted for Conv / ConvTranspose / Gemm /
MatMul, their integer and QLinear variants, and LSTM / GRU / RNN. Every other op
(pooling, elementwise, normalization, activation, data movement) has ``macs = 0``: their
cost shows up in ``bytes_moved``. ``params`` is the element count of the node's constant
inputs, *all* of them: a BatchNormalization has 4·C, a Reshape counts its shape vector, a
QLinearConv its scales and zero points. A weight read by two nodes counts in both.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ModelError
from .graph import Graph, Node, TensorInfo

if TYPE_CHECKING:
    import onnx

__all__ = ["graph_from_onnx", "load_onnx_graph", "parse_onnx", "node_macs"]

# Nodes that are never constant-folded even when all their inputs are constant.
_NEVER_FOLD = frozenset({
    "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli",
    "If", "Loop", "Scan", "SequenceMap",
})
# Ops whose output depends only on their input's (static) shape: always constant here.
_STATIC_SHAPE_OPS = frozenset({"Shape", "Size"})
# Integer initializers at most this many elements are read from external data files, as
# shape inference needs their values (Reshape shapes, Slice bounds, axes).
_SMALL_EXTERNAL_NUMEL = 64
_DEFAULT_DOMAINS = ("", "ai.onnx")


def _numel(shape: tuple[int, ...]) -> int:
    return math.prod(shape) if shape else 1


def node_macs(op: str, ins: list[TensorInfo], outs: list[TensorInfo], attrs: dict[str, Any]) -> int:
    """Multiply-accumulates of one node from its shapes.

    ``ins`` are the node's present inputs in order (empty optional names skipped; the inputs
    read here all come before any optional one). Conv-like: output elements × weights per
    output (``Cin/group · prod(kernel)``); ConvTranspose: input elements × ``Cout/group ·
    prod(kernel)``; Gemm/MatMul: ``M·N·K`` times the batch; recurrent: per step and batch
    row, the elements of W and R. Everything else: 0.
    """
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
        seq, batch = x[0], x[1]  # layout=1 swaps them; the product is the same
        return seq * batch * (_numel(w) + _numel(r))
    return 0


def _attrs(node: Any) -> dict[str, Any]:
    """Node attributes as plain JSON-able values; tensors and subgraphs summarized as strings."""
    from onnx import AttributeProto, helper

    out: dict[str, Any] = {}
    for a in node.attribute:
        if a.type == AttributeProto.TENSOR:
            out[a.name] = f"<tensor {_dtype_name(a.t.data_type)}{list(a.t.dims)}>"
        elif a.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS):
            out[a.name] = "<subgraph>"
        elif a.type in (AttributeProto.SPARSE_TENSOR, AttributeProto.SPARSE_TENSORS, AttributeProto.TENSORS):
            out[a.name] = "<tensor>"
        elif a.type in (AttributeProto.TYPE_PROTO, AttributeProto.TYPE_PROTOS):
            out[a.name] = "<type>"
        else:
            v = helper.get_attribute_value(a)
            if isinstance(v, bytes):
                v = v.decode("utf-8", "replace")
            elif isinstance(v, list):
                v = [x.decode("utf-8", "replace") if isinstance(x, bytes) else x for x in v]
            out[a.name] = v
    if node.domain not in _DEFAULT_DOMAINS:
        out["domain"] = node.domain
    return out


def _dtype_name(elem_type: int) -> str:
    """numpy spelling of an ONNX element type ('float32', 'int8', ...)."""
    from onnx import TensorProto, helper

    if elem_type == TensorProto.STRING:
        return "string"
    try:
        return str(helper.tensor_dtype_to_np_dtype(elem_type))
    except (KeyError, ValueError, TypeError):
        return "float32"


def _one_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def parse_onnx(data: bytes, *, source: str = "<memory>", base_dir: str | Path | None = None) -> onnx.ModelProto:
    """Decode ONNX bytes, refusing empty, truncated and non-ONNX data with a one-line ModelError.

    With ``base_dir`` (the model file's folder), the small integer initializers kept in
    external data files are read in, since shape inference needs their values; weights
    stay where they are (only their dims are needed).
    """
    import onnx
    from google.protobuf.message import DecodeError

    if not data:
        raise ModelError(f"{source}: model file is empty")
    if len(data) >= 8 and data[4:8] == b"TFL3":
        raise ModelError(f"{source}: this is a TFLite model, not ONNX")
    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError, TypeError) as err:
        raise ModelError(f"{source}: not a valid ONNX file (truncated or corrupt?): {_one_line(err)}") from None
    if model.ir_version <= 0 or not model.HasField("graph"):
        raise ModelError(f"{source}: not a valid ONNX file (no IR version or no graph; truncated or corrupt?)")
    if not model.graph.node:
        raise ModelError(f"{source}: ONNX file has no nodes (truncated or corrupt?)")
    if model.ir_version >= 3 and not model.opset_import:
        raise ModelError(f"{source}: ONNX file has no opset_import (truncated or corrupt?)")
    if base_dir is not None:
        _load_small_external_data(model, Path(base_dir), source=source)
    return model


def load_onnx_graph(path: str | Path) -> Graph:
    """Read an ONNX file (any suffix) and build its IR.

    A missing, unreadable, empty, truncated or non-ONNX file is a ModelError naming the path.
    """
    p = Path(path)
    from .workload import read_model_bytes  # late: workload imports this module's parser

    data = read_model_bytes(p)
    return graph_from_onnx(parse_onnx(data, source=str(p), base_dir=p.parent), source=str(p))


def _load_small_external_data(model: Any, base_dir: Path, *, source: str) -> None:
    """Read the small integer initializers stored in external files (in place)."""
    from onnx import TensorProto
    from onnx.checker import ValidationError
    from onnx.external_data_helper import load_external_data_for_tensor, uses_external_data

    ints = {TensorProto.INT64, TensorProto.INT32, TensorProto.INT16, TensorProto.INT8, TensorProto.UINT8}
    for t in model.graph.initializer:
        if uses_external_data(t) and t.data_type in ints and _numel(tuple(t.dims)) <= _SMALL_EXTERNAL_NUMEL:
            try:
                load_external_data_for_tensor(t, str(base_dir))
            except (OSError, ValueError, ValidationError) as err:  # a missing file is a ValidationError
                raise ModelError(f"{source}: cannot read external data of tensor {t.name!r}: {_one_line(err)}") from None
            t.data_location = TensorProto.DEFAULT
            del t.external_data[:]


def _topological_order(g: Any, source: str) -> list[int] | None:
    """Node indices in a stable topological order, or None when the graph is already sorted."""
    import heapq

    known = {vi.name for vi in g.input} | {t.name for t in g.initializer} | {
        t.values.name for t in g.sparse_initializer} | {""}
    producer: dict[str, int] = {}
    for i, n in enumerate(g.node):
        for o in n.output:
            if o:
                producer[o] = i
    available = set(known)
    in_order = True
    for n in g.node:
        if any(x not in available for x in n.input):
            in_order = False
            break
        available.update(n.output)
    if in_order:
        return None
    deps: list[set[int]] = []
    users: dict[int, list[int]] = {}
    for i, n in enumerate(g.node):
        d = set()
        for x in n.input:
            if x in known:
                continue
            if x not in producer:
                name = n.name or f"{n.op_type}_{i}"
                raise ModelError(f"{source}: node {name!r} ({n.op_type}) reads tensor {x!r}, which no node "
                                 "produces and is neither a graph input nor an initializer")
            d.add(producer[x])
        deps.append(d)
        for j in d:
            users.setdefault(j, []).append(i)
    ready = [i for i, d in enumerate(deps) if not d]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for u in users.get(i, ()):
            deps[u].discard(i)
            if not deps[u]:
                heapq.heappush(ready, u)
    if len(order) != len(g.node):
        raise ModelError(f"{source}: the graph has a cycle")
    return order


def _prepare(model: Any, source: str) -> tuple[Any, list[int]]:
    """Inline local functions, shape-infer; return the inferred model and its node order."""
    import onnx

    if model.functions:
        try:
            from onnx import inliner

            model = inliner.inline_local_functions(model)
        except Exception as err:  # noqa: BLE001 - onnx raises several types; report one line
            raise ModelError(f"{source}: cannot inline the model's local functions: {_one_line(err)}") from None
    order = _topological_order(model.graph, source)
    if order is not None:
        sorted_model = onnx.ModelProto()
        sorted_model.CopyFrom(model)
        del sorted_model.graph.node[:]
        sorted_model.graph.node.extend(model.graph.node[i] for i in order)
        model = sorted_model
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception as err:  # noqa: BLE001 - onnx raises InferenceError, ValidationError, RuntimeError...
        raise ModelError(f"{source}: ONNX shape inference failed: {_one_line(err)}") from None
    return inferred, order if order is not None else list(range(len(model.graph.node)))


def graph_from_onnx(model: onnx.ModelProto, *, source: str = "<memory>") -> Graph:
    """Build the IR of an ``onnx.ModelProto`` (not modified). Raises ModelError with ``source`` in the message.

    ``Graph.name`` is the ONNX graph's name, or the stem of ``source`` if it has none.
    Nodes without a name are called ``<op>_<index>`` (index in the file's node list).
    """
    import onnx

    inferred, order = _prepare(model, source)
    g = inferred.graph

    # name -> (shape or None if unknown, dtype); and names of non-tensor values (sequences, maps).
    info: dict[str, tuple[tuple[int, ...] | None, str]] = {}
    not_tensors: set[str] = set()

    def record(vi: Any) -> None:
        if not vi.type.HasField("tensor_type"):
            if vi.type.WhichOneof("value") is not None:
                not_tensors.add(vi.name)
            return
        tt = vi.type.tensor_type
        dims: tuple[int, ...] | None = None
        if tt.HasField("shape"):
            values = [int(d.dim_value) for d in tt.shape.dim if d.HasField("dim_value") and d.dim_value >= 0]
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
    for sp in g.sparse_initializer:
        info[sp.values.name] = (tuple(int(d) for d in sp.dims), _dtype_name(sp.values.data_type))
        weights.add(sp.values.name)
    init_names = set(weights)

    # Fold the constant subgraphs: a deterministic node whose inputs are all constant.
    folded: set[int] = set()
    for i, n in enumerate(g.node):
        present = [x for x in n.input if x]
        has_subgraph = any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in n.attribute)
        if n.op_type in _NEVER_FOLD or has_subgraph:
            continue
        static = n.op_type in _STATIC_SHAPE_OPS  # shapes are static, so these are constants
        if static or ((present or n.op_type == "Constant") and all(x in weights for x in present)):
            folded.add(i)
            weights.update(o for o in n.output if o)

    def tensor(name: str, node_name: str, op: str, domain: str) -> TensorInfo:
        shape, dtype = info.get(name, (None, "float32"))
        if name in not_tensors:
            raise ModelError(f"{source}: node {node_name!r} ({op}): {name!r} is a sequence or map, not a tensor; "
                             "only tensor graphs are supported")
        if shape is None:
            hint = "export with static input shapes"
            if domain not in _DEFAULT_DOMAINS and not onnx.defs.has(op, domain):
                hint = f"ONNX has no shape inference for custom op {domain}.{op}; add value_info or {hint}"
            raise ModelError(f"{source}: node {node_name!r} ({op}): shape of tensor {name!r} is unknown; {hint}")
        return TensorInfo(name, shape, dtype)

    graph_inputs = []
    for vi in g.input:
        if vi.name in init_names:  # IR < 4: weights listed as inputs
            continue
        if vi.name in not_tensors:
            raise ModelError(f"{source}: input {vi.name!r} is a sequence or map, not a tensor; "
                             "only tensor inputs are supported")
        shape, dtype = info.get(vi.name, (None, "float32"))
        if shape is None:
            tt = vi.type.tensor_type
            if not tt.HasField("shape"):
                raise ModelError(f"{source}: input {vi.name!r} has no declared shape; "
                                 "export the model with static input shapes")
            dims = [d.dim_param or (d.dim_value if d.HasField("dim_value") else "?") for d in tt.shape.dim]
            raise ModelError(f"{source}: input {vi.name!r} has a dynamic shape {dims}; "
                             "export the model with static input shapes")
        graph_inputs.append(TensorInfo(vi.name, shape, dtype))

    nodes: list[Node] = []
    seen_names: set[str] = set()
    for i, n in enumerate(g.node):
        if i in folded:
            continue
        name = n.name or f"{n.op_type}_{order[i]}"
        if name in seen_names:
            name = f"{name}_{order[i]}"
        seen_names.add(name)
        ins = [tensor(x, name, n.op_type, n.domain) for x in n.input if x]
        outs = [tensor(x, name, n.op_type, n.domain) for x in n.output if x]
        attrs = _attrs(n)
        nodes.append(Node(
            name=name, op=n.op_type, inputs=tuple(ins), outputs=tuple(outs), attrs=attrs,
            weights=tuple(t.name for t in ins if t.name in weights),
            macs=node_macs(n.op_type, ins, outs, attrs),
            params=sum(t.numel for t in ins if t.name in weights),
            bytes_moved=sum(t.nbytes for t in ins) + sum(t.nbytes for t in outs),
        ))
    if not nodes:
        raise ModelError(f"{source}: the graph computes nothing (no nodes left after folding constants)")

    graph_outputs = []
    for o in g.output:
        shape, dtype = info.get(o.name, (None, "float32"))
        if shape is None or o.name in not_tensors:
            raise ModelError(f"{source}: graph output {o.name!r}: shape is unknown; export with static input shapes")
        graph_outputs.append(TensorInfo(o.name, shape, dtype))
    return Graph(name=g.name or Path(source).stem, nodes=tuple(nodes), inputs=tuple(graph_inputs),
                 outputs=tuple(graph_outputs), source_format="onnx")
