"""Graph IR → ``.tflite`` (float32 or full-integer int8), the way LiteRT's converter lays it out.

The IR is NCHW with ONNX op names (:mod:`farm.ir.builder`); a TFLite model is NHWC with fused
activations. :func:`graph_to_tflite` writes what the converter would: BatchNormalization is
folded into the convolution or fully-connected layer before it, a following ReLU / ReLU6 (and
a ReLU after an Add) becomes the op's ``fused_activation_function``, ``Identity`` vanishes,
ONNX paddings that are neither SAME nor VALID get an explicit ``PAD``. 4-D tensors are stored
NHWC, 5-D ones (a channel shuffle's ``[N, g, C/g, H, W]``) as ``[N, H, W, g, C/g]``.

``dtype="int8"`` writes a full-integer model (int8 activations and weights, int32 biases,
per-tensor scales): what int8-only accelerators (Edge TPU, phone NPUs, MCUs) take. The
values are seeded random numbers — the files exist to be timed, not to be accurate.
``bit_widths`` (``{"*": [w, a], "conv_2d_3": [w, a]}``, node names as
:func:`farm.formats.tflite.graph_from_tflite` gives them) is stored as the model's metadata
``hwfarm.bit_widths``, which :func:`farm.workload.load_workload` puts on the graph's nodes
(bit-serial accelerators cost by it).

Needs ``ai-edge-litert`` (the schema bindings). Pure: the same call returns the same bytes.
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping, Sequence

import numpy as np

from farm.errors import InputError
from farm.ir.bits import BIT_WIDTHS_KEY
from farm.ir.graph import Graph, Node

__all__ = ["graph_to_tflite", "tflite_metadata", "TFLITE_DTYPES"]

TFLITE_DTYPES = ("float32", "int8")
_ACT_SCALE = 0.05  # every int8 activation: per-tensor scale, zero point 0
_W_SCALE = 0.01
_FUSABLE_ACT = {"Relu": "RELU", "Clip": "RELU6"}
_ACT_OPS = {"Relu": "RELU", "Clip": "RELU6", "Sigmoid": "LOGISTIC", "HardSwish": "HARD_SWISH", "Tanh": "TANH"}


def _layout(rank: int) -> list[int]:
    """Axis order of a tensor stored in TFLite, as indices into the IR's NCHW shape."""
    return {4: [0, 2, 3, 1], 5: [0, 3, 4, 1, 2]}.get(rank, list(range(rank)))


def _tfl_shape(shape: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(shape[i]) for i in _layout(len(shape)))


def _tfl_axis(axis: int, rank: int) -> int:
    axis = axis % rank if rank else 0
    return _layout(rank).index(axis)


class _Writer:
    def __init__(self, graph: Graph, dtype: str, seed: int) -> None:
        from farm.formats.tflite_builder import TfliteBuilder

        self.graph = graph
        self.int8 = dtype == "int8"
        self.b = TfliteBuilder()
        self.s = self.b.schema
        self.rng = np.random.default_rng(seed)
        self.index: dict[str, int] = {}  # IR tensor name → TFLite tensor index
        self.alias: dict[str, str] = {}
        self.n_ops = 0
        self.op_names: list[str] = []

    # ---------------------------------------------------------------- tensors
    def act(self, name: str, shape: Sequence[int], *, quant: tuple[float, int] | None = None) -> int:
        s = self.s
        if self.int8:
            return self.b.tensor(name, _tfl_shape(shape), s.TensorType.INT8, quant=quant or (_ACT_SCALE, 0))
        return self.b.tensor(name, _tfl_shape(shape))

    def const(self, name: str, shape: tuple[int, ...], *, bias: bool = False, value: float | None = None,
              w_scale: float = _W_SCALE) -> int:
        s = self.s
        if self.int8:
            if bias:
                data = self.rng.integers(-1000, 1000, shape).astype(np.int32)
                return self.b.tensor(name, shape, s.TensorType.INT32, data=data, quant=(_ACT_SCALE * w_scale, 0))
            data = (np.full(shape, int(round((value or 0.0) / w_scale)), np.int8) if value is not None
                    else self.rng.integers(-127, 128, shape).astype(np.int8))
            return self.b.tensor(name, shape, s.TensorType.INT8, data=data, quant=(w_scale, 0))
        data = np.full(shape, value, np.float32) if value is not None else \
            (self.rng.standard_normal(shape) * 0.1).astype(np.float32)
        return self.b.tensor(name, shape, data=data)

    def ints(self, name: str, values: Any) -> int:
        arr = np.asarray(values, dtype=np.int32)
        return self.b.tensor(name, tuple(arr.shape), self.s.TensorType.INT32, data=arr)

    def src(self, name: str) -> int:
        return self.index[self.alias.get(name, name)]

    def op(self, builtin: str, inputs: list[int], outputs: list[int], options: str | None = None,
           **fields: Any) -> None:
        s = self.s
        opts = None
        otype = 0
        if options is not None:
            opts = getattr(s, f"{options}T")()
            for k, v in fields.items():
                setattr(opts, k, v)
            otype = getattr(s.BuiltinOptions, options)
        self.b.op(getattr(s.BuiltinOperator, builtin), inputs, outputs, otype, opts)
        self.op_names.append(f"{builtin.lower()}_{self.n_ops}")
        self.n_ops += 1

    def act_fn(self, name: str | None) -> int:
        return getattr(self.s.ActivationFunctionType, name or "NONE")

    # ---------------------------------------------------------------- padding
    def padded(self, x: int, shape: Sequence[int], k: Sequence[int], st: Sequence[int], pads: Sequence[int],
               out_hw: Sequence[int], name: str) -> tuple[int, int]:
        """(input tensor, Padding enum): SAME or VALID where one gives the IR's output size,
        else an explicit PAD (extra bottom/right rows for ceil-mode pools) and VALID."""
        s = self.s
        h, w = int(shape[2]), int(shape[3])
        same = (math.ceil(h / st[0]), math.ceil(w / st[1]))
        valid = ((h - k[0]) // st[0] + 1, (w - k[1]) // st[1] + 1)
        out = (int(out_hw[0]), int(out_hw[1]))
        if not any(pads) and valid == out:
            return x, s.Padding.VALID
        if out == same and (k[0] % 2 == 1 or not any(pads)):
            return x, s.Padding.SAME
        t, l_, b_, r = (list(pads) + [0, 0, 0, 0])[:4] if len(pads) >= 4 else (0, 0, 0, 0)
        b_ += max(0, (out[0] - 1) * st[0] + k[0] - (h + t + b_))
        r += max(0, (out[1] - 1) * st[1] + k[1] - (w + l_ + r))
        padded_shape = (shape[0], shape[1], h + t + b_, w + l_ + r)
        y = self.act(f"{name}.pad:0", padded_shape)
        self.op("PAD", [x, self.ints(f"{name}.paddings", [[0, 0], [t, b_], [l_, r], [0, 0]])], [y],
                "PadOptions")
        return y, s.Padding.VALID


def _follows(nodes: list[Node], j: int, last: Node, ops: set[str], uses: dict[str, int]) -> bool:
    """Is ``nodes[j]`` one of ``ops`` reading ``last``'s output, its only consumer?"""
    return (j < len(nodes) and nodes[j].op in ops and uses.get(last.outputs[0].name, 0) == 1
            and nodes[j].inputs[0].name == last.outputs[0].name)


def _plan(graph: Graph) -> list[tuple[Node, list[Node]]]:
    """Nodes grouped as the converter emits them: a Conv/Gemm with the BN and ReLU/ReLU6 it
    absorbs, an Add with its ReLU; Identity nodes dropped (their output aliases the input)."""
    uses = graph.consumer_counts()
    nodes = list(graph.nodes)
    out: list[tuple[Node, list[Node]]] = []
    i = 0
    while i < len(nodes):
        head = nodes[i]
        absorbed: list[Node] = []
        j = i + 1
        if head.op in ("Conv", "Gemm") and _follows(nodes, j, head, {"BatchNormalization"}, uses):
            absorbed.append(nodes[j])
            j += 1
        if head.op in ("Conv", "Gemm", "Add") and _follows(nodes, j, absorbed[-1] if absorbed else head,
                                                           {"Relu", "Clip"}, uses):
            clip = nodes[j]
            if clip.op == "Relu" or (float(clip.attrs.get("min", 0.0)), float(clip.attrs.get("max", 6.0))) == (0.0, 6.0):
                absorbed.append(clip)
                j += 1
        out.append((head, absorbed))
        i = j
    return out


def graph_to_tflite(graph: Graph, *, dtype: str = "float32", seed: int = 0,
                    bit_widths: Mapping[str, Sequence[int]] | None = None) -> bytes:
    """The ``.tflite`` bytes of an IR graph (batch-1 CNNs and MLPs of :mod:`farm.zoo` and the
    kernel plans). Raises ValueError naming the node for an op it cannot write."""
    if dtype not in TFLITE_DTYPES:
        raise InputError(f"graph {graph.name!r}: TFLite export writes {' or '.join(TFLITE_DTYPES)}, not {dtype!r}")
    w = _Writer(graph, dtype, seed)
    for t in graph.inputs:
        w.index[t.name] = w.act(t.name, t.shape)
    outputs = {t.name for t in graph.outputs}
    for head, absorbed in _plan(graph):
        last = (absorbed[-1] if absorbed else head).outputs[0]
        act = next((_FUSABLE_ACT[n.op] for n in absorbed if n.op in _FUSABLE_ACT), None)
        if head.op == "Identity" and last.name not in outputs:
            w.alias[last.name] = w.alias.get(head.inputs[0].name, head.inputs[0].name)
            continue
        y = w.act(last.name, last.shape, quant=(1 / 256, -128) if w.int8 and head.op in ("Sigmoid", "Softmax") else None)
        _write(w, head, y, act)
        w.index[last.name] = y
    if bit_widths:
        known = set(w.op_names) | {"*"}
        bad = [k for k in bit_widths if k not in known]
        if bad:
            raise InputError(f"graph {graph.name!r}: bit widths for unknown node {bad[0]!r} "
                             f"(TFLite node names: {', '.join(w.op_names[:4])}, …)")
    data = w.b.build([w.index[t.name] for t in graph.inputs], [w.src(t.name) for t in graph.outputs],
                     description=f"hwfarm {graph.name}")
    return _with_metadata(data, {BIT_WIDTHS_KEY: json.dumps({k: [int(v[0]), int(v[1])] for k, v in bit_widths.items()})}
                          ) if bit_widths else data


def _with_metadata(data: bytes, entries: Mapping[str, str]) -> bytes:
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s

    m = s.ModelT.InitFromPackedBuf(bytearray(data), 0)
    m.metadata = list(m.metadata or [])
    for key, value in entries.items():
        buf = s.BufferT()
        buf.data = np.frombuffer(value.encode(), np.uint8)
        m.buffers.append(buf)
        md = s.MetadataT()
        md.name, md.buffer = key, len(m.buffers) - 1
        m.metadata.append(md)
    fb = flatbuffers.Builder(1024)
    fb.Finish(m.Pack(fb), file_identifier=b"TFL3")
    return bytes(fb.Output())


def tflite_metadata(data: bytes) -> dict[str, str]:
    """The model's metadata entries whose buffers hold UTF-8 text."""
    from ai_edge_litert import schema_py_generated as s

    m = s.ModelT.InitFromPackedBuf(bytearray(data), 0)
    out = {}
    for md in m.metadata or []:
        buf = m.buffers[md.buffer] if 0 <= md.buffer < len(m.buffers or []) else None
        if buf is not None and buf.data is not None:
            try:
                out[md.name.decode() if isinstance(md.name, bytes) else str(md.name)] = bytes(buf.data).decode()
            except UnicodeDecodeError:
                continue
    return out


def _write(w: _Writer, n: Node, y: int, act: str | None) -> None:
    acts = [t for t in n.inputs if t.name not in n.weights]
    x = w.src(acts[0].name) if acts else -1
    name = n.name
    if n.op == "Conv":
        wt = n.inputs[1].shape  # [Cout, Cin/g, kh, kw]
        cin, group = acts[0].shape[1], int(n.attrs.get("group", 1))
        k, st = list(n.attrs.get("kernel_shape", wt[2:])), list(n.attrs.get("strides", [1, 1]))
        xin, pad = w.padded(x, acts[0].shape, k, st, list(n.attrs.get("pads", [0, 0, 0, 0])), n.outputs[0].shape[2:],
                            name)
        cout = wt[0]
        bias = w.const(f"{name}.bias", (cout,), bias=True)
        if group > 1 and group == cin and wt[1] == 1:
            filt = w.const(f"{name}.weight", (1, k[0], k[1], cout))
            w.op("DEPTHWISE_CONV_2D", [xin, filt, bias], [y], "DepthwiseConv2DOptions", padding=pad,
                 strideW=st[1], strideH=st[0], depthMultiplier=cout // cin, dilationWFactor=1, dilationHFactor=1,
                 fusedActivationFunction=w.act_fn(act))
        else:
            filt = w.const(f"{name}.weight", (cout, k[0], k[1], wt[1]))
            w.op("CONV_2D", [xin, filt, bias], [y], "Conv2DOptions", padding=pad, strideW=st[1], strideH=st[0],
                 dilationWFactor=1, dilationHFactor=1, fusedActivationFunction=w.act_fn(act))
    elif n.op == "Gemm":
        out_f, in_f = n.inputs[1].shape if n.attrs.get("transB") else n.inputs[1].shape[::-1]
        filt = w.const(f"{name}.weight", (out_f, in_f))
        bias = w.const(f"{name}.bias", (out_f,), bias=True)
        w.op("FULLY_CONNECTED", [x, filt, bias], [y], "FullyConnectedOptions", fusedActivationFunction=w.act_fn(act))
    elif n.op in ("MaxPool", "AveragePool"):
        k, st = list(n.attrs["kernel_shape"]), list(n.attrs.get("strides", [1, 1]))
        xin, pad = w.padded(x, acts[0].shape, k, st, list(n.attrs.get("pads", [0, 0, 0, 0])), n.outputs[0].shape[2:],
                            name)
        w.op("MAX_POOL_2D" if n.op == "MaxPool" else "AVERAGE_POOL_2D", [xin], [y], "Pool2DOptions", padding=pad,
             strideW=st[1], strideH=st[0], filterWidth=k[1], filterHeight=k[0],
             fusedActivationFunction=w.act_fn(None))
    elif n.op in ("GlobalAveragePool", "GlobalMaxPool"):
        w.op("MEAN" if n.op == "GlobalAveragePool" else "REDUCE_MAX", [x, w.ints(f"{name}.axes", [1, 2])], [y],
             "ReducerOptions", keepDims=True)
    elif n.op in ("Add", "Mul", "Sub"):
        if len(acts) >= 2:
            other = w.src(acts[1].name)
        else:  # x * constant (NB201's "none" multiplies by zero)
            c = next(t for t in n.inputs if t.name in n.weights)
            other = w.const(f"{name}.const", _tfl_shape(c.shape) if c.shape else (1,),
                            value=0.0 if n.attrs.get("zero_output") else None)
        opts = {"Add": "AddOptions", "Mul": "MulOptions", "Sub": "SubOptions"}[n.op]
        w.op(n.op.upper(), [x, other], [y], opts, fusedActivationFunction=w.act_fn(act))
    elif n.op in _ACT_OPS:
        if n.op == "Clip" and (float(n.attrs.get("min", 0.0)), float(n.attrs.get("max", 6.0))) != (0.0, 6.0):
            raise ValueError(f"graph {w.graph.name!r}: node {name!r}: only Clip(0, 6) (ReLU6) is written to TFLite")
        w.op(_ACT_OPS[n.op], [x], [y])
    elif n.op == "BatchNormalization":  # unfolded (after a pool, a concat): MUL + ADD, as the converter writes it
        ch = acts[0].shape[1]
        mid = w.act(f"{name}.mul:0", n.outputs[0].shape)
        w.op("MUL", [x, w.const(f"{name}.scale", (ch,))], [mid], "MulOptions", fusedActivationFunction=w.act_fn(None))
        w.op("ADD", [mid, w.const(f"{name}.shift", (ch,))], [y], "AddOptions", fusedActivationFunction=w.act_fn(None))
    elif n.op == "Concat":
        rank = len(n.outputs[0].shape)
        w.op("CONCATENATION", [w.src(t.name) for t in acts], [y], "ConcatenationOptions",
             axis=_tfl_axis(int(n.attrs.get("axis", 1)), rank), fusedActivationFunction=w.act_fn(None))
    elif n.op in ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"):
        shape = _tfl_shape(n.outputs[0].shape)
        w.op("RESHAPE", [x, w.ints(f"{name}.shape", shape)], [y], "ReshapeOptions", newShape=list(shape))
    elif n.op == "Transpose":
        perm = [int(p) for p in n.attrs["perm"]]
        lay = _layout(len(perm))
        tperm = [lay.index(perm[lay[j]]) for j in range(len(perm))]
        w.op("TRANSPOSE", [x, w.ints(f"{name}.perm", tperm)], [y], "TransposeOptions")
    elif n.op == "Softmax":
        w.op("SOFTMAX", [x], [y], "SoftmaxOptions", beta=1.0)
    else:
        raise ValueError(f"graph {w.graph.name!r}: node {name!r}: op {n.op} has no TFLite writer")
