"""IR → ONNX export: round trip through graph_from_onnx, runs in onnxruntime, clear errors."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from farm.formats.onnx import graph_from_onnx
from farm.formats.onnx_export import graph_to_onnx
from farm.ir.graph import Graph, Node, TensorInfo
from farm.zoo.onnx_models import DEMO_MODELS

F = "float32"


def run(model) -> list[np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {i.name: np.random.default_rng(1).standard_normal(i.shape).astype(np.float32) for i in sess.get_inputs()}
    return sess.run(None, feeds)


def assert_same(g: Graph, h: Graph) -> None:
    assert [n.op for n in h.nodes] == [n.op for n in g.nodes]
    assert [n.name for n in h.nodes] == [n.name for n in g.nodes]
    assert [[t.shape for t in n.outputs] for n in h.nodes] == [[t.shape for t in n.outputs] for n in g.nodes]
    assert [n.macs for n in h.nodes] == [n.macs for n in g.nodes]
    assert [n.params for n in h.nodes] == [n.params for n in g.nodes]
    assert h.bytes_moved == g.bytes_moved
    assert [t.shape for t in h.outputs] == [t.shape for t in g.outputs]


@pytest.mark.parametrize("name", sorted(DEMO_MODELS))
def test_round_trip_of_demo_models(name):
    # ONNX → IR → ONNX → IR keeps every count, for models covering all supported ops.
    g = graph_from_onnx(DEMO_MODELS[name]())
    if not set(g.op_counts()) <= {"Conv", "BatchNormalization", "Relu", "Add", "AveragePool", "MaxPool",
                                  "GlobalAveragePool", "Flatten", "Gemm", "Mul", "Identity"}:
        with pytest.raises(ValueError, match="unsupported op"):
            graph_to_onnx(g)
        return
    m = graph_to_onnx(g, seed=3)
    assert_same(g, graph_from_onnx(m))
    out = run(m)[0]
    assert np.isfinite(out).all()


def small_graph() -> Graph:
    x = TensorInfo("x", (1, 4, 8, 8), F)
    w = TensorInfo("c.w", (8, 2, 3, 3), F)
    y = TensorInfo("y", (1, 8, 4, 4), F)
    p = TensorInfo("p", (1, 8, 2, 2), F)
    s = TensorInfo("s", (), F)
    z = TensorInfo("z", (1, 8, 2, 2), F)
    i = TensorInfo("i", (1, 8, 2, 2), F)
    a = TensorInfo("a", (1, 8, 2, 2), F)
    attrs = {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "group": 2}
    nodes = (
        Node("c", "Conv", (x, w), (y,), attrs, ("c.w",), macs=16 * 8 * 18, params=8 * 2 * 9),
        Node("mp", "MaxPool", (y,), (p,), {"kernel_shape": [2, 2], "strides": [2, 2]}),
        Node("m", "Mul", (p, s), (z,), {}, ("s",), params=1),
        Node("id", "Identity", (z,), (i,)),
        Node("add", "Add", (i, p), (a,)),
    )
    nodes = tuple(Node(n.name, n.op, n.inputs, n.outputs, n.attrs, n.weights, n.macs, n.params,
                       sum(t.nbytes for t in n.inputs) + sum(t.nbytes for t in n.outputs)) for n in nodes)
    return Graph("small", nodes, (x,), (a,))


def test_grouped_conv_maxpool_mul_identity():
    g = small_graph()
    m = graph_to_onnx(g)
    assert_same(g, graph_from_onnx(m))
    assert run(m)[0].shape == (1, 8, 2, 2)


def test_seeded_weights():
    g = small_graph()
    w0 = {i.name: numpy_helper.to_array(i) for i in graph_to_onnx(g, seed=0).graph.initializer}
    w0b = {i.name: numpy_helper.to_array(i) for i in graph_to_onnx(g, seed=0).graph.initializer}
    w1 = {i.name: numpy_helper.to_array(i) for i in graph_to_onnx(g, seed=1).graph.initializer}
    assert set(w0) == {"c.w", "s"} and w0["c.w"].shape == (8, 2, 3, 3) and w0["s"].shape == ()
    assert all(np.array_equal(w0[k], w0b[k]) for k in w0)
    assert not np.array_equal(w0["c.w"], w1["c.w"])


def test_zero_weight_convention():
    g = small_graph()
    nodes = list(g.nodes)
    s0 = TensorInfo("m.zero", (), F)
    m = nodes[2]
    nodes[2] = Node(m.name, m.op, (m.inputs[0], s0), m.outputs, {}, ("m.zero",), params=1,
                    bytes_moved=m.bytes_moved)
    init = {i.name: numpy_helper.to_array(i) for i in graph_to_onnx(Graph("z", tuple(nodes), g.inputs, g.outputs))
            .graph.initializer}
    assert float(init["m.zero"]) == 0.0


def test_unsupported_op_is_named():
    x = TensorInfo("x", (1, 4), F)
    y = TensorInfo("y", (1, 4), F)
    g = Graph("t", (Node("sm", "Softmax", (x,), (y,)),), (x,), (y,))
    with pytest.raises(ValueError, match="Softmax"):
        graph_to_onnx(g)


def test_dangling_input_is_an_error():
    x = TensorInfo("x", (1, 4), F)
    q = TensorInfo("q", (1, 4), F)
    y = TensorInfo("y", (1, 4), F)
    g = Graph("t", (Node("a", "Add", (x, q), (y,)),), (x,), (y,))
    with pytest.raises(ValueError, match="'q'"):
        graph_to_onnx(g)
