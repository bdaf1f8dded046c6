"""The ONNX zoo: demo models run in onnxruntime, are fast, deterministic, and have the sizes
their papers report; the quirky test models run too (the dynamic one at any batch)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from farm.errors import InputError, ModelError
from farm.formats.onnx import graph_from_onnx, load_onnx_graph
from farm.zoo.onnx_models import (
    DEMO_MODELS,
    OnnxBuilder,
    constant_weights_model,
    dynamic_batch_model,
    export_demo_model,
    legacy_ir3_model,
    mobilenet_v1,
    qlinear_model,
)


def session(m: onnx.ModelProto) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def feeds(sess: ort.InferenceSession, batch: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {i.name: rng.standard_normal([d if isinstance(d, int) else batch for d in i.shape]).astype(np.float32)
            for i in sess.get_inputs()}


# MobileNetV1 (Howard et al. 2017, Table 1) at width 0.25, 128×128: channels max(8, c/4).
# Each block: (output resolution, Cin, Cout) of a depthwise 3×3 then a pointwise 1×1.
MBV1_BLOCKS = [(64, 8, 16), (32, 16, 32), (32, 32, 32), (16, 32, 64), (16, 64, 64), (8, 64, 128)] + \
    [(8, 128, 128)] * 5 + [(4, 128, 256), (4, 256, 256)]
MBV1_MACS = (64 * 64 * 8 * 3 * 9  # stem: 3→8, stride 2
             + sum(r * r * cin * 9 + r * r * cin * cout for r, cin, cout in MBV1_BLOCKS)
             + 256 * 1000)  # classifier
MBV1_PARAMS = (8 * 27 + 4 * 8  # stem conv + its BN (4 tensors of C each)
               + sum(cin * 9 + 4 * cin + cin * cout + 4 * cout for _, cin, cout in MBV1_BLOCKS)
               + 256 * 1000 + 1000)

# ResNet-8 (MLPerf Tiny): stem 3→16 at 32², stages (out res, Cin, Cout) with two 3×3 convs
# each and a 1×1 projection shortcut where the shape changes; every conv has a BN.
R8_STAGES = [(32, 16, 16), (16, 16, 32), (8, 32, 64)]
R8_MACS = (32 * 32 * 16 * 27
           + sum(r * r * cout * (cin * 9 + cout * 9 + (cin if cin != cout else 0)) for r, cin, cout in R8_STAGES)
           + 64 * 10)
R8_PARAMS = (16 * 27 + 4 * 16
             + sum(cout * cin * 9 + cout * cout * 9 + 8 * cout + ((cin * cout + 4 * cout) if cin != cout else 0)
                   for _, cin, cout in R8_STAGES)
             + 64 * 10 + 10)

EXPECTED = {
    "mlp": (784 * 256 + 256 * 10, 784 * 256 + 256 + 256 * 10 + 10),
    "resnet8-cifar": (R8_MACS, R8_PARAMS),
    "mobilenet-v1-0.25-128": (MBV1_MACS, MBV1_PARAMS),
}
OUTPUT_SHAPES = {"mlp": (1, 10), "resnet8-cifar": (1, 10), "mobilenet-v1-0.25-128": (1, 1000)}


def test_derivations_match_the_papers():
    # MobileNetV1-0.25-128: 14 M mult-adds, 0.47 M parameters (Howard et al. 2017, Table 7;
    # our params add BN's running statistics). MLPerf Tiny ResNet-8: 12.5 M MACs, 78 k params.
    assert MBV1_MACS == 13_570_048 and 0.46e6 < MBV1_PARAMS < 0.48e6
    assert R8_MACS == 12_501_632 and 77e3 < R8_PARAMS < 80e3


@pytest.mark.parametrize("name", sorted(DEMO_MODELS))
def test_demo_model_runs_and_has_the_derived_size(name):
    m = DEMO_MODELS[name]()
    sess = session(m)
    x = feeds(sess)
    (y,) = sess.run(None, x)
    assert y.shape == OUTPUT_SHAPES[name] and np.isfinite(y).all()
    g = graph_from_onnx(m)
    assert (g.macs, g.params) == EXPECTED[name]
    assert g.name == name and [t.shape for t in g.outputs] == [OUTPUT_SHAPES[name]]
    assert "BatchNormalization" in g.op_counts() or name == "mlp"  # unfused, as exporters write it


def test_mobilenet_op_mix():
    ops = graph_from_onnx(DEMO_MODELS["mobilenet-v1-0.25-128"]()).op_counts()
    assert ops == {"Conv": 27, "BatchNormalization": 27, "Relu": 27, "GlobalAveragePool": 1, "Flatten": 1, "Gemm": 1}


def test_builders_are_deterministic():
    for build in (*DEMO_MODELS.values(), legacy_ir3_model, constant_weights_model, dynamic_batch_model, qlinear_model):
        assert build().SerializeToString() == build().SerializeToString()
    a, b = mobilenet_v1(seed=0), mobilenet_v1(seed=1)
    assert a.graph.initializer[0].raw_data != b.graph.initializer[0].raw_data
    assert graph_from_onnx(a) == graph_from_onnx(b)  # same architecture, other weights


def test_export_demo_model(tmp_path):
    path = export_demo_model("resnet8-cifar", tmp_path / "r8.onnx")
    assert path == tmp_path / "r8.onnx"
    assert (load_onnx_graph(path).macs, load_onnx_graph(path).params) == EXPECTED["resnet8-cifar"]
    with pytest.raises(InputError, match="unknown demo model 'resnet9'; known: mlp, resnet8-cifar"):
        export_demo_model("resnet9", tmp_path / "x.onnx")


def test_builder_pools_match_shape_inference():
    b = OnnxBuilder((1, 4, 15, 15), seed=3)
    x = b.conv("input", 8, 3, bn=False, act="hardswish")  # with bias
    mp = b.maxpool(x, 3, 2, pad=1)
    ap = b.avgpool(b.relu(mp), 2)
    m = b.build("pools", b.softmax(b.flatten(ap)), opset=14)
    (y,) = session(m).run(None, feeds(session(m)))
    g = graph_from_onnx(m)
    assert all(n.outputs[0].shape == b.shapes[n.outputs[0].name] for n in g.nodes)
    assert b.shapes[mp] == (1, 8, 8, 8) and b.shapes[ap] == (1, 8, 4, 4) and y.shape == (1, 128)
    conv = g.nodes[0]
    assert conv.params == 8 * 4 * 9 + 8 and conv.macs == 15 * 15 * 8 * 4 * 9
    assert [n.op for n in g.nodes] == ["Conv", "HardSwish", "MaxPool", "Relu", "AveragePool", "Flatten", "Softmax"]


def test_dwconv_is_a_depthwise_group_conv():
    b = OnnxBuilder((1, 6, 8, 8))
    m = b.build("dw", b.dwconv("input", 3, 2, bn=False, act=None))
    (n,) = graph_from_onnx(m).nodes
    assert n.attrs["group"] == 6 and n.inputs[1].shape == (6, 1, 3, 3) and n.macs == 4 * 4 * 6 * 9


@pytest.mark.parametrize("build, out_shape", [
    (legacy_ir3_model, (1, 10)), (constant_weights_model, (1, 8)), (qlinear_model, (1, 10)),
])
def test_quirky_models_run_in_onnxruntime(build, out_shape):
    m = build()
    sess = session(m)
    assert [i.name for i in sess.get_inputs()] == ["input"]
    (y,) = sess.run(None, feeds(sess))
    assert y.shape == out_shape and np.isfinite(y).all()
    assert [t.shape for t in graph_from_onnx(m).outputs] == [out_shape]


def test_legacy_model_is_really_legacy():
    m = legacy_ir3_model()
    assert m.ir_version == 3 and [(o.domain, o.version) for o in m.opset_import] == [("", 8)]
    assert {t.name for t in m.graph.initializer} <= {i.name for i in m.graph.input}
    assert not any(n.name for n in m.graph.node)


def test_constant_weights_model_has_no_initializers():
    m = constant_weights_model()
    assert not m.graph.initializer and {"Constant", "ConstantOfShape", "Shape"} <= {n.op_type for n in m.graph.node}


def test_dynamic_batch_model_runs_at_any_batch_but_is_rejected():
    m = dynamic_batch_model()
    sess = session(m)
    for batch in (1, 3):
        (y,) = sess.run(None, feeds(sess, batch))
        assert y.shape == (batch, 10)
    with pytest.raises(ModelError, match="input 'input' has a dynamic shape"):
        graph_from_onnx(m)


def test_qlinear_model_is_int8():
    m = qlinear_model()
    w = {t.name: t for t in m.graph.initializer}
    assert w["conv.w"].data_type == w["fc.w"].data_type == onnx.TensorProto.INT8
    y = session(m).run(None, feeds(session(m)))[0]
    assert len(np.unique(np.round(y / 0.1))) > 1  # quantized to the output scale, not all zero
