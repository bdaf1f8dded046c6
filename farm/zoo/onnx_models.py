"""Small, real ONNX models built with ``onnx.helper`` only, with seeded random weights.

:class:`OnnxBuilder` keeps the bookkeeping (names, shapes, initializers) out of the model
definitions, so each model reads like its paper's table. Batch norms are left unfused, as
exporters write them, so that fusion is something the farm measures rather than assumes.

:data:`DEMO_MODELS` holds the demo's models (each runs in a few ms on one CPU thread).
The other builders write the quirks of files found in the wild, for the importer's tests:
:func:`legacy_ir3_model`, :func:`constant_weights_model`, :func:`dynamic_batch_model`,
:func:`qlinear_model`. Every builder is a pure function of its arguments.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from farm.errors import InputError

if TYPE_CHECKING:
    import onnx

__all__ = [
    "OnnxBuilder", "DEMO_MODELS", "export_demo_model", "mlp", "resnet8_cifar", "mobilenet_v1",
    "legacy_ir3_model", "constant_weights_model", "dynamic_batch_model", "qlinear_model",
]


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

    def relu(self, x: str) -> str:
        return self.act(x, "relu")

    def add(self, a: str, b: str) -> str:
        return self._node("Add", [a, b], self.shapes[a])

    def _pool(self, op: str, x: str, k: int, stride: int | None, pad: int) -> str:
        n, c, h, w = self.shapes[x]
        s = stride or k
        ho, wo = (h + 2 * pad - k) // s + 1, (w + 2 * pad - k) // s + 1
        return self._node(op, [x], (n, c, ho, wo), kernel_shape=[k, k], strides=[s, s], pads=[pad] * 4)

    def maxpool(self, x: str, k: int = 2, stride: int | None = None, pad: int = 0) -> str:
        return self._pool("MaxPool", x, k, stride, pad)

    def avgpool(self, x: str, k: int = 2, stride: int | None = None, pad: int = 0) -> str:
        return self._pool("AveragePool", x, k, stride, pad)

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

    def build(self, name: str, output: str, *, opset: int = 17) -> onnx.ModelProto:
        """The model computing ``output`` from ``input``, checked by ``onnx.checker``."""
        from onnx import TensorProto, checker

        outputs = [self._h.make_tensor_value_info(output, TensorProto.FLOAT, list(self.shapes[output]))]
        graph = self._h.make_graph(self.nodes, name, self.inputs, outputs, initializer=self.inits)
        model = self._h.make_model(graph, opset_imports=[self._h.make_opsetid("", opset)],
                                   producer_name="hwfarm.zoo")
        checker.check_model(model)
        return model


def mlp(seed: int = 0) -> onnx.ModelProto:
    """784 → 256 → 10, the classic MNIST MLP."""
    b = OnnxBuilder((1, 784), seed=seed)
    return b.build("mlp", b.softmax(b.gemm(b.gemm("input", 256, act="relu"), 10)))


def resnet8_cifar(seed: int = 0) -> onnx.ModelProto:
    """MLPerf Tiny image classification ResNet-8: 3×32×32, stages of 16/32/64 channels."""
    b = OnnxBuilder((1, 3, 32, 32), seed=seed)
    x = b.conv("input", 16, 3)
    for cout, stride in ((16, 1), (32, 2), (64, 2)):
        y = b.conv(x, cout, 3, stride)
        y = b.conv(y, cout, 3, 1, act=None)
        shortcut = x if stride == 1 and b.shapes[x][1] == cout else b.conv(x, cout, 1, stride, act=None)
        x = b.act(b.add(y, shortcut))
    return b.build("resnet8-cifar", b.gemm(b.flatten(b.global_avgpool(x)), 10))


def mobilenet_v1(width: float = 0.25, resolution: int = 128, classes: int = 1000, seed: int = 0) -> onnx.ModelProto:
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


DEMO_MODELS: dict[str, Callable[[], onnx.ModelProto]] = {
    "mlp": mlp,
    "resnet8-cifar": resnet8_cifar,
    "mobilenet-v1-0.25-128": lambda: mobilenet_v1(0.25, 128),
}


def export_demo_model(name: str, path: str | Path) -> Path:
    """Write the demo model ``name`` (a key of :data:`DEMO_MODELS`) to ``path``."""
    import onnx

    if name not in DEMO_MODELS:
        raise InputError(f"unknown demo model {name!r}; known: {', '.join(DEMO_MODELS)}")
    path = Path(path)
    onnx.save(DEMO_MODELS[name](), path)
    return path


# ------------------------------------------------------------------ quirky files, for tests


def _value_info(name: str, elem_type: int, shape: list[Any]) -> Any:
    from onnx import helper

    return helper.make_tensor_value_info(name, elem_type, shape)


def _const(name: str, value: Any, dtype: Any = np.int64) -> Any:
    """A ``Constant`` node producing ``name``."""
    from onnx import helper, numpy_helper

    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value, dtype), name))


def legacy_ir3_model(seed: int = 0) -> onnx.ModelProto:
    """What 2018-era exporters wrote: IR version 3, opset 8, every initializer also listed as
    a graph input, unnamed nodes, BatchNormalization with ``spatial``, Reshape to ``[1, -1]``.

    1×3×16×16 → Conv 3→8 k3 (bias) → BN → Relu → MaxPool 2 → Reshape → Gemm 512→10 → Softmax.
    """
    from onnx import TensorProto, checker, helper, numpy_helper

    rng = np.random.default_rng(seed)
    arrays = {
        "conv.w": rng.standard_normal((8, 3, 3, 3)) * 0.3, "conv.b": np.zeros(8),
        "bn.scale": np.ones(8), "bn.bias": np.zeros(8), "bn.mean": np.zeros(8), "bn.var": np.ones(8),
        "fc.w": rng.standard_normal((10, 512)) * 0.05, "fc.b": np.zeros(10),
    }
    inits = [numpy_helper.from_array(a.astype(np.float32), k) for k, a in arrays.items()]
    inits.append(numpy_helper.from_array(np.array([1, -1], np.int64), "flat_shape"))
    nodes = [
        helper.make_node("Conv", ["input", "conv.w", "conv.b"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "bn.scale", "bn.bias", "bn.mean", "bn.var"], ["bn"],
                         epsilon=1e-5, momentum=0.9, spatial=1),
        helper.make_node("Relu", ["bn"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Reshape", ["p", "flat_shape"], ["f"]),
        helper.make_node("Gemm", ["f", "fc.w", "fc.b"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["output"], axis=1),
    ]
    inputs = [_value_info("input", TensorProto.FLOAT, [1, 3, 16, 16])]
    inputs += [_value_info(t.name, t.data_type, list(t.dims)) for t in inits]
    graph = helper.make_graph(nodes, "legacy-ir3", inputs, [_value_info("output", TensorProto.FLOAT, [1, 10])],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 8)], producer_name="hwfarm.zoo")
    model.ir_version = 3
    checker.check_model(model)
    return model


def constant_weights_model() -> onnx.ModelProto:
    """Weights computed in the graph, as some converters write them, and a traced flatten.

    1×1×8×8 → Conv 1→8 k3 pad 1 whose weight is ``Reshape(ConstantOfShape([72]), Constant
    [8,1,3,3])`` and bias a ``Constant`` → Relu → Mul by a ``Constant`` scalar →
    GlobalAveragePool → ``Reshape(x, Concat(Unsqueeze(Gather(Shape(x), 0)), [-1]))`` → 1×8.
    No initializers at all.
    """
    from onnx import TensorProto, checker, helper, numpy_helper

    nodes = [
        _const("w_numel", [72]),
        helper.make_node("ConstantOfShape", ["w_numel"], ["w_flat"],
                         value=numpy_helper.from_array(np.array([0.05], np.float32))),
        _const("w_shape", [8, 1, 3, 3]),
        helper.make_node("Reshape", ["w_flat", "w_shape"], ["conv.w"]),
        _const("conv.b", np.linspace(-0.1, 0.1, 8), np.float32),
        helper.make_node("Conv", ["input", "conv.w", "conv.b"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                         name="conv"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        _const("scale", 2.0, np.float32),
        helper.make_node("Mul", ["r", "scale"], ["m"], name="scale_mul"),
        helper.make_node("GlobalAveragePool", ["m"], ["p"], name="gap"),
        helper.make_node("Shape", ["p"], ["p_shape"]),
        _const("zero", 0),
        helper.make_node("Gather", ["p_shape", "zero"], ["batch"], axis=0),
        _const("axes0", [0]),
        helper.make_node("Unsqueeze", ["batch", "axes0"], ["batch1"]),
        _const("minus1", [-1]),
        helper.make_node("Concat", ["batch1", "minus1"], ["flat_shape"], axis=0),
        helper.make_node("Reshape", ["p", "flat_shape"], ["output"], name="flatten"),
    ]
    graph = helper.make_graph(nodes, "constant-weights", [_value_info("input", TensorProto.FLOAT, [1, 1, 8, 8])],
                              [_value_info("output", TensorProto.FLOAT, [1, 8])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="hwfarm.zoo")
    checker.check_model(model)
    return model


def dynamic_batch_model(seed: int = 0) -> onnx.ModelProto:
    """A small CNN whose input is ``['N', 3, 16, 16]``: runs at any batch size in
    onnxruntime, but has no static shape, so the farm's importer refuses it."""
    b = OnnxBuilder((1, 3, 16, 16), seed=seed)
    model = b.build("dynamic-batch", b.gemm(b.flatten(b.global_avgpool(b.conv("input", 8, 3))), 10))
    for vi in (*model.graph.input, *model.graph.output):
        vi.type.tensor_type.shape.dim[0].dim_param = "N"  # replaces dim_value (a oneof)
    return model


def qlinear_model(seed: int = 0) -> onnx.ModelProto:
    """An int8 model in the QOperator format (onnxruntime's quantizer): per-tensor scales.

    1×3×16×16 float → QuantizeLinear → QLinearConv 3→8 k3 pad 1 (int8 weights, int32 bias)
    → Reshape 1×2048 → QLinearMatMul 2048→10 (int8 weights) → DequantizeLinear → 1×10 float.
    """
    from onnx import TensorProto, checker, helper, numpy_helper

    rng = np.random.default_rng(seed)

    def init(name: str, value: Any, dtype: Any) -> Any:
        return numpy_helper.from_array(np.asarray(value, dtype), name)

    inits = [
        init("x.scale", 0.02, np.float32), init("x.zp", 0, np.int8),
        init("conv.w", rng.integers(-127, 128, (8, 3, 3, 3)), np.int8),
        init("conv.w.scale", 0.01, np.float32), init("conv.w.zp", 0, np.int8),
        init("conv.b", rng.integers(-500, 500, 8), np.int32),
        init("c.scale", 0.05, np.float32), init("c.zp", 0, np.int8),
        init("flat_shape", [1, 2048], np.int64),
        init("fc.w", rng.integers(-127, 128, (2048, 10)), np.int8),
        init("fc.w.scale", 0.002, np.float32), init("fc.w.zp", 0, np.int8),
        init("y.scale", 0.1, np.float32), init("y.zp", 0, np.int8),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["input", "x.scale", "x.zp"], ["xq"], name="quant"),
        helper.make_node("QLinearConv", ["xq", "x.scale", "x.zp", "conv.w", "conv.w.scale", "conv.w.zp",
                                         "c.scale", "c.zp", "conv.b"], ["cq"],
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1], name="qconv"),
        helper.make_node("Reshape", ["cq", "flat_shape"], ["fq"], name="flatten"),
        helper.make_node("QLinearMatMul", ["fq", "c.scale", "c.zp", "fc.w", "fc.w.scale", "fc.w.zp",
                                           "y.scale", "y.zp"], ["yq"], name="qfc"),
        helper.make_node("DequantizeLinear", ["yq", "y.scale", "y.zp"], ["output"], name="dequant"),
    ]
    graph = helper.make_graph(nodes, "qlinear-int8", [_value_info("input", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [_value_info("output", TensorProto.FLOAT, [1, 10])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="hwfarm.zoo")
    checker.check_model(model)
    return model
