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

Counting rules (:func:`farm.ir.cost.node_macs`): MACs are counted for Conv / ConvTranspose / Gemm /
MatMul, their integer and QLinear variants, and LSTM / GRU / RNN. Every other op
(pooling, elementwise, normalization, activation, data movement) has ``macs = 0``: their
cost shows up in ``bytes_moved``. ``params`` is the element count of the node's constant
inputs, *all* of them: a BatchNormalization has 4·C, a Reshape counts its shape vector, a
QLinearConv its scales and zero points. A weight read by two nodes counts in both.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from farm.errors import ModelError
from farm.ir.cost import node_macs, numel
from farm.ir.graph import Graph, Node, TensorInfo

if TYPE_CHECKING:
    import onnx

__all__ = ["graph_from_onnx", "load_onnx_graph", "parse_onnx", "onnx_skeleton", "read_onnx_structure"]

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


@functools.lru_cache(maxsize=64)
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
    from farm.formats.files import read_model_bytes

    data = read_model_bytes(p)
    return graph_from_onnx(parse_onnx(data, source=str(p), base_dir=p.parent), source=str(p))


def _load_small_external_data(model: Any, base_dir: Path, *, source: str) -> None:
    """Read the small integer initializers stored in external files (in place)."""
    from onnx import TensorProto
    from onnx.checker import ValidationError
    from onnx.external_data_helper import load_external_data_for_tensor, uses_external_data

    ints = {TensorProto.INT64, TensorProto.INT32, TensorProto.INT16, TensorProto.INT8, TensorProto.UINT8}
    for t in model.graph.initializer:
        if uses_external_data(t) and t.data_type in ints and numel(tuple(t.dims)) <= _SMALL_EXTERNAL_NUMEL:
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
    light = _without_weight_data(model, order)
    try:
        inferred = onnx.shape_inference.infer_shapes(light, strict_mode=False, data_prop=True)
    except Exception as err:  # noqa: BLE001 - onnx raises InferenceError, ValidationError, RuntimeError...
        raise ModelError(f"{source}: ONNX shape inference failed: {_one_line(err)}") from None
    return inferred, order if order is not None else list(range(len(model.graph.node)))


def _without_weight_data(model: Any, order: list[int] | None) -> Any:
    """A copy of ``model`` for shape inference, nodes in ``order``, without the weights' bytes:
    each large initializer becomes a graph input of its type and shape (only its dims matter);
    small ones, which may hold shapes that data propagation needs, stay whole. Serializing a
    100 MB model for shape inference cost most of an import; this costs nothing."""
    import onnx
    from onnx import helper

    g = model.graph
    light = onnx.ModelProto()
    for field in ("ir_version", "producer_name", "producer_version", "domain", "model_version"):
        if model.HasField(field):
            setattr(light, field, getattr(model, field))
    light.opset_import.extend(model.opset_import)
    lg = light.graph
    lg.name = g.name
    lg.node.extend(g.node if order is None else (g.node[i] for i in order))
    lg.input.extend(g.input)
    lg.output.extend(g.output)
    lg.value_info.extend(g.value_info)
    lg.sparse_initializer.extend(g.sparse_initializer)
    declared = {vi.name for vi in g.input}
    for t in g.initializer:
        if numel(tuple(t.dims)) <= _SMALL_INIT_NUMEL:
            lg.initializer.append(t)
        elif t.name not in declared:  # IR < 4 lists weights as inputs already
            lg.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    return light


# Initializers up to this size keep their values for shape inference (shape/axes tensors).
_SMALL_INIT_NUMEL = 64


def onnx_skeleton(data: bytes | memoryview, *, source: str = "<memory>") -> bytes:
    """ONNX bytes with the payload of every large initializer dropped (name, dims and type
    kept), read at the protobuf wire level without decoding the weights — the structure of a
    100 MB ResNet-50 in a few milliseconds, for predictors that need shapes, not values.
    Truncated or non-protobuf data is a ModelError."""
    buf = memoryview(data)
    out = bytearray()
    for num, wt, start, end, body in _fields(buf, 0, len(buf), source):
        if num == 7 and wt == 2:  # ModelProto.graph
            graph = bytearray()
            for gnum, gwt, gs, ge, gbody in _fields(buf, body, end, source):
                if gnum == 5 and gwt == 2:  # GraphProto.initializer
                    graph += _tensor_skeleton(buf, gs, ge, gbody, source)
                else:
                    graph += buf[gs:ge]
            out += _key(7, 2) + _varint(len(graph)) + graph
        else:
            out += buf[start:end]
    return bytes(out)


def _varint(n: int) -> bytes:
    b = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        b.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(b)


def _key(num: int, wt: int) -> bytes:
    return _varint(num << 3 | wt)


def _read_varint(buf: memoryview, i: int, end: int, source: str) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= end or shift > 63:
            raise ModelError(f"{source}: not a valid ONNX file (truncated or corrupt?)")
        byte = buf[i]
        i += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, i
        shift += 7


def _fields(buf: memoryview, i: int, end: int, source: str) -> Iterator[tuple[int, int, int, int, int]]:
    """(field number, wire type, field start, field end, payload start) of a message's fields."""
    while i < end:
        start = i
        key, i = _read_varint(buf, i, end, source)
        num, wt = key >> 3, key & 7
        if wt == 0:
            _, j = _read_varint(buf, i, end, source)
        elif wt == 1:
            j = i + 8
        elif wt == 5:
            j = i + 4
        elif wt == 2:
            n, i = _read_varint(buf, i, end, source)
            j = i + n
        else:
            raise ModelError(f"{source}: not a valid ONNX file (unsupported wire type {wt}; corrupt?)")
        if j > end or num == 0:
            raise ModelError(f"{source}: not a valid ONNX file (truncated or corrupt?)")
        yield num, wt, start, j, i
        i = j


def _tensor_skeleton(buf: memoryview, start: int, end: int, body: int, source: str) -> bytes:
    """One GraphProto.initializer field: whole if small, else only name, dims, type, location."""
    kept = bytearray()
    numel = 1
    for num, wt, s, e, b in _fields(buf, body, end, source):
        if num == 1:  # dims: packed or one varint per field
            if wt == 2:
                k = b
                while k < e:
                    d, k = _read_varint(buf, k, e, source)
                    numel *= d
            else:
                numel *= _read_varint(buf, b, e, source)[0]
        if num in (1, 2, 8, 13, 14):  # dims, data_type, name, external_data, data_location
            kept += buf[s:e]
    if numel <= _SMALL_INIT_NUMEL:
        return bytes(buf[start:end])
    return _key(5, 2) + _varint(len(kept)) + bytes(kept)


def _skeleton_of_map(mm: Any, source: str) -> tuple[str | None, bytes]:
    """onnx_skeleton over a memory map; an error comes back as text, so that no traceback
    keeps a view of the map alive when the map closes."""
    view = memoryview(mm)
    try:
        return None, onnx_skeleton(view, source=source)
    except ModelError as err:
        return str(err), b""
    finally:
        view.release()


def read_onnx_structure(path: str | Path) -> Graph:
    """The IR of an ONNX file read without its weight values (memory-mapped; the weights'
    pages are never touched). Same graph as :func:`load_onnx_graph`, much faster on large
    models; use it where only shapes matter (predictors)."""
    import mmap

    p = Path(path)
    try:
        with open(p, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise ModelError(f"{p}: model file is empty")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                if mm[4:8] == b"TFL3":
                    raise ModelError(f"{p}: this is a TFLite model, not ONNX")
                problem, skeleton = _skeleton_of_map(mm, str(p))
    except OSError as err:
        raise ModelError(f"{p}: cannot read model file: {err.strerror or err}") from None
    if problem is not None:
        raise ModelError(problem)
    return graph_from_onnx(parse_onnx(skeleton, source=str(p), base_dir=p.parent), source=str(p))


def _scalar_values(initializers: Any) -> dict[str, float]:
    """The values of the single-number initializers whose data the model holds."""
    from onnx import numpy_helper

    out: dict[str, float] = {}
    for t in initializers:
        if numel(tuple(t.dims)) == 1 and not t.external_data:
            try:
                v = numpy_helper.to_array(t).reshape(-1)
                out[t.name] = float(v[0])
            except (ValueError, TypeError, IndexError):  # no payload (a skeleton) or not a number
                continue
    return out


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
    for init in model.graph.initializer:  # the light model for inference holds big weights as inputs
        info[init.name] = (tuple(int(d) for d in init.dims), _dtype_name(init.data_type))
        weights.add(init.name)
    for sp in model.graph.sparse_initializer:
        info[sp.values.name] = (tuple(int(d) for d in sp.dims), _dtype_name(sp.values.data_type))
        weights.add(sp.values.name)
    init_names = set(weights)
    scalars = _scalar_values(model.graph.initializer)

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
            consts=tuple((t.name, scalars[t.name]) for t in ins if t.name in scalars),
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
