"""TFLite flatbuffer → graph IR (first subgraph), with shapes, dtypes and cost counts.

Reads the file with the schema bindings that ``ai-edge-litert`` ships, so no TensorFlow.
Op names are the schema's builtin names (``CONV_2D``, ``DEPTHWISE_CONV_2D`` …).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .errors import ModelError
from .graph import Graph, Node, TensorInfo

__all__ = ["graph_from_tflite", "load_tflite_graph"]

_DTYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 5: "string", 6: "bool", 7: "int16",
           9: "int8", 10: "float64", 12: "uint64", 15: "uint32", 16: "uint16", 17: "int4", 18: "bfloat16"}


def _numel(shape: tuple[int, ...]) -> int:
    return math.prod(shape) if shape else 1


def _macs(op: str, ins: list[TensorInfo], outs: list[TensorInfo]) -> int:
    if not outs or len(ins) < 2:
        return 0
    out = outs[0].shape
    if op == "CONV_2D":  # filter [Cout, KH, KW, Cin/groups]
        return _numel(out) * _numel(ins[1].shape[1:])
    if op == "DEPTHWISE_CONV_2D":  # filter [1, KH, KW, Cout]
        kh, kw = ins[1].shape[1:3]
        return _numel(out) * kh * kw
    if op == "TRANSPOSE_CONV":  # inputs: output_shape, filter [Cout, KH, KW, Cin], x
        return _numel(ins[2].shape) * _numel(ins[1].shape[:3]) if len(ins) > 2 else 0
    if op == "FULLY_CONNECTED":  # weights [out, in]
        return _numel(out) * ins[1].shape[-1]
    if op == "BATCH_MATMUL":
        return _numel(out) * ins[0].shape[-1]
    return 0


def graph_from_tflite(data: bytes, *, source: str = "<memory>", name: str | None = None) -> Graph:
    try:
        from ai_edge_litert import schema_py_generated as s
    except ImportError:
        raise ModelError(f"{source}: reading .tflite needs ai-edge-litert (pip install 'hwfarm[litert]')") from None
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelError(f"{source}: not a TFLite file (no TFL3 identifier)")
    try:
        model: Any = s.ModelT.InitFromPackedBuf(bytearray(data), 0)
        sg = model.subgraphs[0]
        names = {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_")}
        codes = [names.get(max(c.builtinCode, c.deprecatedBuiltinCode), f"OP_{c.builtinCode}")
                 if c.customCode is None else f"CUSTOM:{c.customCode.decode() if isinstance(c.customCode, bytes) else c.customCode}"
                 for c in model.operatorCodes]
        buffers = model.buffers or []
        tensors = []
        for t in sg.tensors:
            nm = t.name.decode() if isinstance(t.name, bytes) else str(t.name)
            shape = tuple(int(d) for d in (t.shape if t.shape is not None else ()))
            has_data = 0 < t.buffer < len(buffers) and buffers[t.buffer].data is not None and len(buffers[t.buffer].data) > 0
            tensors.append((TensorInfo(nm, shape, _DTYPES.get(t.type, "float32")), has_data))
        nodes = []
        for i, op in enumerate(sg.operators or []):
            opname = codes[op.opcodeIndex]
            ins = [tensors[j] for j in (op.inputs if op.inputs is not None else []) if j >= 0]
            outs = [tensors[j][0] for j in (op.outputs if op.outputs is not None else [])]
            in_infos = [t for t, _ in ins]
            weights = tuple(t.name for t, w in ins if w)
            nodes.append(Node(
                name=f"{opname.lower()}_{i}", op=opname, inputs=tuple(in_infos), outputs=tuple(outs),
                weights=weights, macs=_macs(opname, in_infos, outs),
                params=sum(t.numel for t, w in ins if w),
                bytes_moved=sum(t.nbytes for t in in_infos) + sum(t.nbytes for t in outs),
            ))
        g_in = tuple(tensors[j][0] for j in (sg.inputs if sg.inputs is not None else []))
        g_out = tuple(tensors[j][0] for j in (sg.outputs if sg.outputs is not None else []))
    except ModelError:
        raise
    except Exception as err:  # a truncated flatbuffer fails anywhere inside the generated code
        raise ModelError(f"{source}: corrupt or truncated TFLite file ({type(err).__name__}: {err})") from None
    if not nodes:
        raise ModelError(f"{source}: TFLite file has no operators")
    return Graph(name=name or Path(source).stem, nodes=tuple(nodes), inputs=g_in, outputs=g_out,
                 source_format="tflite")


def load_tflite_graph(path: str | Path) -> Graph:
    from .workload import load_workload

    return load_workload(path).graph
