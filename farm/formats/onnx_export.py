"""Graph IR → runnable ONNX model, with seeded random weights.

The inverse of :func:`farm.formats.onnx.graph_from_onnx` for the CNN ops the zoo's search
spaces use, so that an architecture built in Python (``farm/zoo``) can be measured on a
device. The IR keeps only weight *shapes* (the ``Node.inputs`` entries named in
``Node.weights``), so the values are drawn from a seeded generator: He-normal for
Conv/Gemm/Mul weights, and a sane batch norm (scale ≈ 1, bias and mean ≈ 0, variance
> 0) so that activations stay finite. Constant inputs that carry meaning are not random: a
``Clip``'s min and max come from the node's ``min``/``max`` attributes (ReLU6: 0 and 6), a
``Reshape``'s target shape from its output shape. A weight whose name ends in ``.zero`` is all zeros
(:mod:`farm.zoo.nb201` multiplies by one to stand for a cell that outputs zeros). Latency does not depend on the values; do not read
accuracy into the outputs.

Round trip: ``graph_from_onnx(graph_to_onnx(g))`` has the same node names, op sequence,
output shapes, MACs, params and bytes moved as ``g``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from farm.ir.graph import Graph, Node

__all__ = ["graph_to_onnx", "SUPPORTED_OPS"]

# Op → the ONNX attributes it passes through (other IR attrs are ignored).
SUPPORTED_OPS: dict[str, tuple[str, ...]] = {
    "Conv": ("kernel_shape", "strides", "pads", "group", "dilations", "auto_pad"),
    "BatchNormalization": ("epsilon", "momentum"),
    "Relu": (),
    "Clip": (),  # min/max are constant inputs (opset >= 11), filled from the IR node's min/max attrs
    "Sigmoid": (),
    "HardSwish": (),
    "HardSigmoid": ("alpha", "beta"),
    "Tanh": (),
    "Add": (),
    "Mul": (),
    "Identity": (),
    "AveragePool": ("kernel_shape", "strides", "pads", "count_include_pad", "ceil_mode", "auto_pad"),
    "MaxPool": ("kernel_shape", "strides", "pads", "ceil_mode", "dilations", "auto_pad", "storage_order"),
    "GlobalAveragePool": (),
    "Flatten": ("axis",),
    "Gemm": ("transA", "transB", "alpha", "beta"),
    "Concat": ("axis",),
    "Reshape": ("allowzero",),  # the target shape is a constant input, filled from the output shape
    "Transpose": ("perm",),
}


def _clean(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_clean(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


def graph_to_onnx(graph: Graph, *, seed: int = 0, opset: int = 17) -> Any:
    """Build an ``onnx.ModelProto`` computing ``graph`` (static shapes, seeded weights).

    Raises ValueError for an op outside :data:`SUPPORTED_OPS`, for a node input that is
    neither a graph input, an earlier node's output nor one of the node's weights, and
    for a weight name given two different shapes.
    """
    import onnx
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(seed)

    def elem(dtype: str) -> int:
        try:
            return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
        except (TypeError, KeyError, ValueError):
            raise ValueError(f"graph {graph.name!r}: unsupported dtype {dtype!r}") from None

    available: set[str] = {t.name for t in graph.inputs}
    inits: dict[str, Any] = {}
    init_shapes: dict[str, tuple[int, ...]] = {}
    onnx_nodes = []
    value_info: dict[str, Any] = {}
    for node in graph.nodes:
        if node.op not in SUPPORTED_OPS:
            raise ValueError(f"graph_to_onnx: node {node.name!r}: unsupported op {node.op!r} "
                             f"(supported: {', '.join(sorted(SUPPORTED_OPS))})")
        wset = set(node.weights)
        for pos, t in enumerate(node.inputs):
            if t.name in wset:
                if t.name in init_shapes:
                    if init_shapes[t.name] != tuple(t.shape):
                        raise ValueError(f"graph_to_onnx: weight {t.name!r} has shapes {init_shapes[t.name]} "
                                         f"and {tuple(t.shape)}")
                    continue
                init_shapes[t.name] = tuple(t.shape)
                inits[t.name] = numpy_helper.from_array(
                    _init_value(node, pos, tuple(t.shape), rng, t.name).astype(np.dtype(t.dtype)), t.name)
            elif t.name not in available:
                raise ValueError(f"graph_to_onnx: node {node.name!r} ({node.op}) reads {t.name!r}, which is "
                                 "not a graph input, an earlier node's output or one of its weights")
        attrs = {k: _clean(v) for k, v in node.attrs.items() if k in SUPPORTED_OPS[node.op]}
        onnx_nodes.append(helper.make_node(node.op, [t.name for t in node.inputs],
                                           [t.name for t in node.outputs], name=node.name, **attrs))
        for t in node.outputs:
            available.add(t.name)
            value_info[t.name] = helper.make_tensor_value_info(t.name, elem(t.dtype), list(t.shape))

    for t in graph.outputs:
        if t.name not in available:
            raise ValueError(f"graph_to_onnx: graph output {t.name!r} is not computed by any node")
    out_names = {t.name for t in graph.outputs}
    g = helper.make_graph(
        onnx_nodes, graph.name,
        [helper.make_tensor_value_info(t.name, elem(t.dtype), list(t.shape)) for t in graph.inputs],
        [helper.make_tensor_value_info(t.name, elem(t.dtype), list(t.shape)) for t in graph.outputs],
        initializer=list(inits.values()),
        value_info=[vi for name, vi in value_info.items() if name not in out_names],
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="hwfarm.onnx_export")
    onnx.checker.check_model(model)
    return model


def _init_value(node: Node, pos: int, shape: tuple[int, ...], rng: np.random.Generator, name: str = "") -> np.ndarray:
    op = node.op
    if name.endswith(".zero"):  # convention: a weight named "*.zero" is all zeros (NB201's Zero op)
        return np.zeros(shape)
    if op == "Clip":  # inputs: x, min, max
        return np.full(shape, float(node.attrs.get("min" if pos == 1 else "max", 0.0 if pos == 1 else 6.0)))
    if op == "Reshape":  # inputs: x, shape
        return np.asarray(node.outputs[0].shape, dtype=np.int64).reshape(shape)
    if op == "BatchNormalization":  # inputs: x, scale, bias, mean, var
        n = rng.standard_normal(shape)
        return {1: 1.0 + 0.1 * n, 2: 0.1 * n, 3: 0.1 * n}.get(pos, np.abs(n) + 0.5)
    if op in ("Conv", "Gemm") and pos == 1 and len(shape) > 1:
        fan_in = int(np.prod(shape[1:]))  # Conv [Cout, Cin/g, k..]; Gemm transB [N, K]
        # float32 draws: half the memory and time of float64 for the big nets (VGG-16: 138 M)
        w = rng.standard_normal(shape, dtype=np.float32)
        w *= np.float32(np.sqrt(2.0 / max(fan_in, 1)))
        return w
    if pos >= 2 or op in ("Add",):  # biases
        return rng.standard_normal(shape) * 0.01
    return rng.standard_normal(shape)
