"""The reference networks of ``hwfarm train``: they build and run at any input, take their
options (and refuse bad ones with one line), export to ONNX that farm reads with the MACs of
farm's own graph builders, and can be pruned by torch-pruning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")

from farm.errors import InputError  # noqa: E402
from farm.formats.onnx import graph_from_onnx  # noqa: E402
from nas.modeldir import export_onnx  # noqa: E402
from nas.modules import build_module  # noqa: E402
from nas.modules.reference import Add, make_divisible  # noqa: E402

# Small variants: the structure of each net, at a size that runs in milliseconds.
SMALL = ["mobilenet_v2:width=0.35", "resnet8", "resnet18:width=0.125", "vgg:depth=11,width=0.125",
         "vgg:depth=16,width=0.125", "ds_cnn:filters=16"]


def _export(module, shape, tmp_path: Path):
    path = tmp_path / "m.onnx"
    export_onnx(module, path, shape)
    return path, graph_from_onnx(onnx.load(path))


@pytest.mark.parametrize("spec", SMALL)
@pytest.mark.parametrize("size, channels", [(8, 1), (28, 1), (32, 3), (96, 3)])
def test_builds_and_runs_at_any_input(spec, size, channels):
    torch.manual_seed(0)
    m = build_module(spec, num_classes=7, in_channels=channels, input_size=size).eval()
    with torch.no_grad():
        y = m(torch.randn(2, channels, size, size))
    assert y.shape == (2, 7) and torch.isfinite(y).all()


@pytest.mark.parametrize("spec", ["mobilenet_v2", "resnet8", "resnet18", "vgg", "ds_cnn"])
def test_default_widths_build(spec):
    m = build_module(spec, in_channels=1, input_size=28)
    n = sum(p.numel() for p in m.parameters())
    # MobileNetV2 ~2.2 M, ResNet-8 ~78 k, ResNet-18 ~11 M, VGG-16 ~15 M, DS-CNN ~21 k
    lo, hi = {"mobilenet_v2": (2.0e6, 2.5e6), "resnet8": (7e4, 9e4), "resnet18": (1.0e7, 1.2e7),
              "vgg": (1.4e7, 1.6e7), "ds_cnn": (1.5e4, 3e4)}[spec]
    assert lo < n < hi


@pytest.mark.parametrize("spec, size, channels", [(s, 16, 1) for s in SMALL[1:]] + [(SMALL[0], 32, 3)])
def test_onnx_export_imports_in_farm_and_matches_torch(spec, size, channels, tmp_path):
    import onnxruntime as ort

    torch.manual_seed(0)
    m = build_module(spec, num_classes=10, in_channels=channels, input_size=size).eval()
    path, g = _export(m, (1, channels, size, size), tmp_path)
    assert g.inputs[0].shape == (1, channels, size, size) and g.outputs[0].shape == (1, 10)
    assert g.macs > 0 and g.params > 0
    x = np.random.default_rng(0).standard_normal((1, channels, size, size)).astype(np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = sess.run(None, {"input": x})
    with torch.no_grad():
        want = m(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_macs_equal_farms_own_graphs(tmp_path):
    """The torch nets are the same networks farm's zoo builds (BN folds in the export, so MACs,
    not params, are compared)."""
    from farm.zoo import mcu, mobilenet, resnet

    cases = [("resnet8", mcu.resnet8(), 32, 10),  # MLPerf Tiny: CIFAR-10 32×32×3
             ("mobilenet_v2:width=0.5,strides=imagenet", mobilenet.mobilenet_v2(alpha=0.5, resolution=96), 96, 1000),
             ("resnet18:strides=imagenet", resnet.resnet18(resolution=64), 64, 1000)]
    for spec, ref, size, classes in cases:
        m = build_module(spec, num_classes=classes, in_channels=3, input_size=size)
        _, g = _export(m, (1, 3, size, size), tmp_path)
        assert g.macs == ref.macs, spec


def test_strides_option_picks_the_downsampling_schedule():
    def final_map(spec: str, size: int) -> int:
        m = build_module(spec, in_channels=1, input_size=size).eval()
        with torch.no_grad():
            return int(m.features(torch.zeros(1, 1, size, size)).shape[-1])

    assert final_map("mobilenet_v2:width=0.35,strides=cifar", 32) == 4  # /8
    assert final_map("mobilenet_v2:width=0.35,strides=imagenet", 32) == 1  # /32
    assert final_map("mobilenet_v2:width=0.35", 32) == 4 and final_map("mobilenet_v2:width=0.35", 96) == 3  # auto
    assert final_map("resnet18:width=0.125", 32) == 4 and final_map("resnet18:width=0.125,strides=imagenet", 64) == 2
    assert final_map("ds_cnn:filters=8", 8) == 8 and final_map("ds_cnn:filters=8", 16) == 8  # auto stride 1, 2
    assert final_map("ds_cnn:filters=8,stride=1", 16) == 16
    assert final_map("vgg:width=0.125", 8) == 1  # pools stop at 1×1


def test_width_and_depth_options_change_the_network():
    def convs(spec: str) -> list[int]:
        m = build_module(spec, in_channels=1, input_size=16)
        return [c.out_channels for c in m.modules() if isinstance(c, torch.nn.Conv2d)]

    assert len(convs("vgg:depth=11")) == 8 and len(convs("vgg:depth=16")) == 13 and len(convs("vgg:depth=19")) == 16
    assert max(convs("vgg:width=0.25")) == 128 and max(convs("resnet18:width=0.5")) == 256
    assert convs("resnet8:filters=26")[0] == 26 and len(convs("ds_cnn:blocks=2")) == 5
    assert convs("mobilenet_v2:width=0.5")[0] == 16 and convs("mobilenet_v2")[-1] == 1280
    assert make_divisible(32 * 0.35) == 16 and make_divisible(1280 * 1.4) == 1792


@pytest.mark.parametrize("spec, match", [
    ("vgg:depth=12", "vgg: option depth='12': expected one of 11, 13, 16, 19"),
    ("vgg:width=0", "vgg: option width='0'"),
    ("mobilenet_v2:width=abc", "mobilenet_v2: option width='abc'"),
    ("mobilenet_v2:strides=tiny", "option strides='tiny'"),
    ("resnet8:filters=-3", "resnet8: option filters='-3'"),
    ("ds_cnn:alpha=1", "ds_cnn: unknown option 'alpha'; known: filters, blocks, kernel, stride"),
    ("resnet18:depth=34", "resnet18: unknown option 'depth'"),
    ("ds_cnn:stride=3", "option stride='3'"),
    ("vgg:depth", "is not key=value"),
    ("alexnet", "unknown architecture 'alexnet'"),
])
def test_bad_options_are_one_line_input_errors(spec, match):
    with pytest.raises(InputError, match=match) as e:
        build_module(spec, in_channels=1, input_size=16)
    assert "\n" not in str(e.value)


def test_residual_adds_are_modules():
    m = build_module("resnet8", in_channels=1, input_size=16)
    assert sum(isinstance(x, Add) for x in m.modules()) == 3
    m = build_module("mobilenet_v2:width=0.35,strides=imagenet", in_channels=1, input_size=16)
    assert sum(isinstance(x, Add) for x in m.modules()) == 10  # Sandler et al.: 10 blocks keep their shape


@pytest.mark.parametrize("spec", SMALL)
def test_torch_pruning_removes_channels(spec):
    tp = pytest.importorskip("torch_pruning")
    torch.manual_seed(0)
    m = build_module(spec, in_channels=1, input_size=16).eval()
    ex = torch.randn(1, 1, 16, 16)
    before = sum(p.numel() for p in m.parameters())
    pruner = tp.pruner.MagnitudePruner(m, ex, importance=tp.importance.MagnitudeImportance(p=1), pruning_ratio=0.5,
                                       ignored_layers=[m.head[-1]])
    pruner.step()
    with torch.no_grad():
        assert m(ex).shape == (1, 10)
    assert sum(p.numel() for p in m.parameters()) < 0.6 * before
