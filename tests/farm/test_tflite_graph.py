"""TFLite import: the graph IR of schema-built .tflite files, with hand-computed cost counts."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")

from farm.errors import ModelError  # noqa: E402
from farm.formats.tflite import graph_from_tflite, load_tflite_graph  # noqa: E402
from farm.formats.tflite_builder import TfliteBuilder, conv_model, dwconv_model, fc_model, fc_model_int8  # noqa: E402
from farm.ir.graph import Graph  # noqa: E402


def test_conv_then_add():
    g = graph_from_tflite(conv_model(size=16, cin=3, cout=8), source="models/c.tflite")
    assert (g.name, g.source_format) == ("c", "tflite")
    assert [(t.name, t.shape, t.dtype) for t in g.inputs] == [("x", (1, 16, 16, 3), "float32")]
    assert [(t.name, t.shape) for t in g.outputs] == [("y", (1, 16, 16, 8))]
    conv, add = g.nodes
    assert (conv.op, add.op) == ("CONV_2D", "ADD") and g.op_counts() == {"CONV_2D": 1, "ADD": 1}
    assert [t.shape for t in conv.inputs] == [(1, 16, 16, 3), (8, 3, 3, 3), (8,)]
    assert conv.weights == ("w", "b") and add.weights == ()
    assert conv.macs == 16 * 16 * 8 * (3 * 3 * 3) == 55_296 and add.macs == 0
    assert conv.params == 8 * 27 + 8 == 224 and add.params == 0
    # float32: x 768 + w 216 + b 8 + out 2048 elements; ADD reads its input twice.
    assert conv.bytes_moved == 4 * (768 + 216 + 8 + 2048) and add.bytes_moved == 4 * 3 * 2048
    assert conv.attrs["padding"] == "SAME" and conv.attrs["fused_activation_function"] == "RELU"
    assert (conv.attrs["stride_h"], conv.attrs["stride_w"], conv.attrs["dilation_h_factor"]) == (1, 1, 1)
    assert (g.macs, g.params) == (55_296, 224)


def test_conv_macs_scale_with_kernel_and_channels():
    conv = graph_from_tflite(conv_model(size=10, cin=4, cout=6, kernel=5)).nodes[0]
    assert conv.macs == 10 * 10 * 6 * 5 * 5 * 4 and conv.params == 6 * 100 + 6


def test_depthwise_conv():
    (dw,) = graph_from_tflite(dwconv_model(size=16, channels=8, kernel=3, stride=2)).nodes
    assert dw.op == "DEPTHWISE_CONV_2D" and dw.outputs[0].shape == (1, 8, 8, 8)
    assert dw.macs == 8 * 8 * 8 * 9 == 4608 and dw.params == 8 * 9 + 8 == 80
    assert dw.attrs["stride_w"] == 2 and dw.attrs["fused_activation_function"] == "RELU6"


def test_fully_connected():
    g = graph_from_tflite(fc_model(64, 32))
    (fc,) = g.nodes
    assert fc.op == "FULLY_CONNECTED" and fc.weights == ("w", "b")
    assert fc.macs == 64 * 32 and fc.params == 64 * 32 + 32
    assert fc.bytes_moved == 4 * (64 + 64 * 32 + 32 + 32)
    assert [t.dtype for t in (*fc.inputs, *fc.outputs)] == ["float32"] * 4


def test_int8_fully_connected_dtypes():
    (q,) = graph_from_tflite(fc_model_int8(64, 16)).nodes
    assert [t.dtype for t in q.inputs] == ["int8", "int8", "int32"] and q.dtype == "int8"
    assert q.macs == 64 * 16 and q.params == 64 * 16 + 16
    assert q.bytes_moved == 64 + 64 * 16 + 4 * 16 + 16


def _batch_matmul(adj_x: bool) -> bytes:
    s = (b := TfliteBuilder()).schema
    x = b.tensor("x", (2, 5, 4) if adj_x else (2, 4, 5))
    w = b.tensor("w", (2, 5, 3), data=np.ones((2, 5, 3), np.float32))
    y = b.tensor("y", (2, 4, 3))
    opts = s.BatchMatMulOptionsT()
    opts.adjX = adj_x
    b.op(s.BuiltinOperator.BATCH_MATMUL, [x, w], [y], s.BuiltinOptions.BatchMatMulOptions, opts)
    return b.build([x], [y])


@pytest.mark.parametrize("adj_x", [False, True])
def test_batch_matmul(adj_x):
    (mm,) = graph_from_tflite(_batch_matmul(adj_x)).nodes
    assert mm.op == "BATCH_MATMUL" and mm.attrs["adj_x"] is adj_x
    assert mm.macs == 2 * 4 * 3 * 5 and mm.params == 30 and mm.weights == ("w",)


def test_op_codes_above_127_use_the_extended_field():
    s = (b := TfliteBuilder()).schema
    x = b.tensor("x", (1, 8))
    y = b.tensor("y", (1, 8))
    assert s.BuiltinOperator.GELU > 127
    b.op(s.BuiltinOperator.GELU, [x], [y])
    (gelu,) = graph_from_tflite(b.build([x], [y])).nodes
    assert (gelu.op, gelu.macs, gelu.params, gelu.bytes_moved) == ("GELU", 0, 0, 64)


def test_omitted_optional_input_is_skipped():
    s = (b := TfliteBuilder()).schema
    x = b.tensor("x", (1, 8))
    w = b.tensor("w", (4, 8), data=np.ones((4, 8), np.float32))
    y = b.tensor("y", (1, 4))
    b.op(s.BuiltinOperator.FULLY_CONNECTED, [x, w, -1], [y], s.BuiltinOptions.FullyConnectedOptions,
         s.FullyConnectedOptionsT())
    (fc,) = graph_from_tflite(b.build([x], [y])).nodes
    assert [t.name for t in fc.inputs] == ["x", "w"] and fc.macs == 32 and fc.params == 32


def test_graph_round_trips_through_json():
    g = graph_from_tflite(conv_model())
    assert Graph.from_dict(json.loads(json.dumps(g.to_dict()))) == g


def test_load_tflite_graph(tmp_path):
    p = tmp_path / "tiny.tflite"
    p.write_bytes(fc_model(8, 4))
    g = load_tflite_graph(p)
    assert g.name == "tiny" and g.macs == 32 and g.source_format == "tflite"
    with pytest.raises(ModelError, match="missing.tflite: model file not found"):
        load_tflite_graph(tmp_path / "missing.tflite")
    with pytest.raises(ModelError, match="is a directory"):
        load_tflite_graph(tmp_path)


@pytest.mark.parametrize("data", [b"", b"TFL3", b"\x00" * 64, b"hello, not a flatbuffer at all",
                                  fc_model()[:4] + b"ONNX" + fc_model()[8:]],
                         ids=["empty", "short", "zeros", "text", "wrong-identifier"])
def test_not_tflite_is_model_error(data):
    with pytest.raises(ModelError, match=r"^m\.tflite: not a TFLite file"):
        graph_from_tflite(data, source="m.tflite")


@pytest.mark.parametrize("build", [fc_model, conv_model, dwconv_model, fc_model_int8])
def test_every_truncation_is_one_line_model_error(build):
    data = build(4, 2) if build is not conv_model else conv_model(4, 2, 2)
    for n in range(len(data)):
        with pytest.raises(ModelError) as info:
            graph_from_tflite(data[:n], source="m.tflite")
        msg = str(info.value)
        assert msg.startswith("m.tflite: ") and "\n" not in msg, (n, msg)


def test_missing_litert_names_the_extra(monkeypatch):
    data = fc_model()
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    with pytest.raises(ModelError, match=r"m\.tflite: reading \.tflite needs ai-edge-litert .*hwfarm\[litert\]"):
        graph_from_tflite(data, source="m.tflite")
