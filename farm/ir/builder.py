"""Build graph IR directly in Python — no ONNX, no torch — for search spaces that need
hundreds of thousands of graphs. NCHW float32 by default; costs are counted exactly as the
ONNX importer counts them (:func:`farm.ir.cost.node_macs`), so a graph built here and the
same network exported to ONNX and imported again agree.

``IRBuilder(dtype="int8")`` builds the same network with int8 activations and weights (for
int8-only accelerators in the simulator); such a graph is not exported to ONNX. Constant
integer inputs that exporters write (a Reshape's target shape) stay int64 either way.

Padding: an int pads symmetrically (``k // 2`` by default, PyTorch style); ``"same"`` is
TensorFlow's SAME (output ``ceil(in / stride)``, the odd pixel padded at the end), which
matters for even kernels such as DS-CNN's 10×4; a 4-tuple is ``(top, left, bottom, right)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from farm.ir.cost import node_macs
from farm.ir.graph import Graph, Node, TensorInfo

__all__ = ["IRBuilder", "Pad"]

Pad = int | str | tuple[int, int, int, int]


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(v, int):
        return v, v
    a, b = v
    return int(a), int(b)


def _pads(pad: Pad | None, k: tuple[int, int], s: tuple[int, int], hw: tuple[int, int]) -> list[int]:
    """ONNX pads ``[top, left, bottom, right]``."""
    if pad is None:
        return [k[0] // 2, k[1] // 2, k[0] // 2, k[1] // 2]
    if isinstance(pad, int):
        return [pad] * 4
    if pad == "same":
        out = []
        for i in range(2):
            total = max((math.ceil(hw[i] / s[i]) - 1) * s[i] + k[i] - hw[i], 0)
            out.append((total // 2, total - total // 2))
        return [out[0][0], out[1][0], out[0][1], out[1][1]]
    if isinstance(pad, tuple) and len(pad) == 4:
        return [int(p) for p in pad]
    raise ValueError(f"padding {pad!r}: expected an int, 'same' or (top, left, bottom, right)")


def _out_hw(hw: tuple[int, int], k: tuple[int, int], s: tuple[int, int], pads: list[int],
            ceil_mode: bool = False) -> tuple[int, int]:
    out = []
    for i in range(2):
        span = hw[i] + pads[i] + pads[i + 2] - k[i]
        o = (-(-span // s[i]) if ceil_mode else span // s[i]) + 1
        if ceil_mode and (o - 1) * s[i] >= hw[i] + pads[i]:  # ONNX/PyTorch: last window must start inside
            o -= 1
        out.append(o)
    if min(out) < 1:
        raise ValueError(f"a {k[0]}×{k[1]} window with stride {s} does not fit a {hw[0]}×{hw[1]} input")
    return out[0], out[1]


class IRBuilder:
    """Append-only; every method returns the output tensor's name."""

    def __init__(self, input_shape: tuple[int, ...], *, dtype: str = "float32", input_name: str = "input") -> None:
        self.dtype = dtype
        self.tensors: dict[str, TensorInfo] = {input_name: TensorInfo(input_name, tuple(input_shape), dtype)}
        self.inputs = (self.tensors[input_name],)
        self.nodes: list[Node] = []

    def shape(self, t: str) -> tuple[int, ...]:
        return self.tensors[t].shape

    def node(self, name: str, op: str, inputs: list[str], out_shape: tuple[int, ...],
             weights: Mapping[str, tuple[int, ...]] | None = None, *,
             weight_dtypes: Mapping[str, str] | None = None, weight_values: Mapping[str, float] | None = None,
             **attrs: object) -> str:
        """``weight_values``: the values of weights that are single numbers (``Node.consts``)."""
        ins = [self.tensors[t] for t in inputs]
        wd = weight_dtypes or {}
        wts = [TensorInfo(f"{name}.{w}", tuple(s), wd.get(w, self.dtype)) for w, s in (weights or {}).items()]
        out = TensorInfo(f"{name}:0", tuple(out_shape), self.dtype)
        all_in = ins + wts
        self.nodes.append(Node(
            name=name, op=op, inputs=tuple(all_in), outputs=(out,), attrs=dict(attrs),
            weights=tuple(w.name for w in wts), macs=node_macs(op, all_in, [out], dict(attrs)),
            params=sum(w.numel for w in wts), bytes_moved=sum(t.nbytes for t in all_in) + out.nbytes,
            consts=tuple((f"{name}.{w}", float(v)) for w, v in (weight_values or {}).items()),
        ))
        self.tensors[out.name] = out
        return out.name

    # -- convolutions ---------------------------------------------------------------------

    def conv(self, name: str, x: str, cout: int, k: int | tuple[int, int], stride: int | tuple[int, int] = 1, *,
             bias: bool = False, group: int = 1, pad: Pad | None = None) -> str:
        """Conv2d; ``group=cin`` (see :meth:`dwconv`) is a depthwise conv."""
        n, cin, h, w = self.shape(x)
        if cin % group or cout % group:
            raise ValueError(f"{name}: {cin}→{cout} channels are not divisible by group={group}")
        kk, ss = _pair(k), _pair(stride)
        pads = _pads(pad, kk, ss, (h, w))
        ho, wo = _out_hw((h, w), kk, ss, pads)
        weights = {"weight": (cout, cin // group, *kk)} | ({"bias": (cout,)} if bias else {})
        return self.node(name, "Conv", [x], (n, cout, ho, wo), weights, kernel_shape=list(kk),
                         strides=list(ss), pads=pads, group=group)

    def dwconv(self, name: str, x: str, k: int | tuple[int, int], stride: int | tuple[int, int] = 1, *,
               bias: bool = False, pad: Pad | None = None) -> str:
        c = self.shape(x)[1]
        return self.conv(name, x, c, k, stride, bias=bias, group=c, pad=pad)

    def bn(self, name: str, x: str) -> str:
        c = self.shape(x)[1]
        return self.node(name, "BatchNormalization", [x], self.shape(x),
                         {"scale": (c,), "bias": (c,), "mean": (c,), "var": (c,)}, epsilon=1e-5)

    # -- activations and elementwise ------------------------------------------------------

    def relu(self, name: str, x: str) -> str:
        return self.node(name, "Relu", [x], self.shape(x))

    def relu6(self, name: str, x: str) -> str:
        """``Clip(x, 0, 6)`` with min and max as constant inputs, as opset ≥ 11 exporters write
        it (so each counts 2 params, like the importer counts an exported ReLU6)."""
        return self.clip(name, x, 0.0, 6.0)

    def clip(self, name: str, x: str, lo: float, hi: float) -> str:
        return self.node(name, "Clip", [x], self.shape(x), {"min": (), "max": ()}, min=float(lo), max=float(hi))

    def act(self, name: str, op: str, x: str) -> str:
        """A parameter-free activation by ONNX op name: Relu, Sigmoid, HardSwish, HardSigmoid, Tanh."""
        if op not in ("Relu", "Sigmoid", "HardSwish", "HardSigmoid", "Tanh"):
            raise ValueError(f"{name}: unknown activation {op!r}")
        return self.node(name, op, [x], self.shape(x))

    def add(self, name: str, a: str, b: str) -> str:
        return self.node(name, "Add", [a, b], self.shape(a))

    def mul(self, name: str, a: str, b: str) -> str:
        """Elementwise product with broadcasting of ``b`` (e.g. squeeze-excite's N×C×1×1 gate)."""
        return self.node(name, "Mul", [a, b], self.shape(a))

    def mul_zero(self, name: str, x: str) -> str:
        """``x * 0``: how NB201's ``none`` op computes (a real elementwise multiply)."""
        return self.node(name, "Mul", [x], self.shape(x), {"zero": ()}, weight_values={"zero": 0.0}, zero_output=1)

    def identity(self, name: str, x: str) -> str:
        return self.node(name, "Identity", [x], self.shape(x))

    # -- pooling --------------------------------------------------------------------------

    def avgpool(self, name: str, x: str, k: int | tuple[int, int], stride: int | tuple[int, int], pad: Pad = 0, *,
                count_include_pad: bool = False, ceil_mode: bool = False) -> str:
        n, c, h, w = self.shape(x)
        kk, ss = _pair(k), _pair(stride)
        pads = _pads(pad, kk, ss, (h, w))
        ho, wo = _out_hw((h, w), kk, ss, pads, ceil_mode)
        return self.node(name, "AveragePool", [x], (n, c, ho, wo), kernel_shape=list(kk), strides=list(ss),
                         pads=pads, count_include_pad=int(count_include_pad), ceil_mode=int(ceil_mode))

    def maxpool(self, name: str, x: str, k: int | tuple[int, int], stride: int | tuple[int, int], pad: Pad = 0, *,
                ceil_mode: bool = False) -> str:
        n, c, h, w = self.shape(x)
        kk, ss = _pair(k), _pair(stride)
        pads = _pads(pad, kk, ss, (h, w))
        ho, wo = _out_hw((h, w), kk, ss, pads, ceil_mode)
        return self.node(name, "MaxPool", [x], (n, c, ho, wo), kernel_shape=list(kk), strides=list(ss), pads=pads,
                         ceil_mode=int(ceil_mode))

    def global_avgpool(self, name: str, x: str) -> str:
        n, c = self.shape(x)[:2]
        return self.node(name, "GlobalAveragePool", [x], (n, c, 1, 1))

    # -- data movement --------------------------------------------------------------------

    def concat(self, name: str, xs: Sequence[str], axis: int = 1) -> str:
        shapes = [self.shape(t) for t in xs]
        base = list(shapes[0])
        for s in shapes[1:]:
            if len(s) != len(base) or any(a != b for i, (a, b) in enumerate(zip(s, base, strict=True)) if i != axis):
                raise ValueError(f"{name}: cannot concatenate shapes {shapes} on axis {axis}")
        base[axis] = sum(s[axis] for s in shapes)
        return self.node(name, "Concat", list(xs), tuple(base), axis=axis)

    def reshape(self, name: str, x: str, shape: tuple[int, ...]) -> str:
        """Reshape to a static shape; the target shape is an int64 constant input (as exporters
        write it), so it counts ``len(shape)`` params like the importer counts it."""
        if math.prod(shape) != math.prod(self.shape(x)):
            raise ValueError(f"{name}: cannot reshape {self.shape(x)} to {shape}")
        return self.node(name, "Reshape", [x], tuple(shape), {"shape": (len(shape),)},
                         weight_dtypes={"shape": "int64"})

    def transpose(self, name: str, x: str, perm: Sequence[int]) -> str:
        s = self.shape(x)
        return self.node(name, "Transpose", [x], tuple(s[p] for p in perm), perm=list(perm))

    def channel_shuffle(self, name: str, x: str, groups: int) -> str:
        """ShuffleNet's shuffle as exporters write it: Reshape N×g×C/g×H×W → Transpose
        (0,2,1,3,4) → Reshape back to N×C×H×W."""
        n, c, h, w = self.shape(x)
        if c % groups:
            raise ValueError(f"{name}: {c} channels are not divisible by {groups} groups")
        y = self.reshape(f"{name}.split", x, (n, groups, c // groups, h, w))
        y = self.transpose(f"{name}.transpose", y, (0, 2, 1, 3, 4))
        return self.reshape(f"{name}.merge", y, (n, c, h, w))

    def flatten(self, name: str, x: str) -> str:
        s = self.shape(x)
        return self.node(name, "Flatten", [x], (s[0], math.prod(s[1:])), axis=1)

    def gemm(self, name: str, x: str, out: int, *, bias: bool = True) -> str:
        n, k = self.shape(x)
        return self.node(name, "Gemm", [x], (n, out), {"weight": (out, k)} | ({"bias": (out,)} if bias else {}),
                         transB=1)

    def build(self, name: str, output: str) -> Graph:
        return Graph(name=name, nodes=tuple(self.nodes), inputs=self.inputs, outputs=(self.tensors[output],),
                     source_format="ir")
