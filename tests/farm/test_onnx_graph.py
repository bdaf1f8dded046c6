"""ONNX → IR on the kinds of files people have: exact counts, legacy IR, constant subgraphs,
dynamic shapes, truncated files."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from farm.errors import ModelError
from farm.graph import Graph
from farm.onnx_graph import graph_from_onnx
from farm.workload import load_workload
from farm.zoo.onnx_models import DEMO_MODELS

F = TensorProto.FLOAT


def model(nodes, inputs, outputs, inits=(), *, opset=17, ir=None):
    g = helper.make_graph(nodes, "t", inputs, outputs, initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    if ir is not None:
        m.ir_version = ir
    return m


def w(name, shape, dtype=np.float32):
    return numpy_helper.from_array(np.random.default_rng(0).standard_normal(shape).astype(dtype), name)


def runs_in_ort(m) -> None:
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {i.name: np.zeros([d for d in i.shape], np.float32) for i in sess.get_inputs()}
    sess.run(None, feeds)


def test_conv_counts():
    m = model([helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], name="c")],
              [helper.make_tensor_value_info("x", F, [1, 3, 8, 8])], [helper.make_tensor_value_info("y", F, [1, 4, 8, 8])],
              [w("w", (4, 3, 3, 3)), w("b", (4,))])
    (n,) = graph_from_onnx(m).nodes
    assert n.macs == 8 * 8 * 4 * 3 * 9 and n.params == 4 * 3 * 9 + 4
    assert n.weights == ("w", "b") and n.outputs[0].shape == (1, 4, 8, 8) and n.dtype == "float32"
    assert n.bytes_moved == 4 * (3 * 64 + 4 * 27 + 4 + 4 * 64)


def test_depthwise_and_strided_conv():
    m = model([helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                                group=16)],
              [helper.make_tensor_value_info("x", F, [1, 16, 32, 32])], [helper.make_tensor_value_info("y", F, None)],
              [w("w", (16, 1, 3, 3))])
    (n,) = graph_from_onnx(m).nodes
    assert n.outputs[0].shape == (1, 16, 16, 16)
    assert n.macs == 16 * 16 * 16 * 9 and n.name == "Conv_0"


def test_gemm_transposed_and_batched_matmul():
    m = model([helper.make_node("Gemm", ["x", "w"], ["h"], transB=1),
               helper.make_node("Reshape", ["h", "s"], ["r"]),
               helper.make_node("MatMul", ["r", "r2"], ["y"])],
              [helper.make_tensor_value_info("x", F, [2, 10]), helper.make_tensor_value_info("r2", F, [2, 1, 4, 5])],
              [helper.make_tensor_value_info("y", F, None)],
              [w("w", (24, 10)), numpy_helper.from_array(np.array([2, 2, 3, 4], np.int64), "s")])
    g = graph_from_onnx(m)
    gemm, reshape, mm = g.nodes
    assert gemm.macs == 2 * 24 * 10 and gemm.params == 240
    assert reshape.params == 4 and reshape.macs == 0  # the shape tensor is a (tiny) constant input
    assert mm.outputs[0].shape == (2, 2, 3, 5) and mm.macs == 2 * 2 * 3 * 5 * 4
    assert g.macs == gemm.macs + mm.macs


def test_legacy_ir3_initializers_listed_as_inputs():
    x = helper.make_tensor_value_info("x", F, [1, 8])
    wi = helper.make_tensor_value_info("w", F, [8, 4])
    m = model([helper.make_node("MatMul", ["x", "w"], ["y"])], [x, wi], [helper.make_tensor_value_info("y", F, [1, 4])],
              [w("w", (8, 4))], opset=8, ir=3)
    runs_in_ort(m)
    g = graph_from_onnx(m)
    assert [t.name for t in g.inputs] == ["x"]
    assert g.params == 32 and g.macs == 32


def test_weights_from_constant_subgraphs_are_params():
    # conv weight = Reshape(ConstantOfShape([36]) , [4,1,3,3]); bias from a Constant node
    nodes = [
        helper.make_node("Constant", [], ["wshape_flat"], value=numpy_helper.from_array(np.array([36], np.int64))),
        helper.make_node("ConstantOfShape", ["wshape_flat"], ["wflat"],
                         value=numpy_helper.from_array(np.array([0.1], np.float32))),
        helper.make_node("Constant", [], ["wshape"], value=numpy_helper.from_array(np.array([4, 1, 3, 3], np.int64))),
        helper.make_node("Reshape", ["wflat", "wshape"], ["wt"]),
        helper.make_node("Constant", [], ["b"], value=numpy_helper.from_array(np.zeros(4, np.float32))),
        helper.make_node("Conv", ["x", "wt", "b"], ["y"], kernel_shape=[3, 3], name="conv"),
    ]
    m = model(nodes, [helper.make_tensor_value_info("x", F, [1, 1, 6, 6])], [helper.make_tensor_value_info("y", F, None)])
    runs_in_ort(m)
    g = graph_from_onnx(m)
    (conv,) = g.nodes  # the constant subgraph is folded away
    assert conv.op == "Conv" and conv.params == 36 + 4 and set(conv.weights) == {"wt", "b"}
    assert conv.macs == 4 * 4 * 4 * 9


@pytest.mark.parametrize("opset", [9, 11, 13, 17, 21])
def test_opset_variety(opset):
    m = model([helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[1, 1]), helper.make_node("Relu", ["c"], ["r"]),
               helper.make_node("GlobalAveragePool", ["r"], ["p"]), helper.make_node("Flatten", ["p"], ["y"])],
              [helper.make_tensor_value_info("x", F, [1, 3, 4, 4])], [helper.make_tensor_value_info("y", F, None)],
              [w("w", (5, 3, 1, 1))], opset=opset)
    g = graph_from_onnx(m)
    assert [n.op for n in g.nodes] == ["Conv", "Relu", "GlobalAveragePool", "Flatten"]
    assert g.outputs[0].shape == (1, 5) and g.macs == 16 * 5 * 3


def test_dynamic_batch_is_a_clear_error():
    m = model([helper.make_node("Relu", ["x"], ["y"])], [helper.make_tensor_value_info("x", F, ["N", 3])],
              [helper.make_tensor_value_info("y", F, ["N", 3])])
    with pytest.raises(ModelError, match=r"m\.onnx: input 'x' has a dynamic shape \['N', 3\]"):
        graph_from_onnx(m, source="m.onnx")


def test_unknown_intermediate_shape_names_the_node():
    # Reshape to a shape that comes from a graph input: not inferable statically.
    m = model([helper.make_node("Reshape", ["x", "s"], ["r"], name="reshape_dyn"), helper.make_node("Relu", ["r"], ["y"])],
              [helper.make_tensor_value_info("x", F, [2, 6]), helper.make_tensor_value_info("s", TensorProto.INT64, [2])],
              [helper.make_tensor_value_info("y", F, None)])
    with pytest.raises(ModelError, match="node 'reshape_dyn'.*shape of tensor 'r' is unknown"):
        graph_from_onnx(m, source="m.onnx")


def test_quantized_conv_counts_int8():
    q = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"], kernel_shape=[3, 3])
    inits = [numpy_helper.from_array(np.array(0.1, np.float32), "xs"), numpy_helper.from_array(np.array(0, np.int8), "xz"),
             numpy_helper.from_array(np.ones((8, 4, 3, 3), np.int8), "w"),
             numpy_helper.from_array(np.array(0.1, np.float32), "ws"), numpy_helper.from_array(np.array(0, np.int8), "wz"),
             numpy_helper.from_array(np.array(0.1, np.float32), "ys"), numpy_helper.from_array(np.array(0, np.int8), "yz")]
    m = model([q], [helper.make_tensor_value_info("x", TensorProto.INT8, [1, 4, 10, 10])],
              [helper.make_tensor_value_info("y", TensorProto.INT8, None)], inits)
    (n,) = graph_from_onnx(m).nodes
    assert n.dtype == "int8" and n.macs == 8 * 8 * 8 * 4 * 9
    assert n.inputs[3].dtype == "int8"


def test_graph_json_round_trip():
    g = graph_from_onnx(DEMO_MODELS["resnet8-cifar"]())
    back = Graph.from_dict(g.to_dict())
    assert back == g and back.macs == g.macs


def test_demo_models_run_and_match_published_sizes():
    counts = {}
    for name, build in DEMO_MODELS.items():
        m = build()
        runs_in_ort(m)
        g = graph_from_onnx(m)
        counts[name] = (g.macs, g.params)
    # MLP 784-256-10: exact.
    assert counts["mlp"] == (784 * 256 + 256 * 10, 784 * 256 + 256 + 256 * 10 + 10)
    # MobileNetV1 0.25 @128: the paper reports 14 M mult-adds and 0.47 M parameters (Howard et al. 2017, Table 7).
    macs, params = counts["mobilenet-v1-0.25-128"]
    assert 13.0e6 < macs < 14.5e6 and 0.46e6 < params < 0.48e6 + 0.02e6
    # MLPerf Tiny ResNet-8: ~12.5 M MACs, ~78 k parameters (incl. batch-norm statistics here).
    macs, params = counts["resnet8-cifar"]
    assert 12.0e6 < macs < 13.0e6 and 75e3 < params < 82e3


@pytest.mark.parametrize("content, match", [
    (None, "model file not found"),
    (b"", "model file is empty"),
    (b"\x0a\xff\xff\xff\xff\x0f garbage", "not a valid ONNX file"),
])
def test_unreadable_files(tmp_path, content, match):
    p = tmp_path / "bad.onnx"
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(ModelError, match=match) as exc:
        load_workload(p)
    assert "bad.onnx" in str(exc.value)


def test_truncated_file(tmp_path):
    full = DEMO_MODELS["resnet8-cifar"]().SerializeToString()
    p = tmp_path / "cut.onnx"
    for frac in (0.1, 0.5, 0.9, 0.999):
        p.write_bytes(full[: int(len(full) * frac)])
        with pytest.raises(ModelError, match="cut.onnx"):
            load_workload(p)


def test_unknown_extension_and_directory(tmp_path):
    (tmp_path / "m.pt").write_bytes(b"\x80\x02pickle")
    with pytest.raises(ModelError, match="unknown model format"):
        load_workload(tmp_path / "m.pt")
    with pytest.raises(ModelError, match="is a directory"):
        load_workload(tmp_path)


def test_same_bytes_same_hash(tmp_path):
    data = DEMO_MODELS["mlp"]().SerializeToString()
    (tmp_path / "a.onnx").write_bytes(data)
    (tmp_path / "b.onnx").write_bytes(data)
    assert load_workload(tmp_path / "a.onnx").hash == load_workload(tmp_path / "b.onnx").hash
