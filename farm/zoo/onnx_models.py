"""Small, real ONNX models built with ``onnx.helper`` only, with seeded random weights.

:class:`OnnxBuilder` keeps the bookkeeping (names, shapes, initializers) out of the model
definitions, so each model reads like its paper's table. Batch norms are left unfused, as
exporters write them, so that fusion is something the farm measures rather than assumes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

__all__ = ["OnnxBuilder", "DEMO_MODELS", "export_demo_model", "mlp", "resnet8_cifar", "mobilenet_v1"]


class OnnxBuilder:
    """Append-only NCHW float32 graph builder; every method returns the output tensor name."""

    def __init__(self, input_shape: tuple[int, ...], *, seed: int = 0) -> None:
        from onnx import TensorProto, helper

        self._h = helper
        self._rng = np.random.default_rng(seed)
        self.nodes: list = []
        self.inits: list = []
        self.shapes: dict[str, tuple[int, ...]] = {"input": tuple(input_shape)}
        self.inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(input_shape))]
        self._n = 0

    def _name(self, op: str) -> str:
        self._n += 1
        return f"{op.lower()}_{self._n}"

    def _weight(self, name: str, shape: tuple[int, ...], scale: float | None = None) -> str:
        from onnx import numpy_helper

        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
        std = scale if scale is not None else np.sqrt(2.0 / max(fan_in, 1))
        self.inits.append(numpy_helper.from_array((self._rng.standard_normal(shape) * std).astype(np.float32), name))
        return name

    def _node(self, op: str, inputs: list[str], out_shape: tuple[int, ...], **attrs) -> str:
        name = self._name(op)
        out = f"{name}_out"
        self.nodes.append(self._h.make_node(op, inputs, [out], name=name, **attrs))
        self.shapes[out] = out_shape
        return out

    def conv(self, x: str, cout: int, k: int = 3, stride: int = 1, group: int = 1, *,
             bn: bool = True, act: str | None = "relu") -> str:
        n, cin, h, w = self.shapes[x]
        pad = k // 2
        ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
        base = self._name("conv")
        wname = self._weight(f"{base}.weight", (cout, cin // group, k, k))
        inputs = [x, wname] if bn else [x, wname, self._weight(f"{base}.bias", (cout,), 0.01)]
        y = self._node("Conv", inputs, (n, cout, ho, wo), kernel_shape=[k, k], strides=[stride, stride],
                       pads=[pad] * 4, group=group)
        if bn:
            y = self.batchnorm(y)
        return self.act(y, act) if act else y

    def dwconv(self, x: str, k: int = 3, stride: int = 1, **kw) -> str:
        return self.conv(x, self.shapes[x][1], k, stride, group=self.shapes[x][1], **kw)

    def batchnorm(self, x: str) -> str:
        from onnx import numpy_helper

        c = self.shapes[x][1]
        base = self._name("bn")
        params = {"scale": np.ones(c), "bias": np.zeros(c), "mean": self._rng.standard_normal(c) * 0.1,
                  "var": np.abs(self._rng.standard_normal(c)) + 0.5}
        names = []
        for key in ("scale", "bias", "mean", "var"):
            self.inits.append(numpy_helper.from_array(params[key].astype(np.float32), f"{base}.{key}"))
            names.append(f"{base}.{key}")
        return self._node("BatchNormalization", [x, *names], self.shapes[x], epsilon=1e-5)

    def act(self, x: str, kind: str = "relu") -> str:
        op = {"relu": "Relu", "sigmoid": "Sigmoid", "hardswish": "HardSwish"}[kind]
        return self._node(op, [x], self.shapes[x])

    def add(self, a: str, b: str) -> str:
        return self._node("Add", [a, b], self.shapes[a])

    def global_avgpool(self, x: str) -> str:
        n, c = self.shapes[x][:2]
        return self._node("GlobalAveragePool", [x], (n, c, 1, 1))

    def flatten(self, x: str) -> str:
        n = self.shapes[x][0]
        return self._node("Flatten", [x], (n, int(np.prod(self.shapes[x][1:]))), axis=1)

    def gemm(self, x: str, out: int, act: str | None = None) -> str:
        n, k = self.shapes[x]
        base = self._name("fc")
        y = self._node("Gemm", [x, self._weight(f"{base}.weight", (out, k)), self._weight(f"{base}.bias", (out,), 0.01)],
                       (n, out), transB=1)
        return self.act(y, act) if act else y

    def softmax(self, x: str) -> str:
        return self._node("Softmax", [x], self.shapes[x], axis=-1)

    def build(self, name: str, output: str, *, opset: int = 17):
        from onnx import TensorProto, checker

        outputs = [self._h.make_tensor_value_info(output, TensorProto.FLOAT, list(self.shapes[output]))]
        graph = self._h.make_graph(self.nodes, name, self.inputs, outputs, initializer=self.inits)
        model = self._h.make_model(graph, opset_imports=[self._h.make_opsetid("", opset)],
                                   producer_name="hwfarm.zoo")
        checker.check_model(model)
        return model


def mlp(seed: int = 0):
    """784 → 256 → 10, the classic MNIST MLP."""
    b = OnnxBuilder((1, 784), seed=seed)
    return b.build("mlp", b.softmax(b.gemm(b.gemm("input", 256, act="relu"), 10)))


def resnet8_cifar(seed: int = 0):
    """MLPerf Tiny image classification ResNet-8: 3×32×32, stages of 16/32/64 channels."""
    b = OnnxBuilder((1, 3, 32, 32), seed=seed)
    x = b.conv("input", 16, 3)
    for cout, stride in ((16, 1), (32, 2), (64, 2)):
        y = b.conv(x, cout, 3, stride)
        y = b.conv(y, cout, 3, 1, act=None)
        shortcut = x if stride == 1 and b.shapes[x][1] == cout else b.conv(x, cout, 1, stride, act=None)
        x = b.act(b.add(y, shortcut))
    return b.build("resnet8-cifar", b.gemm(b.flatten(b.global_avgpool(x)), 10))


def mobilenet_v1(width: float = 0.25, resolution: int = 128, classes: int = 1000, seed: int = 0):
    """MobileNetV1 (Howard et al. 2017, Table 1) at a width multiplier and input resolution."""
    def ch(c: int) -> int:
        return max(8, int(c * width))

    b = OnnxBuilder((1, 3, resolution, resolution), seed=seed)
    x = b.conv("input", ch(32), 3, 2)
    plan = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
    for cout, stride in plan:
        x = b.dwconv(x, 3, stride)
        x = b.conv(x, ch(cout), 1)
    name = f"mobilenet-v1-{width:g}-{resolution}"
    return b.build(name, b.gemm(b.flatten(b.global_avgpool(x)), classes))


DEMO_MODELS: dict[str, Callable[[], Any]] = {
    "mlp": mlp,
    "resnet8-cifar": resnet8_cifar,
    "mobilenet-v1-0.25-128": lambda: mobilenet_v1(0.25, 128),
}


def export_demo_model(name: str, path: str | Path) -> Path:
    import onnx

    model = DEMO_MODELS[name]()
    path = Path(path)
    onnx.save(model, path)
    return path
