"""Features of a kernel, from a declared table per kernel type.

:func:`kernel_quantities` measures everything about one kernel once (shapes, channels,
kernel size, stride, groups, MACs, bytes, bit widths, what got fused into it); the table
:data:`FEATURES` says which of those quantities each kernel type's model sees. Both are
pure: nothing here mutates a graph or a kernel. Bump :data:`FEATURE_SCHEMA` whenever the
table or a quantity's definition changes: bundles record it and refuse a mismatch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from farm.ir.bits import bit_widths
from farm.ir.graph import DTYPE_BYTES, Node
from predictors.kernels import DetectedKernel

__all__ = ["FEATURE_SCHEMA", "FEATURES", "FALLBACK_FEATURES", "kernel_quantities", "feature_row", "feature_matrix"]

FEATURE_SCHEMA = 3  # 2: w_bits / a_bits; TFLite (NHWC, fused activations) kernels; 3: fused_act_kind

_ACT_OPS = {"Relu", "Clip", "Sigmoid", "HardSwish", "HardSigmoid", "LeakyRelu", "Tanh", "Relu6", "Elu", "Gelu"}

_SHAPE = ("h_in", "w_in", "cin", "cout", "h_out", "w_out")
FEATURES: dict[str, tuple[str, ...]] = {
    "conv": _SHAPE + ("k", "stride", "groups", "macs", "kbytes", "params", "fused_bn", "fused_act", "fused_act_kind",
                      "fused_add", "bits", "w_bits", "a_bits", "threads"),
    "dwconv": ("h_in", "w_in", "cin", "h_out", "w_out", "k", "stride", "macs", "kbytes", "fused_bn", "fused_act",
               "fused_act_kind", "bits", "w_bits", "a_bits", "threads"),
    "gemm": ("cin", "cout", "macs", "kbytes", "params", "fused_act", "fused_act_kind", "bits", "w_bits", "a_bits", "threads"),
    "pool": ("h_in", "w_in", "cin", "h_out", "w_out", "k", "stride", "in_numel", "kbytes", "is_max", "threads"),
    "gpool": ("h_in", "w_in", "cin", "in_numel", "kbytes", "threads"),
    "eltwise": ("h_in", "w_in", "cin", "out_numel", "n_inputs", "fused_act", "fused_act_kind", "kbytes", "bits", "threads"),
    "act": ("h_in", "w_in", "cin", "out_numel", "act_kind", "kbytes", "bits", "threads"),
    "bn": ("h_in", "w_in", "cin", "out_numel", "fused_act", "fused_act_kind", "kbytes", "threads"),
    "concat": ("h_in", "w_in", "cout", "out_numel", "n_inputs", "kbytes", "threads"),
    "reshape": ("out_numel", "n_ops", "kbytes", "threads"),
}
# Kernels of a type without a trained model get a roofline fitted on the device's own data.
FALLBACK_FEATURES = ("macs", "kbytes")
_ACT_KIND = {"Relu": 1, "Clip": 2, "Relu6": 2, "Sigmoid": 3, "HardSwish": 4, "HardSigmoid": 5, "Tanh": 6,
             "LeakyRelu": 7, "Gelu": 8, "Elu": 9,
             "RELU": 1, "RELU6": 2, "LOGISTIC": 3, "HARD_SWISH": 4, "TANH": 6, "LEAKY_RELU": 7, "GELU": 8, "ELU": 9}
# TFLite kernels (``.tflite`` graphs: NHWC, upper-case op names, activations fused as an attribute).
_TFLITE_ACT = {"RELU", "RELU6", "RELU_N1_TO_1", "TANH", "SIGN_BIT", "RELU_0_TO_1"}
_UPPER_ONNX_OPS = {"LRN", "GRU", "RNN", "LSTM"}  # ONNX ops spelled like TFLite ones (NCHW)


def _set_fused_act(q: dict[str, float], act: str | None) -> None:
    """``fused_act`` and ``fused_act_kind`` of a kernel whose activation is ``act`` (an ONNX
    op or a TFLite fused-activation name; None: no fused activation). An activation without
    a code of its own gets the code after the last."""
    q["fused_act"] = float(act is not None)
    q["fused_act_kind"] = float(_ACT_KIND.get(act, len(_ACT_KIND))) if act is not None else 0.0


def _act_inputs(node: Node) -> list[int]:
    """Indices of the node's inputs that are activations (not initializers)."""
    return [i for i, t in enumerate(node.inputs) if t.name not in node.weights]


def _chw(shape: tuple[int, ...], nhwc: bool = False) -> tuple[int, int, int]:
    """(C, H, W) of an NCHW (``nhwc``: NHWC) / NC / flat tensor."""
    if nhwc and len(shape) == 4:
        return shape[3], shape[1], shape[2]
    if len(shape) >= 4:
        return shape[1], shape[-2], shape[-1]
    if len(shape) == 3:
        return shape[1], shape[2], 1
    if len(shape) == 2:
        return shape[1], 1, 1
    return (shape[0] if shape else 1), 1, 1


def kernel_quantities(k: DetectedKernel, threads: int = 1) -> dict[str, float]:
    """Every quantity any feature table uses, for one kernel."""
    head = k.nodes[0] if k.nodes else None
    q: dict[str, float] = dict.fromkeys(("h_in", "w_in", "cin", "cout", "h_out", "w_out", "k", "stride", "groups",
                                         "in_numel", "out_numel", "n_inputs", "is_max", "act_kind"), 0.0)
    q.update(macs=float(k.kernel.macs), kbytes=k.kernel.bytes / 1024.0, threads=float(threads),
             n_ops=float(len(k.nodes)), params=float(sum(n.params for n in k.nodes)))
    ops = [n.op for n in k.nodes]
    q["fused_bn"] = float("BatchNormalization" in ops[1:])
    fused_acts = [o for o in ops[1:] if o in _ACT_OPS]
    # which activation: a runtime may apply ReLU in the kernel's own loop but Clip (ReLU6)
    # or a sigmoid in a pass of its own (onnxruntime's NCHWc convolutions: ReLU free, Clip ~10%)
    _set_fused_act(q, fused_acts[0] if fused_acts else None)
    q["fused_add"] = float(any(o in ("Add", "Sum") for o in ops[1:]))
    q["bits"] = 8.0 * DTYPE_BYTES.get(k.kernel.dtype, 4)
    q["w_bits"] = q["a_bits"] = q["bits"]
    if head is None:
        return q
    q["w_bits"], q["a_bits"] = map(float, bit_widths(head))
    acts = _act_inputs(head)
    x = head.inputs[acts[0]].shape if acts else ()
    y = k.nodes[-1].outputs[0].shape if k.nodes[-1].outputs else ()
    nhwc = head.op.isupper() and head.op not in _UPPER_ONNX_OPS
    q["cin"], q["h_in"], q["w_in"] = map(float, _chw(x, nhwc))
    q["cout"], q["h_out"], q["w_out"] = map(float, _chw(y, nhwc))
    q["in_numel"] = float(math.prod(x)) if x else 0.0
    q["out_numel"] = float(math.prod(y)) if y else 0.0
    q["n_inputs"] = float(len(acts))
    ks = head.attrs.get("kernel_shape")
    if ks:
        q["k"] = float(ks[-1])
    elif head.op in ("Conv", "QLinearConv") and len(head.inputs) > 1 and len(head.inputs[1].shape) == 4:
        q["k"] = float(head.inputs[1].shape[-1])
    strides = head.attrs.get("strides")
    q["stride"] = float(strides[-1]) if strides else 1.0
    q["groups"] = float(head.attrs.get("group", 1))
    q["is_max"] = float(head.op in ("MaxPool", "MAX_POOL_2D", "GlobalMaxPool"))
    q["act_kind"] = float(_ACT_KIND.get(head.op, 0))
    if head.op in ("Gemm", "MatMul", "FULLY_CONNECTED", "BATCH_MATMUL"):
        q["cin"] = float(x[-1]) if x else 0.0
        q["cout"] = float(y[-1]) if y else 0.0
    if nhwc:
        _tflite_quantities(q, head, x)
    return q


def _tflite_quantities(q: dict[str, float], head: Node, x: tuple[int, ...]) -> None:
    """Kernel size, stride, groups and the fused activation of a TFLite op (filters are
    ``[Cout, KH, KW, Cin/groups]``, depthwise ``[1, KH, KW, C]``; pools name their window)."""
    a = head.attrs
    if head.op in ("CONV_2D", "DEPTHWISE_CONV_2D") and len(head.inputs) > 1 and len(head.inputs[1].shape) == 4:
        f = head.inputs[1].shape
        q["k"] = float(f[2])
        if head.op == "CONV_2D" and len(x) == 4 and f[3]:
            q["groups"] = float(max(1, x[3] // f[3]))
    elif "filter_width" in a:
        q["k"] = float(a["filter_width"])
    if "stride_w" in a:
        q["stride"] = float(a["stride_w"])
    act = a.get("fused_activation_function", "NONE")
    _set_fused_act(q, act if act in _TFLITE_ACT else None)


def feature_row(k: DetectedKernel, ktype: str, threads: int = 1) -> list[float]:
    q = kernel_quantities(k, threads)
    return [q[f] for f in FEATURES.get(ktype, FALLBACK_FEATURES)]


def feature_matrix(kernels: Sequence[DetectedKernel], ktype: str, threads: int = 1) -> np.ndarray:
    cols = FEATURES.get(ktype, FALLBACK_FEATURES)
    if not kernels:
        return np.zeros((0, len(cols)))
    return np.array([feature_row(k, ktype, threads) for k in kernels], dtype=np.float64)
