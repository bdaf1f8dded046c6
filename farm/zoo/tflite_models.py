"""Small, valid ``.tflite`` files built without TensorFlow, from LiteRT's flatbuffer schema.

Used by the tests and the demo of the LiteRT runner. Needs ``ai-edge-litert`` (the
``litert`` extra), which ships the schema's Python bindings.
"""

from __future__ import annotations

import numpy as np

__all__ = ["TfliteBuilder", "fc_model", "conv_model", "fc_model_int8"]


def _schema():
    from ai_edge_litert import schema_py_generated as s

    return s


class TfliteBuilder:
    """One subgraph; tensors and operators appended in order; weights become buffers."""

    def __init__(self) -> None:
        s = _schema()
        self.s = s
        self.buffers = [s.BufferT()]  # buffer 0: the empty sentinel every tensor without data points at
        self.tensors: list = []
        self.ops: list = []
        self.codes: list[int] = []

    def tensor(self, name: str, shape: tuple[int, ...], dtype: int | None = None, data: np.ndarray | None = None,
               quant: tuple[float, int] | None = None) -> int:
        s = self.s
        t = s.TensorT()
        t.name, t.shape = name, list(shape)
        t.type = s.TensorType.FLOAT32 if dtype is None else dtype
        if data is not None:
            buf = s.BufferT()
            buf.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), np.uint8).tolist()
            self.buffers.append(buf)
            t.buffer = len(self.buffers) - 1
        if quant is not None:
            q = s.QuantizationParametersT()
            q.scale, q.zeroPoint = [float(quant[0])], [int(quant[1])]
            t.quantization = q
        self.tensors.append(t)
        return len(self.tensors) - 1

    def op(self, builtin: int, inputs: list[int], outputs: list[int], options_type: int = 0, options=None) -> None:
        if builtin not in self.codes:
            self.codes.append(builtin)
        o = self.s.OperatorT()
        o.opcodeIndex = self.codes.index(builtin)
        o.inputs, o.outputs = inputs, outputs
        o.builtinOptionsType, o.builtinOptions = options_type, options
        self.ops.append(o)

    def build(self, inputs: list[int], outputs: list[int], description: str = "hwfarm.zoo") -> bytes:
        import flatbuffers

        s = self.s
        sg = s.SubGraphT()
        sg.tensors, sg.operators, sg.inputs, sg.outputs, sg.name = self.tensors, self.ops, inputs, outputs, "main"
        codes = []
        for b in self.codes:
            c = s.OperatorCodeT()
            c.builtinCode, c.deprecatedBuiltinCode, c.version = b, min(b, 127), 1
            codes.append(c)
        m = s.ModelT()
        m.version, m.operatorCodes, m.subgraphs, m.buffers, m.description = 3, codes, [sg], self.buffers, description
        fb = flatbuffers.Builder(1024)
        fb.Finish(m.Pack(fb), file_identifier=b"TFL3")
        return bytes(fb.Output())


def fc_model(in_features: int = 64, out_features: int = 32, *, seed: int = 0) -> bytes:
    """x[1, in] → FULLY_CONNECTED(+bias, ReLU) → y[1, out], float32."""
    s = _schema()
    rng = np.random.default_rng(seed)
    b = TfliteBuilder()
    x = b.tensor("x", (1, in_features))
    w = b.tensor("w", (out_features, in_features), data=rng.standard_normal((out_features, in_features)).astype(np.float32))
    bias = b.tensor("b", (out_features,), data=np.zeros(out_features, np.float32))
    y = b.tensor("y", (1, out_features))
    opts = s.FullyConnectedOptionsT()
    opts.fusedActivationFunction = s.ActivationFunctionType.RELU
    b.op(s.BuiltinOperator.FULLY_CONNECTED, [x, w, bias], [y], s.BuiltinOptions.FullyConnectedOptions, opts)
    return b.build([x], [y])


def conv_model(size: int = 16, cin: int = 3, cout: int = 8, *, seed: int = 0) -> bytes:
    """x[1, size, size, cin] → CONV_2D 3×3 SAME (+ReLU) → ADD(x_conv, x_conv) → y, float32, NHWC."""
    s = _schema()
    rng = np.random.default_rng(seed)
    b = TfliteBuilder()
    x = b.tensor("x", (1, size, size, cin))
    w = b.tensor("w", (cout, 3, 3, cin), data=rng.standard_normal((cout, 3, 3, cin)).astype(np.float32))
    bias = b.tensor("b", (cout,), data=np.zeros(cout, np.float32))
    c = b.tensor("conv", (1, size, size, cout))
    y = b.tensor("y", (1, size, size, cout))
    opts = s.Conv2DOptionsT()
    opts.padding, opts.strideW, opts.strideH = s.Padding.SAME, 1, 1
    opts.dilationWFactor = opts.dilationHFactor = 1
    opts.fusedActivationFunction = s.ActivationFunctionType.RELU
    b.op(s.BuiltinOperator.CONV_2D, [x, w, bias], [c], s.BuiltinOptions.Conv2DOptions, opts)
    add = s.AddOptionsT()
    b.op(s.BuiltinOperator.ADD, [c, c], [y], s.BuiltinOptions.AddOptions, add)
    return b.build([x], [y])


def fc_model_int8(in_features: int = 64, out_features: int = 16, *, seed: int = 0) -> bytes:
    """The int8 (full-integer quantized) FULLY_CONNECTED that int8-only accelerators run."""
    s = _schema()
    rng = np.random.default_rng(seed)
    b = TfliteBuilder()
    i8 = s.TensorType.INT8
    x = b.tensor("x", (1, in_features), i8, quant=(0.05, 0))
    w = b.tensor("w", (out_features, in_features), i8,
                 data=rng.integers(-127, 128, (out_features, in_features)).astype(np.int8), quant=(0.01, 0))
    bias = b.tensor("b", (out_features,), s.TensorType.INT32, data=np.zeros(out_features, np.int32),
                    quant=(0.05 * 0.01, 0))
    y = b.tensor("y", (1, out_features), i8, quant=(0.5, 0))
    opts = s.FullyConnectedOptionsT()
    b.op(s.BuiltinOperator.FULLY_CONNECTED, [x, w, bias], [y], s.BuiltinOptions.FullyConnectedOptions, opts)
    return b.build([x], [y])
