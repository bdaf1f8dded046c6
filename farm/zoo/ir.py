"""Build graph IR directly in Python — no ONNX, no torch — for search spaces that need
hundreds of thousands of graphs. NCHW float32 by default; costs are counted exactly as the
ONNX importer counts them (:func:`farm.onnx_graph.node_macs`), so a graph built here and the
same network exported to ONNX and imported again agree."""

from __future__ import annotations

from collections.abc import Mapping

from ..graph import Graph, Node, TensorInfo
from ..onnx_graph import node_macs

__all__ = ["IRBuilder"]


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
             weights: Mapping[str, tuple[int, ...]] | None = None, **attrs: object) -> str:
        ins = [self.tensors[t] for t in inputs]
        wts = [TensorInfo(f"{name}.{w}", tuple(s), self.dtype) for w, s in (weights or {}).items()]
        out = TensorInfo(f"{name}:0", tuple(out_shape), self.dtype)
        all_in = ins + wts
        self.nodes.append(Node(
            name=name, op=op, inputs=tuple(all_in), outputs=(out,), attrs=dict(attrs),
            weights=tuple(w.name for w in wts), macs=node_macs(op, all_in, [out], dict(attrs)),
            params=sum(w.numel for w in wts), bytes_moved=sum(t.nbytes for t in all_in) + out.nbytes,
        ))
        self.tensors[out.name] = out
        return out.name

    def conv(self, name: str, x: str, cout: int, k: int, stride: int = 1, *, bias: bool = False, group: int = 1) -> str:
        n, cin, h, w = self.shape(x)
        pad = k // 2
        ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
        weights = {"weight": (cout, cin // group, k, k)} | ({"bias": (cout,)} if bias else {})
        return self.node(name, "Conv", [x], (n, cout, ho, wo), weights, kernel_shape=[k, k],
                         strides=[stride, stride], pads=[pad] * 4, group=group)

    def bn(self, name: str, x: str) -> str:
        c = self.shape(x)[1]
        return self.node(name, "BatchNormalization", [x], self.shape(x),
                         {"scale": (c,), "bias": (c,), "mean": (c,), "var": (c,)}, epsilon=1e-5)

    def relu(self, name: str, x: str) -> str:
        return self.node(name, "Relu", [x], self.shape(x))

    def add(self, name: str, a: str, b: str) -> str:
        return self.node(name, "Add", [a, b], self.shape(a))

    def mul_zero(self, name: str, x: str) -> str:
        """``x * 0``: how NB201's ``none`` op computes (a real elementwise multiply)."""
        return self.node(name, "Mul", [x], self.shape(x), {"zero": ()}, zero_output=1)

    def avgpool(self, name: str, x: str, k: int, stride: int, pad: int, *, count_include_pad: bool = False) -> str:
        n, c, h, w = self.shape(x)
        ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
        return self.node(name, "AveragePool", [x], (n, c, ho, wo), kernel_shape=[k, k], strides=[stride, stride],
                         pads=[pad] * 4, count_include_pad=int(count_include_pad))

    def global_avgpool(self, name: str, x: str) -> str:
        n, c = self.shape(x)[:2]
        return self.node(name, "GlobalAveragePool", [x], (n, c, 1, 1))

    def flatten(self, name: str, x: str) -> str:
        s = self.shape(x)
        size = 1
        for d in s[1:]:
            size *= d
        return self.node(name, "Flatten", [x], (s[0], size), axis=1)

    def gemm(self, name: str, x: str, out: int) -> str:
        n, k = self.shape(x)
        return self.node(name, "Gemm", [x], (n, out), {"weight": (out, k), "bias": (out,)}, transB=1)

    def build(self, name: str, output: str) -> Graph:
        return Graph(name=name, nodes=tuple(self.nodes), inputs=self.inputs, outputs=(self.tensors[output],),
                     source_format="ir")
