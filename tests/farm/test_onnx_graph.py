"""ONNX → IR on the kinds of files people have: exact counts, legacy IR, constant subgraphs,
dynamic shapes, unsorted graphs, local functions, external data, truncated files."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from farm.errors import ModelError
from farm.formats.onnx import graph_from_onnx, load_onnx_graph, parse_onnx
from farm.ir.graph import Graph
from farm.workload import load_workload
from farm.zoo.onnx_models import (
    DEMO_MODELS,
    constant_weights_model,
    dynamic_batch_model,
    legacy_ir3_model,
    qlinear_model,
)

F = TensorProto.FLOAT


def model(nodes, inputs, outputs, inits=(), *, opset=17, ir=None, functions=()):
    g = helper.make_graph(nodes, "t", inputs, outputs, initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], functions=list(functions))
    if ir is not None:
        m.ir_version = ir
    return m


def vi(name, shape, elem=F):
    return helper.make_tensor_value_info(name, elem, shape)


def w(name, shape, dtype=np.float32):
    return numpy_helper.from_array(np.random.default_rng(0).standard_normal(shape).astype(dtype), name)


def runs_in_ort(m) -> list[np.ndarray]:
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {i.name: np.ones(i.shape, np.float32) for i in sess.get_inputs()}
    return sess.run(None, feeds)


# ------------------------------------------------------------------------------ counts


def test_conv_counts():
    m = model([helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], name="c")],
              [vi("x", [1, 3, 8, 8])], [vi("y", [1, 4, 8, 8])], [w("w", (4, 3, 3, 3)), w("b", (4,))])
    (n,) = graph_from_onnx(m).nodes
    assert n.macs == 8 * 8 * 4 * 3 * 9 and n.params == 4 * 3 * 9 + 4
    assert n.weights == ("w", "b") and n.outputs[0].shape == (1, 4, 8, 8) and n.dtype == "float32"
    assert n.bytes_moved == 4 * (3 * 64 + 4 * 27 + 4 + 4 * 64)
    assert n.attrs == {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}


def test_depthwise_and_strided_conv():
    m = model([helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                                group=16)],
              [vi("x", [1, 16, 32, 32])], [vi("y", None)], [w("w", (16, 1, 3, 3))])
    (n,) = graph_from_onnx(m).nodes
    assert n.outputs[0].shape == (1, 16, 16, 16)
    assert n.macs == 16 * 16 * 16 * 9 and n.params == 16 * 9 and n.name == "Conv_0"


def test_gemm_transposed_and_batched_matmul():
    m = model([helper.make_node("Gemm", ["x", "w"], ["h"], transB=1),
               helper.make_node("Reshape", ["h", "s"], ["r"]),
               helper.make_node("MatMul", ["r", "r2"], ["y"])],
              [vi("x", [2, 10]), vi("r2", [2, 1, 4, 5])], [vi("y", None)],
              [w("w", (24, 10)), numpy_helper.from_array(np.array([2, 2, 3, 4], np.int64), "s")])
    g = graph_from_onnx(m)
    gemm, reshape, mm = g.nodes
    assert gemm.macs == 2 * 24 * 10 and gemm.params == 240
    assert reshape.params == 4 and reshape.macs == 0  # the shape tensor is a (tiny) constant input
    assert mm.outputs[0].shape == (2, 2, 3, 5) and mm.macs == 2 * 2 * 3 * 5 * 4  # batch 2x2, M=3 N=5 K=4
    assert g.macs == gemm.macs + mm.macs


def test_gemm_trans_a_with_bias():
    # A is stored [K=6, M=3]; B [K=6, N=5]; C broadcast [5].
    m = model([helper.make_node("Gemm", ["a", "b", "c"], ["y"], transA=1)], [vi("a", [6, 3])], [vi("y", None)],
              [w("b", (6, 5)), w("c", (5,))])
    (n,) = graph_from_onnx(m).nodes
    assert n.outputs[0].shape == (3, 5) and n.macs == 3 * 5 * 6 and n.params == 30 + 5
    runs_in_ort(m)


@pytest.mark.parametrize("group, macs", [(1, 4 * 5 * 5 * 3 * 2 * 2), (2, 4 * 5 * 5 * 1 * 2 * 2)])
def test_conv_transpose(group, macs):
    # x [1,4,5,5], w [Cin=4, Cout/group, 2, 2], stride 2 -> [1, Cout, 10, 10]; each input element
    # meets Cout/group * k*k weights.
    cout_g = 3 if group == 1 else 1
    m = model([helper.make_node("ConvTranspose", ["x", "w"], ["y"], kernel_shape=[2, 2], strides=[2, 2], group=group)],
              [vi("x", [1, 4, 5, 5])], [vi("y", None)], [w("w", (4, cout_g, 2, 2))])
    (n,) = graph_from_onnx(m).nodes
    assert n.outputs[0].shape == (1, cout_g * group, 10, 10) and n.macs == macs
    runs_in_ort(m)


def test_integer_and_recurrent_ops():
    u8 = TensorProto.UINT8
    m = model([helper.make_node("ConvInteger", ["x", "w"], ["c"], kernel_shape=[3, 3]),
               helper.make_node("MatMulInteger", ["a", "b"], ["mm"])],
              [vi("x", [1, 2, 5, 5], u8), vi("a", [3, 4], u8)], [vi("c", None, TensorProto.INT32),
                                                                 vi("mm", None, TensorProto.INT32)],
              [numpy_helper.from_array(np.ones((6, 2, 3, 3), np.uint8), "w"),
               numpy_helper.from_array(np.ones((4, 7), np.uint8), "b")])
    conv, mm = graph_from_onnx(m).nodes
    assert conv.macs == 3 * 3 * 6 * 2 * 9 and conv.dtype == "int32" and conv.inputs[1].dtype == "uint8"
    assert mm.macs == 3 * 7 * 4 and mm.params == 28 and mm.bytes_moved == 12 + 28 + 4 * 21

    # LSTM: seq 5, batch 1, input 4, hidden 3: per step 4H*I + 4H*H MACs.
    lstm = model([helper.make_node("LSTM", ["x", "W", "R"], ["y"], hidden_size=3)], [vi("x", [5, 1, 4])],
                 [vi("y", None)], [w("W", (1, 12, 4)), w("R", (1, 12, 3))])
    (n,) = graph_from_onnx(lstm).nodes
    assert n.outputs[0].shape == (5, 1, 1, 3) and n.macs == 5 * (48 + 36) and n.params == 84
    runs_in_ort(lstm)


def test_every_listed_op_imports_and_runs():
    """One graph with the ops of real CNN exports; only Conv-like and MatMul-like ops have MACs."""
    i64 = np.int64
    inits = [
        w("conv.w", (8, 3, 3, 3)),  # Conv without bias
        *(numpy_helper.from_array(np.full(8, v, np.float32), f"bn.{k}") for k, v in
          (("scale", 1.0), ("bias", 0.0), ("mean", 0.0), ("var", 1.0))),
        numpy_helper.from_array(np.array(0.0, np.float32), "lo"), numpy_helper.from_array(np.array(6.0, np.float32), "hi"),
        w("chan", (1, 8, 1, 1)),  # broadcast Mul
        numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
        w("up.w", (8, 4, 2, 2)),
        numpy_helper.from_array(np.array([1, 16, 64], i64), "seq_shape"),
        w("proj", (64, 16)),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "conv.w"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("BatchNormalization", ["c", "bn.scale", "bn.bias", "bn.mean", "bn.var"], ["bn"], epsilon=1e-3),
        helper.make_node("Clip", ["bn", "lo", "hi"], ["clip"]),
        helper.make_node("HardSwish", ["clip"], ["hs"]),
        helper.make_node("Sigmoid", ["hs"], ["sig"]),
        helper.make_node("Mul", ["sig", "chan"], ["mul"]),
        helper.make_node("Add", ["mul", "hs"], ["add"]),
        helper.make_node("MaxPool", ["add"], ["mp"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("AveragePool", ["add"], ["ap"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Concat", ["mp", "ap"], ["cat"], axis=1),
        helper.make_node("Constant", [], ["roi"], value=numpy_helper.from_array(np.zeros(0, np.float32))),
        helper.make_node("Resize", ["cat", "roi", "scales"], ["rs"], mode="nearest"),
        helper.make_node("GlobalAveragePool", ["rs"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"]),
        helper.make_node("ConvTranspose", ["add", "up.w"], ["up"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Transpose", ["up"], ["t"], perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", ["t", "seq_shape"], ["seq"]),
        helper.make_node("MatMul", ["seq", "proj"], ["mm"]),
        helper.make_node("Softmax", ["mm"], ["y"], axis=-1),
    ]
    m = model(nodes, [vi("x", [1, 3, 16, 16])], [vi("y", None), vi("flat", None)], inits, opset=17)
    y, flat = runs_in_ort(m)
    g = graph_from_onnx(m)
    assert [t.shape for t in g.outputs] == [y.shape, flat.shape] == [(1, 16, 16), (1, 16)]
    by_op = {n.op: n for n in g.nodes}
    assert "Constant" not in by_op and by_op["Resize"].outputs[0].shape == (1, 16, 8, 8)
    assert by_op["Resize"].weights == ("roi", "scales")  # empty roi: a 0-element constant
    assert by_op["Conv"].macs == 8 * 8 * 8 * 3 * 9
    assert by_op["ConvTranspose"].macs == 8 * 8 * 8 * 4 * 2 * 2 and by_op["ConvTranspose"].outputs[0].shape == (1, 4, 16, 16)
    assert by_op["MatMul"].macs == 16 * 16 * 64
    assert g.macs == by_op["Conv"].macs + by_op["ConvTranspose"].macs + by_op["MatMul"].macs
    assert by_op["BatchNormalization"].params == 32 and by_op["Clip"].params == 2 and by_op["Mul"].params == 8
    assert by_op["MaxPool"].outputs[0].shape == by_op["AveragePool"].outputs[0].shape == (1, 8, 4, 4)
    assert by_op["BatchNormalization"].attrs["epsilon"] == pytest.approx(1e-3)
    assert json.loads(json.dumps(g.to_dict())) == g.to_dict()  # attrs are plain JSON values


@pytest.mark.parametrize("opset", [7, 8, 9, 10, 11, 13, 17, 21, onnx.defs.onnx_opset_version()])
def test_opset_variety(opset):
    m = model([helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[1, 1]), helper.make_node("Relu", ["c"], ["r"]),
               helper.make_node("GlobalAveragePool", ["r"], ["p"]), helper.make_node("Flatten", ["p"], ["y"])],
              [vi("x", [1, 3, 4, 4])], [vi("y", None)], [w("w", (5, 3, 1, 1))], opset=opset)
    g = graph_from_onnx(m)
    assert [n.op for n in g.nodes] == ["Conv", "Relu", "GlobalAveragePool", "Flatten"]
    assert g.outputs[0].shape == (1, 5) and g.macs == 16 * 5 * 3
    if opset <= 21:
        assert runs_in_ort(m)[0].shape == (1, 5)


# --------------------------------------------------------------------- real-world quirks


def test_legacy_ir3_initializers_listed_as_inputs():
    m = model([helper.make_node("MatMul", ["x", "w"], ["y"])], [vi("x", [1, 8]), vi("w", [8, 4])], [vi("y", [1, 4])],
              [w("w", (8, 4))], opset=8, ir=3)
    runs_in_ort(m)
    g = graph_from_onnx(m)
    assert [t.name for t in g.inputs] == ["x"]
    assert g.params == 32 and g.macs == 32 and g.nodes[0].weights == ("w",)


def test_legacy_ir3_zoo_model():
    m = legacy_ir3_model()
    assert m.ir_version == 3 and {i.name for i in m.graph.initializer} < {i.name for i in m.graph.input}
    g = graph_from_onnx(m, source="old/legacy.onnx")
    assert g.name == "legacy-ir3" and [t.name for t in g.inputs] == ["input"]
    assert [n.name for n in g.nodes] == ["Conv_0", "BatchNormalization_1", "Relu_2", "MaxPool_3", "Reshape_4",
                                         "Gemm_5", "Softmax_6"]
    conv, bn, gemm = g.nodes[0], g.nodes[1], g.nodes[5]
    assert conv.macs == 16 * 16 * 8 * 3 * 9 and conv.params == 8 * 27 + 8
    assert bn.params == 4 * 8 and bn.attrs["spatial"] == 1
    assert gemm.inputs[0].shape == (1, 512) and gemm.macs == 512 * 10 and gemm.params == 5120 + 10
    assert g.macs == 55296 + 5120 and g.params == 224 + 32 + 2 + 5130


def test_weights_from_constant_subgraphs_are_params():
    # conv weight = Reshape(ConstantOfShape([36]), [4,1,3,3]); bias from a Constant node
    nodes = [
        helper.make_node("Constant", [], ["wshape_flat"], value=numpy_helper.from_array(np.array([36], np.int64))),
        helper.make_node("ConstantOfShape", ["wshape_flat"], ["wflat"],
                         value=numpy_helper.from_array(np.array([0.1], np.float32))),
        helper.make_node("Constant", [], ["wshape"], value=numpy_helper.from_array(np.array([4, 1, 3, 3], np.int64))),
        helper.make_node("Reshape", ["wflat", "wshape"], ["wt"]),
        helper.make_node("Constant", [], ["b"], value=numpy_helper.from_array(np.zeros(4, np.float32))),
        helper.make_node("Conv", ["x", "wt", "b"], ["y"], kernel_shape=[3, 3], name="conv"),
    ]
    m = model(nodes, [vi("x", [1, 1, 6, 6])], [vi("y", None)])
    runs_in_ort(m)
    g = graph_from_onnx(m)
    (conv,) = g.nodes  # the constant subgraph is folded away
    assert conv.op == "Conv" and conv.params == 36 + 4 and set(conv.weights) == {"wt", "b"}
    assert conv.macs == 4 * 4 * 4 * 9 and conv.bytes_moved == 4 * (36 + 36 + 4 + 64)


def test_constant_weights_zoo_model_and_traced_flatten():
    g = graph_from_onnx(constant_weights_model())
    # Constant/ConstantOfShape/Reshape weights and the Shape->Gather->Unsqueeze->Concat chain fold away.
    assert [(n.name, n.op) for n in g.nodes] == [("conv", "Conv"), ("relu", "Relu"), ("scale_mul", "Mul"),
                                                 ("gap", "GlobalAveragePool"), ("flatten", "Reshape")]
    conv, _, mul, _, flat = g.nodes
    assert conv.weights == ("conv.w", "conv.b") and conv.params == 72 + 8 and conv.macs == 8 * 8 * 8 * 9
    assert mul.weights == ("scale",) and mul.params == 1 and mul.macs == 0
    assert flat.weights == ("flat_shape",) and flat.outputs[0].shape == (1, 8)
    assert g.params == 80 + 1 + 2 and g.inputs[0].name == "input"


def test_random_generators_are_not_folded():
    m = model([helper.make_node("RandomNormalLike", ["c"], ["n"], seed=1.0), helper.make_node("Add", ["x", "n"], ["y"])],
              [vi("x", [2, 3])], [vi("y", None)], [w("c", (2, 3))])
    assert [n.op for n in graph_from_onnx(m).nodes] == ["RandomNormalLike", "Add"]


def test_quantized_conv_counts_int8():
    q = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"], kernel_shape=[3, 3])
    inits = [numpy_helper.from_array(np.array(0.1, np.float32), "xs"), numpy_helper.from_array(np.array(0, np.int8), "xz"),
             numpy_helper.from_array(np.ones((8, 4, 3, 3), np.int8), "w"),
             numpy_helper.from_array(np.array(0.1, np.float32), "ws"), numpy_helper.from_array(np.array(0, np.int8), "wz"),
             numpy_helper.from_array(np.array(0.1, np.float32), "ys"), numpy_helper.from_array(np.array(0, np.int8), "yz")]
    m = model([q], [vi("x", [1, 4, 10, 10], TensorProto.INT8)], [vi("y", None, TensorProto.INT8)], inits)
    (n,) = graph_from_onnx(m).nodes
    assert n.dtype == "int8" and n.macs == 8 * 8 * 8 * 4 * 9
    assert n.inputs[3].dtype == "int8" and n.params == 8 * 4 * 9 + 6
    assert n.bytes_moved == 400 + 288 + 3 * 4 + 3 * 1 + 8 * 64  # int8 activations and weights: 1 byte each


def test_qlinear_zoo_model():
    g = graph_from_onnx(qlinear_model())
    assert [n.op for n in g.nodes] == ["QuantizeLinear", "QLinearConv", "Reshape", "QLinearMatMul", "DequantizeLinear"]
    quant, qconv, _, qfc, deq = g.nodes
    assert quant.dtype == qconv.dtype == qfc.dtype == "int8" and deq.dtype == "float32"
    assert qconv.macs == 16 * 16 * 8 * 3 * 9 and qfc.macs == 2048 * 10
    assert qconv.inputs[3].dtype == "int8" and qconv.inputs[8].dtype == "int32"
    assert qconv.params == 8 * 27 + 8 + 6 and qfc.params == 20480 + 6


def test_unsorted_nodes_are_sorted_stably():
    nodes = [helper.make_node("Relu", ["a"], ["y"]), helper.make_node("Sigmoid", ["x"], ["a"]),
             helper.make_node("Neg", ["x"], ["b"])]
    m = model(nodes, [vi("x", [1, 2])], [vi("y", None), vi("b", None)])
    before = m.SerializeToString()
    runs_in_ort(m)
    g = graph_from_onnx(m)
    assert [n.name for n in g.nodes] == ["Sigmoid_1", "Relu_0", "Neg_2"]  # names keep the file's index
    assert g.outputs[0].shape == (1, 2) and m.SerializeToString() == before  # the input model is untouched


def test_dangling_input_is_a_clear_error():
    m = model([helper.make_node("Relu", ["ghost"], ["a"], name="r"), helper.make_node("Relu", ["x"], ["y"])],
              [vi("x", [1, 2])], [vi("y", None)])
    with pytest.raises(ModelError, match="node 'r' \\(Relu\\) reads tensor 'ghost', which no node produces"):
        graph_from_onnx(m, source="m.onnx")


def test_local_functions_are_inlined():
    body = [helper.make_node("MatMul", ["inp", "wt"], ["h"]), helper.make_node("Relu", ["h"], ["out"])]
    fn = helper.make_function("custom", "Dense", ["inp", "wt"], ["out"], body,
                              opset_imports=[helper.make_opsetid("", 17)])
    m = model([helper.make_node("Dense", ["x", "w"], ["y"], domain="custom", name="dense")], [vi("x", [2, 8])],
              [vi("y", None)], [w("w", (8, 4))], functions=[fn])
    m.opset_import.append(helper.make_opsetid("custom", 1))
    g = graph_from_onnx(m)
    assert [n.op for n in g.nodes] == ["MatMul", "Relu"]
    assert g.macs == 2 * 4 * 8 and g.params == 32 and g.outputs[0].shape == (2, 4)


def test_graph_name_falls_back_to_the_file_stem(tmp_path):
    m = model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", [1, 2])], [vi("y", None)])
    m.graph.name = ""
    onnx.save(m, tmp_path / "tiny_relu.onnx")
    g = load_onnx_graph(tmp_path / "tiny_relu.onnx")
    assert g.name == "tiny_relu" and g.source_format == "onnx" and g.nodes[0].name == "Relu_0"


# ------------------------------------------------------------------ static shapes required


def test_dynamic_batch_is_a_clear_error():
    m = model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", ["N", 3])], [vi("y", ["N", 3])])
    with pytest.raises(ModelError, match=r"m\.onnx: input 'x' has a dynamic shape \['N', 3\]"):
        graph_from_onnx(m, source="m.onnx")


def test_dynamic_batch_zoo_model_names_the_input():
    with pytest.raises(ModelError, match=r"input 'input' has a dynamic shape \['N', 3, 16, 16\]; export") as exc:
        graph_from_onnx(dynamic_batch_model(), source="dyn.onnx")
    assert "\n" not in str(exc.value) and str(exc.value).startswith("dyn.onnx: ")


def test_unknown_input_dim_and_missing_shape():
    m = model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", [None, 3])], [vi("y", None)])
    with pytest.raises(ModelError, match=r"input 'x' has a dynamic shape \['\?', 3\]"):
        graph_from_onnx(m)
    m = model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", None)], [vi("y", None)])
    with pytest.raises(ModelError, match="input 'x' has no declared shape"):
        graph_from_onnx(m)


def test_unknown_intermediate_shape_names_the_node():
    # Reshape to a shape that comes from a graph input: not inferable statically.
    m = model([helper.make_node("Reshape", ["x", "s"], ["r"], name="reshape_dyn"), helper.make_node("Relu", ["r"], ["y"])],
              [vi("x", [2, 6]), vi("s", [2], TensorProto.INT64)], [vi("y", None)])
    with pytest.raises(ModelError, match=r"^m\.onnx: node 'reshape_dyn' \(Reshape\): shape of tensor 'r' is unknown; "
                                         "export with static input shapes$"):
        graph_from_onnx(m, source="m.onnx")


def test_custom_op_without_shape_inference():
    m = model([helper.make_node("FancyOp", ["x"], ["y"], domain="com.example", name="fancy")], [vi("x", [1, 4])],
              [vi("y", None)])
    m.opset_import.append(helper.make_opsetid("com.example", 1))
    with pytest.raises(ModelError, match="node 'fancy' \\(FancyOp\\): shape of tensor 'y' is unknown; "
                                         "ONNX has no shape inference for custom op com.example.FancyOp"):
        graph_from_onnx(m)
    # With the output's shape declared, it imports; the domain is kept in attrs.
    m.graph.value_info.append(vi("y", [1, 4]))
    (n,) = graph_from_onnx(m).nodes
    assert n.op == "FancyOp" and n.attrs == {"domain": "com.example"} and n.macs == 0


# --------------------------------------------------------------------------- round trip


def test_graph_json_round_trip():
    g = graph_from_onnx(DEMO_MODELS["resnet8-cifar"]())
    back = Graph.from_dict(json.loads(json.dumps(g.to_dict())))
    assert back == g and back.macs == g.macs and back.params == g.params and back.bytes_moved == g.bytes_moved


# -------------------------------------------------------------------------------- files


def workload_graph(p):
    return load_workload(p).graph


@pytest.mark.parametrize("load", [load_onnx_graph, workload_graph])
@pytest.mark.parametrize("content, match", [
    (None, "model file not found"),
    (b"", "model file is empty"),
    (b"\x0a\xff\xff\xff\xff\x0f garbage", "not a valid ONNX file"),
])
def test_unreadable_files(tmp_path, load, content, match):
    p = tmp_path / "bad.onnx"
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(ModelError, match=match) as exc:
        load(p)
    assert "bad.onnx" in str(exc.value) and "\n" not in str(exc.value)


def test_directory_and_tflite_bytes(tmp_path):
    with pytest.raises(ModelError, match="is a directory"):
        load_onnx_graph(tmp_path)
    (tmp_path / "m.onnx").write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(32))
    with pytest.raises(ModelError, match="m.onnx: this is a TFLite model, not ONNX"):
        load_onnx_graph(tmp_path / "m.onnx")


@pytest.mark.parametrize("load", [load_onnx_graph, workload_graph])
def test_truncated_file(tmp_path, load):
    full = DEMO_MODELS["resnet8-cifar"]().SerializeToString()
    p = tmp_path / "cut.onnx"
    for frac in (0.01, 0.1, 0.5, 0.9, 0.999):
        p.write_bytes(full[: int(len(full) * frac)])
        with pytest.raises(ModelError, match="cut.onnx: ") as exc:
            load(p)
        assert "\n" not in str(exc.value)


def test_file_cut_right_after_the_graph(tmp_path):
    # Cut exactly at a field boundary, so protobuf decodes it: the opset list is missing.
    m = DEMO_MODELS["mlp"]()
    cut = m.SerializeToString()[: -len(m.opset_import[0].SerializeToString()) - 2]
    assert onnx.load_model_from_string(cut).graph.node  # decodes fine...
    with pytest.raises(ModelError, match="no opset_import"):  # ...but is not a whole model
        parse_onnx(cut, source="cut.onnx")


def test_any_suffix_loads(tmp_path):
    onnx.save(DEMO_MODELS["mlp"](), tmp_path / "model.bin")
    g = load_onnx_graph(tmp_path / "model.bin")
    assert g.macs == 784 * 256 + 256 * 10


def test_external_data(tmp_path):
    # Every tensor in an external file, the Reshape's shape included: shape inference needs
    # the shape's values, which are read in; the big weights are not needed.
    m = model([helper.make_node("Reshape", ["x", "s"], ["r"]), helper.make_node("MatMul", ["r", "w"], ["y"])],
              [vi("x", [2, 3, 4])], [vi("y", None)],
              [numpy_helper.from_array(np.array([6, 4], np.int64), "s"), w("w", (4, 256))])
    onnx.save(m, tmp_path / "ext.onnx", save_as_external_data=True, location="ext.data", size_threshold=0)
    g = load_onnx_graph(tmp_path / "ext.onnx")
    assert g.nodes[1].macs == 6 * 256 * 4 and g.nodes[1].params == 1024 and g.outputs[0].shape == (6, 256)
    (tmp_path / "ext.data").unlink()
    with pytest.raises(ModelError, match="ext.onnx: cannot read external data of tensor 's'"):
        load_onnx_graph(tmp_path / "ext.onnx")


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
