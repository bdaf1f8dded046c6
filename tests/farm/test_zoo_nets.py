"""Reference networks built as graph IR: their MACs and parameters equal the published
figures, they export to ONNX that onnxruntime runs with the right output shape, the IR →
ONNX → IR round trip keeps every count, and ``hwfarm zoo list/export`` serve them by name."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from farm.errors import InputError
from farm.formats.onnx import graph_from_onnx
from farm.formats.onnx_export import graph_to_onnx
from farm.ir.graph import Graph
from farm.zoo.nets import NETS, build_net, match_published, parse_net_options

from ..conftest import run_cli


def trainable(g: Graph) -> int:
    """Parameters as frameworks count trainable ones: conv and dense weights and biases, and
    BN's scale and shift (our ``params`` adds BN's running mean/var and Clip's bounds)."""
    return (sum(n.params for n in g.nodes if n.op in ("Conv", "Gemm"))
            + sum(n.params // 2 for n in g.nodes if n.op == "BatchNormalization"))


# name → (trainable params, GMACs) as published. torchvision's model pages
# (https://pytorch.org/vision/stable/models/generated/torchvision.models.<name>.html) give
# num_params and "GFLOPS" (multiply-accumulates); Keras Applications' MobileNet 1.0-224 has
# 4,231,976 trainable parameters; Howard et al. 2017 (Table 8): 569 M mult-adds.
PUBLISHED = {
    "mobilenet_v1": (4_231_976, 0.569),
    "mobilenet_v2": (3_504_872, 0.30),
    "resnet18": (11_689_512, 1.81),
    "resnet50": (25_557_032, 4.09),
    "squeezenet1_1": (1_235_496, 0.35),
    "googlenet": (6_624_904, 1.50),
    "vgg16": (138_357_544, 15.47),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_imagenet_nets_match_published_sizes(name):
    g = build_net(name)
    params, gmacs = PUBLISHED[name]
    assert trainable(g) == params
    assert round(g.macs / 1e9, 2 if gmacs >= 0.1 else 3) == pytest.approx(gmacs, abs=0.005)
    assert g.outputs[0].shape == (1, 1000) and g.inputs[0].shape == (1, 3, 224, 224)


def test_mobilenet_papers_headline_figures():
    # Howard et al. 2017 Table 8: 1.0-224 569 M mult-adds, 4.2 M params; Sandler et al. 2018
    # Table 3: MobileNetV2 300 M MACs, 3.4 M params. Keras' total (BN 4/channel): 4,253,864.
    v1, v2 = build_net("mobilenet_v1"), build_net("mobilenet_v2")
    clip_consts = 2 * v1.op_counts()["Clip"]
    assert v1.params - clip_consts == 4_253_864
    assert round(v1.macs / 1e6) == 569 and round(trainable(v1) / 1e6, 1) == 4.2
    assert round(v2.macs / 1e6, -1) == 300 and 3.4e6 < trainable(v2) < 3.55e6
    # width and resolution scale as in the paper (Table 7: 0.25-128 → 14 M mult-adds, incl. FC)
    assert round(build_net("mobilenet_v1", alpha=0.25, resolution=128).macs / 1e6) == 14


def test_mlperf_tiny_nets_derived_sizes():
    # Derived from the MLPerf Tiny Keras models (see farm/zoo/mcu.py), all layers with biases.
    ds = build_net("ds_cnn")
    assert ds.inputs[0].shape == (1, 1, 49, 10) and ds.outputs[0].shape == (1, 12)
    assert ds.macs == 25 * 5 * 64 * 40 + 4 * (125 * 64 * 9 + 125 * 64 * 64) + 64 * 12
    assert trainable(ds) == (64 * 40 + 64) + 4 * (64 * 9 + 64 + 64 * 64 + 64) + 9 * 2 * 64 + 64 * 12 + 12
    r8 = build_net("resnet8")
    assert r8.macs == 12_501_632 and trainable(r8) == 78_186  # 12.5 M MACs, 78 k params
    vww = build_net("mobilenet_v1_vww")
    assert vww.inputs[0].shape == (1, 3, 96, 96) and vww.outputs[0].shape == (1, 2)
    assert round(vww.macs / 1e6, 1) == 7.5 and "Clip" not in vww.op_counts()  # plain ReLU
    ae = build_net("fc_autoencoder")
    dense = 640 * 128 + 3 * 128 * 128 + 128 * 8 + 8 * 128 + 3 * 128 * 128 + 128 * 640
    assert ae.macs == dense and ae.outputs[0].shape == (1, 640)
    # int8 model sizes MLPerf Tiny reports (kB ≈ params at 1 byte): 96 kB ResNet, 270 kB FC-AE
    assert trainable(r8) < 96_000 and 260_000 < trainable(ae) < 270_000


# Heavy nets run at a small input (the same code path); every export is checked and run.
RUN_OPTIONS = {"resnet50": {"resolution": 64, "classes": 10}, "vgg16": {"resolution": 32, "classes": 10},
               "googlenet": {"resolution": 96}, "resnet18": {"resolution": 96}}


@pytest.mark.parametrize("name", sorted(NETS))
def test_every_net_exports_round_trips_and_runs(name):
    g = build_net(name, **RUN_OPTIONS.get(name, {}))
    m = graph_to_onnx(g, seed=1)
    h = graph_from_onnx(m)
    key = lambda n: (n.name, n.op, n.outputs[0].shape, n.macs, n.params, n.bytes_moved)  # noqa: E731
    assert [key(n) for n in h.nodes] == [key(n) for n in g.nodes]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal(g.inputs[0].shape).astype(np.float32)
    (y,) = sess.run(None, {"input": x})
    assert y.shape == g.outputs[0].shape and np.isfinite(y).all()


@pytest.mark.parametrize("name", sorted(NETS))
def test_int8_variant_is_int8_throughout(name):
    g = build_net(name, dtype="int8", **RUN_OPTIONS.get(name, {}))
    ref = build_net(name, **RUN_OPTIONS.get(name, {}))
    assert {n.dtype for n in g.nodes} == {"int8"}
    assert (g.macs, g.params) == (ref.macs, ref.params) and g.bytes_moved < ref.bytes_moved


def test_options_and_errors():
    assert parse_net_options("default") == {} and parse_net_options(" alpha=0.5, resolution=160 ") == {
        "alpha": "0.5", "resolution": "160"}
    g = build_net("mobilenet_v2", **parse_net_options("alpha=0.5,resolution=160,classes=10"))
    assert g.inputs[0].shape == (1, 3, 160, 160) and g.outputs[0].shape == (1, 10)
    with pytest.raises(InputError, match="unknown net 'mobilenet_v9'"):
        build_net("mobilenet_v9")
    with pytest.raises(InputError, match="unknown option 'depth'"):
        build_net("resnet18", depth=34)
    with pytest.raises(InputError, match="alpha='wide' must be a number"):
        build_net("mobilenet_v1", alpha="wide")
    with pytest.raises(InputError, match="alpha=0.0 must be positive"):
        build_net("mobilenet_v1", alpha="0")
    with pytest.raises(InputError, match="unknown dtype 'int3'"):
        build_net("resnet8", dtype="int3")
    with pytest.raises(InputError, match="expected key=value"):
        parse_net_options("alpha")


def test_cli_zoo_list_json_includes_the_nets():
    p = run_cli("zoo", "list", "--json")
    assert p.returncode == 0, p.stderr
    rows = {r["name"]: r for r in json.loads(p.stdout)}
    assert {"mlp", "mobilenet_v2", "resnet50", "ds_cnn", "fc_autoencoder"} <= set(rows)
    assert rows["resnet18"]["macs"] == build_net("resnet18").macs and rows["mlp"]["kind"] == "demo"
    assert rows["mobilenet_v1"]["options"]["alpha"] == 1.0


def test_cli_zoo_export_nets_with_options(tmp_path):
    p = run_cli("zoo", "export", "ds_cnn", "mobilenet_v1", "--set", "classes=5", "-o", str(tmp_path))
    assert p.returncode == 0, p.stderr
    paths = p.stdout.split()
    assert [p.rsplit("/", 1)[-1] for p in paths] == ["ds_cnn_classes-5.onnx", "mobilenet_v1_classes-5.onnx"]
    g = graph_from_onnx(onnx.load(paths[1]))
    assert g.outputs[0].shape == (1, 5) and g.macs == build_net("mobilenet_v1", classes=5).macs


@pytest.mark.parametrize("args, match", [
    (["resnet9"], "unknown zoo model 'resnet9'"),
    (["resnet8", "--set", "filters=many"], "filters='many' must be an integer"),
    (["resnet8", "--set", "dtype=int8"], "only float32 nets export"),
    (["mlp", "--set", "classes=3"], "--set applies to reference nets only"),
])
def test_cli_zoo_export_bad_input_exits_2_and_writes_nothing(tmp_path, args, match):
    p = run_cli("zoo", "export", *args, "-o", str(tmp_path / "out"))
    assert p.returncode == 2 and match in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


PUBLISHED_CSV = Path(__file__).resolve().parents[2] / "../shared/data/published-latency/published_latency.csv"


@pytest.mark.parametrize("model, inp, prec, expected", [
    ("torchvision resnet18", "1x3x224x224", "fp16", ("resnet18", {"dtype": "float16"})),
    ("ResNet-50 V1 (ImageNet-trained TFLite model, Edge TPU compiled)", "299x299x3", "int8 (Edge TPU)",
     ("resnet50", {"resolution": 299, "dtype": "int8"})),
    ("Mobilenet_1.0_224 (quant)", "224x224x3", "int8 (uint8 QAT)", ("mobilenet_v1", {"dtype": "int8"})),
    ("ncnn built-in 'mobilenet_v2'", "224x224x3", "fp32", ("mobilenet_v2", {})),
    ("Keyword spotting: DS-CNN (MLPerf Tiny reference)", "49x10x1 MFCC", "int8", ("ds_cnn", {"dtype": "int8"})),
    ("Visual wake words: MobileNetV1 alpha=0.25 (MLPerf Tiny reference)", "96x96x3", "int8",
     ("mobilenet_v1_vww", {"dtype": "int8"})),
    ("inception_v1 (TF-slim)", "224x224x3", "fp32", ("googlenet", {})),
    ("SSD MobileNet v2 (COCO)", "300x300x3", "int8", None),
    ("Inception_V4 (model zoo 2018_04_27)", "299x299x3", "fp32", None),
    ("SqueezeNet (model zoo 2018_04_27)", "not stated in source", "fp32", None),  # version not pinned
])
def test_match_published_model_names(model, inp, prec, expected):
    assert match_published(model, inp, prec) == expected


@pytest.mark.skipif(not PUBLISHED_CSV.is_file(), reason="shared published-latency table not present")
def test_every_matched_published_row_builds():
    import csv

    with open(PUBLISHED_CSV, newline="") as f:
        rows = list(csv.DictReader(f))
    matched = [m for r in rows if (m := match_published(r["model"], r["input"], r["precision"]))]
    assert len(matched) >= 80  # MobileNets, ResNets, MLPerf Tiny, GoogLeNet, VGG, SqueezeNet rows
    assert {n for n, _ in matched} == set(NETS)
    for name, options in {(n, tuple(sorted(o.items()))) for n, o in matched}:
        g = build_net(name, **dict(options))
        assert g.macs > 0 and {n.dtype for n in g.nodes} == {dict(options).get("dtype", "float32")}


@pytest.mark.parametrize("name", sorted(NETS))
def test_out_of_range_options_are_input_errors_never_crashes(name):
    # every numeric option, at values a user might mistype: a valid graph or an InputError
    for key, default in NETS[name].options().items():
        if isinstance(default, (bool, str)):
            continue
        for value in (0, -1, 1, 2, 3, 7, 33, 0.3, "1", "x"):
            try:
                g = build_net(name, **{key: value})
            except InputError:
                continue
            assert all(min(n.outputs[0].shape) >= 1 for n in g.nodes), (key, value)
