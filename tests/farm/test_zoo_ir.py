"""IRBuilder ops the reference nets need: shapes, padding rules, costs, and the ONNX round trip
(IR → ONNX → IR keeps names, shapes, MACs, params, bytes) with the model running in onnxruntime."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from farm.formats.onnx import graph_from_onnx
from farm.formats.onnx_export import SUPPORTED_OPS, graph_to_onnx
from farm.ir.builder import IRBuilder
from farm.ir.graph import Graph


def assert_round_trip(g: Graph) -> None:
    h = graph_from_onnx(graph_to_onnx(g))
    key = lambda n: (n.name, n.op, [t.shape for t in n.outputs], n.macs, n.params, n.bytes_moved)  # noqa: E731
    assert [key(n) for n in h.nodes] == [key(n) for n in g.nodes]
    assert [t.shape for t in h.outputs] == [t.shape for t in g.outputs]


def run(g: Graph, seed: int = 0) -> np.ndarray:
    m = graph_to_onnx(g)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(seed).standard_normal(g.inputs[0].shape).astype(np.float32)
    return sess.run(None, {g.inputs[0].name: x})[0]


def every_op_graph() -> Graph:
    b = IRBuilder((1, 1, 49, 10))
    x = b.conv("c1", "input", 8, (10, 4), 2, pad="same", bias=True)
    x = b.relu6("r6", b.bn("bn", x))
    x = b.dwconv("dw", x, 3)
    x = b.channel_shuffle("sh", x, 2)
    y = b.act("hs", "HardSwish", x)
    y = b.mul("se", y, b.act("sg", "Sigmoid", b.global_avgpool("sq", y)))
    x = b.concat("cat", [x, b.identity("id", y)])
    x = b.maxpool("mp", x, 3, 2, ceil_mode=True)
    x = b.avgpool("ap", x, 2, 2, ceil_mode=True)
    x = b.gemm("fc", b.flatten("fl", x), 5)
    return b.build("every-op", x)


def test_every_new_op_round_trips_and_runs():
    g = every_op_graph()
    assert {n.op for n in g.nodes} <= set(SUPPORTED_OPS)
    assert_round_trip(g)
    y = run(g)
    assert y.shape == (1, 5) and np.isfinite(y).all()


def test_tf_same_padding_of_an_even_kernel():
    # DS-CNN's first layer: 10×4 kernel, stride 2, SAME on 49×10 → 25×5, pads (4,1,5,1).
    b = IRBuilder((1, 1, 49, 10))
    x = b.conv("c", "input", 64, (10, 4), 2, pad="same", bias=True)
    n = b.nodes[-1]
    assert b.shape(x) == (1, 64, 25, 5) and n.attrs["pads"] == [4, 1, 5, 1]
    assert n.macs == 25 * 5 * 64 * 40 and n.params == 64 * 40 + 64


def test_depthwise_and_grouped_conv_costs():
    b = IRBuilder((1, 32, 16, 16))
    b.dwconv("dw", "input", 3, 2)
    assert b.nodes[-1].macs == 8 * 8 * 32 * 9 and b.nodes[-1].params == 32 * 9
    b.conv("g", "dw:0", 64, 1, group=2)
    assert b.nodes[-1].macs == 8 * 8 * 64 * 16 and b.nodes[-1].params == 64 * 16
    with pytest.raises(ValueError, match="divisible by group=3"):
        b.conv("bad", "g:0", 64, 1, group=3)


@pytest.mark.parametrize("size, k, s, pad", [(5, 2, 2, 1), (7, 3, 2, 0), (6, 3, 2, 1), (13, 3, 2, 0), (112, 3, 2, 0)])
def test_ceil_mode_pools_match_onnx_shape_inference(size, k, s, pad):
    b = IRBuilder((1, 2, size, size))
    y = b.maxpool("mp", "input", k, s, pad, ceil_mode=True)
    y = b.avgpool("ap", y, 1, 1, ceil_mode=True)
    g = b.build("pool", y)
    assert_round_trip(g)
    assert run(g).shape == g.outputs[0].shape


def test_channel_shuffle_permutes_channels():
    # Reshape(N,g,C/g,H,W) → Transpose(0,2,1,3,4) → Reshape: channel i*C/g+j goes to j*g+i.
    b = IRBuilder((1, 6, 1, 1))
    g = b.build("shuffle", b.channel_shuffle("sh", "input", 2))
    assert [n.op for n in g.nodes] == ["Reshape", "Transpose", "Reshape"]
    assert g.nodes[0].params == 5 and g.nodes[0].inputs[1].dtype == "int64" and g.macs == 0
    m = graph_to_onnx(g)
    shapes = [numpy_helper.to_array(i).tolist() for i in m.graph.initializer]
    assert shapes == [[1, 2, 3, 1, 1], [1, 6, 1, 1]]
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.arange(6, dtype=np.float32).reshape(1, 6, 1, 1)
    assert sess.run(None, {"input": x})[0].ravel().tolist() == [0, 3, 1, 4, 2, 5]


def test_relu6_is_a_clip_with_its_bounds():
    b = IRBuilder((1, 3, 2, 2))
    g = b.build("r6", b.relu6("r", "input"))
    m = graph_to_onnx(g)
    assert sorted(float(numpy_helper.to_array(i)) for i in m.graph.initializer) == [0.0, 6.0]
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    y = sess.run(None, {"input": np.array([-3, 2, 9, 6.5] * 3, np.float32).reshape(1, 3, 2, 2)})[0]
    assert y.ravel().tolist()[:4] == [0, 2, 6, 6]
    assert g.nodes[0].params == 2


def test_int8_builder_marks_every_node_int8():
    b = IRBuilder((1, 3, 8, 8), dtype="int8")
    x = b.relu("r", b.conv("c", "input", 4, 3))
    x = b.channel_shuffle("sh", x, 2)
    g = b.build("q", b.gemm("fc", b.flatten("f", b.global_avgpool("gap", x)), 2))
    assert {n.dtype for n in g.nodes} == {"int8"}
    conv = g.nodes[0]
    assert conv.bytes_moved == 3 * 64 + 4 * 27 + 4 * 64  # 1 byte per element
    assert next(n for n in g.nodes if n.op == "Reshape").inputs[1].dtype == "int64"


def test_bad_shapes_are_value_errors():
    b = IRBuilder((1, 4, 8, 8))
    with pytest.raises(ValueError, match="cannot concatenate"):
        b.concat("c", ["input", b.maxpool("p", "input", 2, 2)])
    with pytest.raises(ValueError, match="cannot reshape"):
        b.reshape("r", "input", (1, 5, 8, 8))
    with pytest.raises(ValueError, match="does not fit"):
        b.conv("big", "input", 4, 11, pad=0)
    with pytest.raises(ValueError, match="unknown activation"):
        b.act("a", "Gelu", "input")
