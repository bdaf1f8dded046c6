"""TFLite flatbuffer → graph IR (first subgraph), with shapes, dtypes and cost counts.

Reads the file with the schema bindings that ``ai-edge-litert`` ships, so no TensorFlow.
Op names are the schema's builtin names (``CONV_2D``, ``DEPTHWISE_CONV_2D`` …); custom ops
are ``CUSTOM:<code>``. Node attributes are the op's builtin options in snake_case, enums by
name (``{"padding": "SAME", "stride_h": 1, "fused_activation_function": "RELU", …}``).
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

from farm.errors import ModelError
from farm.ir.graph import Graph, Node, TensorInfo

__all__ = ["graph_from_tflite", "load_tflite_graph"]

# TensorType names whose numpy spelling is not simply the lower-cased name.
_DTYPE_SPELLING = {"RESOURCE": "resource", "VARIANT": "variant"}
# Option fields holding schema enums, reported by name rather than number.
_ENUM_FIELDS = {"padding": "Padding", "fusedActivationFunction": "ActivationFunctionType"}


def _numel(shape: tuple[int, ...]) -> int:
    return math.prod(shape) if shape else 1


def _macs(op: str, ins: list[TensorInfo], outs: list[TensorInfo], attrs: dict[str, Any]) -> int:
    """Multiply-accumulates of one op; 0 for ops that do no multiply-accumulate work.

    ``ins`` keeps the op's input order (omitted optional inputs are absent only at the end).
    """
    if not outs or len(ins) < 2:
        return 0
    out = outs[0].shape
    if op == "CONV_2D":  # filter [Cout, KH, KW, Cin/groups]
        return _numel(out) * _numel(ins[1].shape[1:])
    if op == "DEPTHWISE_CONV_2D":  # filter [1, KH, KW, Cout]: one KH×KW window per output element
        return _numel(out) * _numel(ins[1].shape[1:3])
    if op == "CONV_3D":  # filter [KD, KH, KW, Cin, Cout]
        return _numel(out) * _numel(ins[1].shape[:-1])
    if op == "TRANSPOSE_CONV":  # inputs: output_shape, filter [Cout, KH, KW, Cin], x
        return _numel(ins[2].shape) * _numel(ins[1].shape[:3]) if len(ins) > 2 else 0
    if op == "FULLY_CONNECTED":  # weights [out, in]; input flattened to [batch, in]
        return _numel(out) * ins[1].shape[-1] if ins[1].shape else 0
    if op == "BATCH_MATMUL":  # x [..., M, K] (or [..., K, M] with adj_x)
        a = ins[0].shape
        if len(a) < 2:
            return 0
        return _numel(out) * (a[-2] if attrs.get("adj_x") else a[-1])
    return 0


def _snake(name: str) -> str:
    return re.sub(r"([A-Z])", r"_\1", name).lower()  # camelCase fields: dilationWFactor → dilation_w_factor


def _enum_names(enum: Any) -> dict[int, str]:
    return {v: k for k, v in vars(enum).items() if not k.startswith("_") and isinstance(v, int)}


def _attrs(options: Any, enums: dict[str, dict[int, str]]) -> dict[str, Any]:
    """Scalar fields of a builtin-options object; nested tables and vectors are left out."""
    if options is None:
        return {}
    attrs: dict[str, Any] = {}
    for key, value in vars(options).items():
        if key in _ENUM_FIELDS and isinstance(value, int):
            attrs[_snake(key)] = enums[_ENUM_FIELDS[key]].get(value, value)
        elif isinstance(value, (int, float, str)):  # bool is an int
            attrs[_snake(key)] = value
    return attrs


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else str(value)


def _ints(values: Any) -> list[int]:
    return [] if values is None else [int(v) for v in values]


def graph_from_tflite(data: bytes, *, source: str = "<memory>", name: str | None = None) -> Graph:
    """The first subgraph of a ``.tflite`` file as a :class:`Graph`.

    ``source`` names the file in error messages; ``name`` defaults to its stem.
    Raises :class:`ModelError` (one line, naming ``source``) for anything not a readable
    TFLite model, and when ``ai-edge-litert`` is not installed.
    """
    try:
        from ai_edge_litert import schema_py_generated as s
    except ImportError:
        raise ModelError(f"{source}: reading .tflite needs ai-edge-litert (pip install 'hwfarm[litert]')") from None
    if len(data) < 8 or bytes(data[4:8]) != b"TFL3":
        raise ModelError(f"{source}: not a TFLite file (no TFL3 identifier at bytes 4..8)")
    try:
        nodes, g_in, g_out = _parse(s, data)
    except ModelError as err:
        raise ModelError(f"{source}: {err}") from None
    except Exception as err:  # a truncated flatbuffer fails anywhere inside the generated code
        detail = str(err).strip().splitlines()
        raise ModelError(f"{source}: corrupt or truncated TFLite file "
                         f"({type(err).__name__}{': ' + detail[0] if detail else ''})") from None
    return Graph(name=name or Path(source).stem, nodes=nodes, inputs=g_in, outputs=g_out, source_format="tflite")


def _parse(s: Any, data: bytes) -> tuple[tuple[Node, ...], tuple[TensorInfo, ...], tuple[TensorInfo, ...]]:
    model: Any = s.ModelT.InitFromPackedBuf(bytearray(data), 0)
    if not model.subgraphs:
        raise ModelError("TFLite file has no subgraphs")
    sg = model.subgraphs[0]
    enums = {e: _enum_names(getattr(s, e)) for e in ("BuiltinOperator", "TensorType", *_ENUM_FIELDS.values())}
    codes = []
    for c in model.operatorCodes or []:
        if c.customCode is not None:
            codes.append(f"CUSTOM:{_text(c.customCode)}")
        else:
            code = max(c.builtinCode, c.deprecatedBuiltinCode)
            codes.append(enums["BuiltinOperator"].get(code, f"BUILTIN_{code}"))
    buffers = model.buffers or []
    tensors: list[tuple[TensorInfo, bool]] = []
    for t in sg.tensors or []:
        shape = tuple(_ints(t.shape))
        if any(d < 0 for d in shape):
            raise ModelError(f"tensor {_text(t.name)!r} has a negative dimension {list(shape)}")
        type_name = enums["TensorType"].get(t.type)
        if type_name is None:
            raise ModelError(f"tensor {_text(t.name)!r} has unknown type {t.type}")
        if not 0 <= t.buffer < max(len(buffers), 1):
            raise ModelError(f"tensor {_text(t.name)!r} points at buffer {t.buffer} of {len(buffers)}")
        buf = buffers[t.buffer] if t.buffer > 0 else None
        # Constant data lives inline (data), past the flatbuffer (offset/size, models over 2 GB)
        # or in an external file (external_buffer); buffer 0 is the empty sentinel.
        has_data = bool(t.externalBuffer) or (
            buf is not None and ((buf.data is not None and len(buf.data) > 0) or buf.offset > 1)
        )
        dtype = _DTYPE_SPELLING.get(type_name, type_name.lower())
        tensors.append((TensorInfo(_text(t.name) or f"tensor_{len(tensors)}", shape, dtype), has_data))
    nodes = []
    for i, op in enumerate(sg.operators or []):
        if not 0 <= op.opcodeIndex < len(codes):
            raise ModelError(f"operator {i} has opcode index {op.opcodeIndex} of {len(codes)}")
        opname = codes[op.opcodeIndex]
        ins = [tensors[j] for j in _ints(op.inputs) if j >= 0]  # -1: an omitted optional input
        outs = tuple(tensors[j][0] for j in _ints(op.outputs))
        in_infos = [t for t, _ in ins]
        attrs = _attrs(op.builtinOptions, enums)
        nodes.append(Node(
            name=f"{opname.lower()}_{i}", op=opname, inputs=tuple(in_infos), outputs=outs, attrs=attrs,
            weights=tuple(t.name for t, w in ins if w),
            macs=_macs(opname, in_infos, list(outs), attrs),
            params=sum(t.numel for t, w in ins if w),
            bytes_moved=sum(t.nbytes for t in in_infos) + sum(t.nbytes for t in outs),
        ))
    if not nodes:
        raise ModelError("TFLite file has no operators")
    g_in = tuple(tensors[j][0] for j in _ints(sg.inputs))
    g_out = tuple(tensors[j][0] for j in _ints(sg.outputs))
    return tuple(nodes), g_in, g_out


def load_tflite_graph(path: str | os.PathLike[str]) -> Graph:
    """Read a ``.tflite`` file; errors are :class:`ModelError` naming the path."""
    p = Path(path)
    from farm.formats.files import read_model_bytes

    data = read_model_bytes(p)
    return graph_from_tflite(data, source=str(p), name=p.stem)
