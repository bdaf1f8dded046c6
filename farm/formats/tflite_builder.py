"""Small, valid ``.tflite`` files built without TensorFlow, from LiteRT's flatbuffer schema.

Used by the tests and the demo of the LiteRT runner. Needs ``ai-edge-litert`` (the
``litert`` extra), which ships the schema's Python bindings. Every builder is a pure
function of its arguments: the same call returns the same bytes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["TfliteBuilder", "fc_model", "conv_model", "dwconv_model", "fc_model_int8"]


def _schema() -> Any:
    from ai_edge_litert import schema_py_generated as s

    return s


class TfliteBuilder:
    """One subgraph; tensors and operators appended in order; weights become buffers.

    ``tensor()`` and ``op()`` take schema enums (``s.TensorType.INT8``,
    ``s.BuiltinOperator.CONV_2D``, ``s.BuiltinOptions.Conv2DOptions``) where ``s`` is
    :attr:`schema`.
    """

    def __init__(self) -> None:
        s = _schema()
        self.schema = s
        self._buffers = [s.BufferT()]  # buffer 0: the empty sentinel every tensor without data points at
        self._tensors: list[Any] = []
        self._ops: list[Any] = []
        self._codes: list[int] = []

    def tensor(self, name: str, shape: tuple[int, ...], dtype: int | None = None, *,
               data: np.ndarray | None = None, quant: tuple[float, int] | None = None,
               shape_signature: tuple[int, ...] | None = None) -> int:
        """Add a tensor (a constant when ``data`` is given); returns its index.

        ``dtype`` defaults to FLOAT32; ``quant`` is per-tensor ``(scale, zero_point)``;
        ``shape_signature`` marks dynamic dimensions with -1 (``shape`` then holds 1 there).
        """
        s = self.schema
        t = s.TensorT()
        t.name, t.shape = name, list(shape)
        if shape_signature is not None:
            t.shapeSignature = list(shape_signature)
        t.type = s.TensorType.FLOAT32 if dtype is None else dtype
        if data is not None:
            if tuple(data.shape) != tuple(shape):
                raise ValueError(f"tensor {name!r}: data shape {data.shape} does not match {shape}")
            buf = s.BufferT()
            # A numpy vector packs in one copy; a list packs element by element (minutes for 64 MB).
            buf.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), np.uint8)
            self._buffers.append(buf)
            t.buffer = len(self._buffers) - 1
        if quant is not None:
            q = s.QuantizationParametersT()
            q.scale, q.zeroPoint = [float(quant[0])], [int(quant[1])]
            t.quantization = q
        self._tensors.append(t)
        return len(self._tensors) - 1

    def op(self, builtin: int, inputs: list[int], outputs: list[int], options_type: int = 0,
           options: Any = None) -> None:
        """Append an operator (``-1`` in ``inputs`` omits an optional input)."""
        if builtin not in self._codes:
            self._codes.append(builtin)
        o = self.schema.OperatorT()
        o.opcodeIndex = self._codes.index(builtin)
        o.inputs, o.outputs = list(inputs), list(outputs)
        o.builtinOptionsType, o.builtinOptions = options_type, options
        self._ops.append(o)

    def build(self, inputs: list[int], outputs: list[int], description: str = "hwfarm.zoo") -> bytes:
        """The finished model file (identifier ``TFL3``, schema version 3)."""
        import flatbuffers

        s = self.schema
        sg = s.SubGraphT()
        sg.tensors, sg.operators, sg.inputs, sg.outputs, sg.name = self._tensors, self._ops, inputs, outputs, "main"
        codes = []
        for b in self._codes:
            c = s.OperatorCodeT()
            # Codes above 127 don't fit the deprecated int8 field: it holds 127
            # (PLACEHOLDER_FOR_GREATER_OP_CODES) and readers take the max of the two.
            c.builtinCode, c.deprecatedBuiltinCode, c.version = b, min(b, 127), 1
            codes.append(c)
        m = s.ModelT()
        m.version, m.operatorCodes, m.subgraphs, m.buffers, m.description = 3, codes, [sg], self._buffers, description
        fb = flatbuffers.Builder(1024)
        fb.Finish(m.Pack(fb), file_identifier=b"TFL3")
        return bytes(fb.Output())


def fc_model(in_features: int = 64, out_features: int = 32, *, seed: int = 0) -> bytes:
    """x[1, in] → FULLY_CONNECTED(w[out, in], bias[out], fused ReLU) → y[1, out], float32.

    MACs ``in * out``; params ``in * out + out``.
    """
    s = _schema()
    rng = np.random.default_rng(seed)
    b = TfliteBuilder()
    x = b.tensor("x", (1, in_features))
    w = b.tensor("w", (out_features, in_features),
                 data=rng.standard_normal((out_features, in_features)).astype(np.float32))
    bias = b.tensor("b", (out_features,), data=rng.standard_normal(out_features).astype(np.float32))
    y = b.tensor("y", (1, out_features))
    opts = s.FullyConnectedOptionsT()
    opts.fusedActivationFunction = s.ActivationFunctionType.RELU
    b.op(s.BuiltinOperator.FULLY_CONNECTED, [x, w, bias], [y], s.BuiltinOptions.FullyConnectedOptions, opts)
    return b.build([x], [y])


def conv_model(size: int = 16, cin: int = 3, cout: int = 8, *, kernel: int = 3, seed: int = 0) -> bytes:
    """x[1, size, size, cin] → CONV_2D k×k SAME stride 1 (+bias, fused ReLU) → c; ADD(c, c) → y.

    float32, NHWC. MACs ``size² · cout · k² · cin`` (the ADD has none); params ``cout·k²·cin + cout``.
    """
    s = _schema()
    rng = np.random.default_rng(seed)
    b = TfliteBuilder()
    x = b.tensor("x", (1, size, size, cin))
    w = b.tensor("w", (cout, kernel, kernel, cin),
                 data=rng.standard_normal((cout, kernel, kernel, cin)).astype(np.float32))
    bias = b.tensor("b", (cout,), data=rng.standard_normal(cout).astype(np.float32))
    c = b.tensor("conv", (1, size, size, cout))
    y = b.tensor("y", (1, size, size, cout))
    opts = s.Conv2DOptionsT()
    opts.padding, opts.strideW, opts.strideH = s.Padding.SAME, 1, 1
    opts.dilationWFactor = opts.dilationHFactor = 1
    opts.fusedActivationFunction = s.ActivationFunctionType.RELU
    b.op(s.BuiltinOperator.CONV_2D, [x, w, bias], [c], s.BuiltinOptions.Conv2DOptions, opts)
    b.op(s.BuiltinOperator.ADD, [c, c], [y], s.BuiltinOptions.AddOptions, s.AddOptionsT())
    return b.build([x], [y])


def dwconv_model(size: int = 16, channels: int = 8, *, kernel: int = 3, stride: int = 2, seed: int = 0) -> bytes:
    """x[1, size, size, C] → DEPTHWISE_CONV_2D k×k SAME stride s (+bias, ReLU6) → y[1, ⌈size/s⌉², C].

    float32, NHWC. MACs ``⌈size/s⌉² · C · k²``; params ``C·k² + C``.
    """
    s = _schema()
    rng = np.random.default_rng(seed)
    b = TfliteBuilder()
    out = -(-size // stride)
    x = b.tensor("x", (1, size, size, channels))
    w = b.tensor("w", (1, kernel, kernel, channels),
                 data=rng.standard_normal((1, kernel, kernel, channels)).astype(np.float32))
    bias = b.tensor("b", (channels,), data=rng.standard_normal(channels).astype(np.float32))
    y = b.tensor("y", (1, out, out, channels))
    opts = s.DepthwiseConv2DOptionsT()
    opts.padding, opts.strideW, opts.strideH, opts.depthMultiplier = s.Padding.SAME, stride, stride, 1
    opts.dilationWFactor = opts.dilationHFactor = 1
    opts.fusedActivationFunction = s.ActivationFunctionType.RELU6
    b.op(s.BuiltinOperator.DEPTHWISE_CONV_2D, [x, w, bias], [y], s.BuiltinOptions.DepthwiseConv2DOptions, opts)
    return b.build([x], [y])


def fc_model_int8(in_features: int = 64, out_features: int = 16, *, seed: int = 0) -> bytes:
    """The int8 (full-integer quantized) FULLY_CONNECTED that int8-only accelerators run.

    x int8[1, in] (scale 0.05) · w int8[out, in] (scale 0.01, symmetric) + bias int32[out]
    (scale 0.05·0.01) → y int8[1, out] (scale 0.5). MACs ``in * out``; params ``in * out + out``.
    """
    s = _schema()
    rng = np.random.default_rng(seed)
    b = TfliteBuilder()
    i8 = s.TensorType.INT8
    x = b.tensor("x", (1, in_features), i8, quant=(0.05, 0))
    w = b.tensor("w", (out_features, in_features), i8,
                 data=rng.integers(-127, 128, (out_features, in_features)).astype(np.int8), quant=(0.01, 0))
    bias = b.tensor("b", (out_features,), s.TensorType.INT32,
                    data=rng.integers(-1000, 1000, out_features).astype(np.int32), quant=(0.05 * 0.01, 0))
    y = b.tensor("y", (1, out_features), i8, quant=(0.5, 0))
    opts = s.FullyConnectedOptionsT()
    b.op(s.BuiltinOperator.FULLY_CONNECTED, [x, w, bias], [y], s.BuiltinOptions.FullyConnectedOptions, opts)
    return b.build([x], [y])
