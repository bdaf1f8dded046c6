"""The model directory: arch.json + safetensors + ONNX, written atomically, loaded strictly,
pruned modules included; every kind of damage is one InputError line."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")

from farm.errors import InputError  # noqa: E402
from farm.formats.onnx import load_onnx_graph  # noqa: E402
from nas.modeldir import (  # noqa: E402
    ARCH_JSON,
    FORMAT,
    ONNX,
    WEIGHTS,
    is_model_dir,
    load_model_dir,
    read_model_meta,
    save_model_dir,
)
from nas.modules import build_module  # noqa: E402

SPEC = "resnet8:filters=8"


def _save(path, module=None, spec=SPEC, **kw):
    torch.manual_seed(0)
    module = module if module is not None else build_module(spec, in_channels=1, input_size=8)
    args = dict(arch_spec=spec, module=module, dataset="digits", input_size=8, in_channels=1, num_classes=10,
                accuracy=91.5, train={"epochs": 1}, extra={"note": "test"}) | kw
    return save_model_dir(path, **args), module


def _x(n=4, size=8):
    return torch.from_numpy(np.random.default_rng(1).standard_normal((n, 1, size, size)).astype(np.float32))


def test_round_trip_gives_identical_logits(tmp_path):
    d, m = _save(tmp_path / "m")
    with torch.no_grad():  # give BN non-trivial statistics first
        m.train()
        m(_x(16))
    m.eval()
    d, m = _save(tmp_path / "m2", module=m)
    assert sorted(p.name for p in d.iterdir()) == [ARCH_JSON, ONNX, WEIGHTS]
    loaded = load_model_dir(d)
    assert not loaded.module.training and loaded.arch == SPEC and loaded.accuracy == 91.5
    with torch.no_grad():
        assert torch.equal(m.eval()(_x()), loaded.module(_x()))
    meta = loaded.meta
    assert meta["format"] == FORMAT and meta["data"] == "digits" and meta["shapes"] == {}
    assert meta["input"] == {"name": "input", "shape": [1, 1, 8, 8], "dtype": "float32"}
    assert meta["train"] == {"epochs": 1} and meta["extra"] == {"note": "test"} and meta["hwfarm_version"]
    g = load_onnx_graph(d / ONNX)
    assert (meta["params"], meta["macs"]) == (g.params, g.macs) and meta["macs"] > 0
    assert meta["size_kb"] == round((d / ONNX).stat().st_size / 1024, 2)
    assert len(meta["files"][WEIGHTS]["sha256"]) == 64
    assert onnx.load(d / ONNX).graph.input[0].name == "input"
    assert is_model_dir(d) and not is_model_dir(tmp_path) and not is_model_dir(d / ONNX)


@pytest.mark.parametrize("spec", ["ds_cnn:filters=16", "resnet8"])  # depthwise groups; residual adds
def test_pruned_module_saves_and_loads(tmp_path, spec):
    tp = pytest.importorskip("torch_pruning")
    torch.manual_seed(0)
    m = build_module(spec, in_channels=1, input_size=8).eval()
    tp.pruner.MagnitudePruner(m, torch.randn(1, 1, 8, 8), importance=tp.importance.MagnitudeImportance(p=2),
                              pruning_ratio=0.4, ignored_layers=[m.head[-1]]).step()
    d, _ = _save(tmp_path / "p", module=m, spec=spec)
    meta = read_model_meta(d)
    assert meta["shapes"] and all(v["type"] in ("Conv2d", "BatchNorm2d", "Linear") for v in meta["shapes"].values())
    loaded = load_model_dir(d)
    with torch.no_grad():
        assert torch.equal(m(_x()), loaded.module(_x()))
    assert sum(p.numel() for p in loaded.module.parameters()) == sum(p.numel() for p in m.parameters())


def test_corrupt_or_missing_files_are_input_errors(tmp_path):
    d, _ = _save(tmp_path / "m")
    w = d / WEIGHTS
    good = w.read_bytes()
    w.write_bytes(good[:-10] + b"0123456789")
    with pytest.raises(InputError, match="do not match the sha256"):
        load_model_dir(d)
    # A truncated file whose hash was "fixed": the safetensors reader refuses it, one line.
    w.write_bytes(good[:100])
    meta = json.loads((d / ARCH_JSON).read_text())
    meta["files"][WEIGHTS]["sha256"] = None
    (d / ARCH_JSON).write_text(json.dumps(meta))
    with pytest.raises(InputError, match="not a readable safetensors file") as e:
        load_model_dir(d)
    assert "\n" not in str(e.value)
    w.unlink()
    with pytest.raises(InputError, match="missing"):
        load_model_dir(d)
    (d / ARCH_JSON).write_text("{not json")
    with pytest.raises(InputError, match="not JSON"):
        load_model_dir(d)
    (d / ARCH_JSON).write_text(json.dumps({"format": "something/else"}))
    with pytest.raises(InputError, match="not an hwfarm model"):
        load_model_dir(d)
    (d / ARCH_JSON).unlink()
    with pytest.raises(InputError, match="no arch.json"):
        load_model_dir(d)
    with pytest.raises(InputError, match="no such model directory"):
        load_model_dir(tmp_path / "nowhere")


def test_weights_that_do_not_fit_the_arch_are_refused(tmp_path):
    d, _ = _save(tmp_path / "m")
    meta = json.loads((d / ARCH_JSON).read_text())
    meta["arch"] = "resnet8:filters=12"
    (d / ARCH_JSON).write_text(json.dumps(meta))
    with pytest.raises(InputError, match=r"weights do not fit architecture 'resnet8:filters=12'.*is \[8, 1, 3, 3\]"):
        load_model_dir(d)
    meta["arch"] = "ds_cnn"
    (d / ARCH_JSON).write_text(json.dumps(meta))
    with pytest.raises(InputError, match="missing tensor"):
        load_model_dir(d)
    meta["arch"], meta["shapes"] = SPEC, {"features.9": {"type": "Conv2d"}}
    (d / ARCH_JSON).write_text(json.dumps(meta))
    with pytest.raises(InputError, match="does not have"):
        load_model_dir(d)


def test_a_module_that_is_not_the_spec_is_not_saved(tmp_path):
    m = build_module(SPEC, in_channels=1, input_size=8)
    m.features[0][0].bias = None
    with pytest.raises(InputError, match="does not fit architecture 'resnet8:filters=8' .missing tensor features.0.0.bias"):
        _save(tmp_path / "m", module=m)
    m = build_module("ds_cnn:filters=8,blocks=3", in_channels=1, input_size=8)
    with pytest.raises(InputError, match="layer 'features.5.0' is not part of architecture 'ds_cnn:filters=8,blocks=2'"):
        _save(tmp_path / "m", module=m, spec="ds_cnn:filters=8,blocks=2")
    m = build_module(SPEC, in_channels=1, input_size=8)
    m.features.append(torch.nn.Conv2d(32, 32, 1))
    with pytest.raises(InputError, match="is not part of architecture"):
        _save(tmp_path / "m", module=m)
    assert not list(tmp_path.iterdir())


def test_existing_directory_is_refused_unless_overwrite(tmp_path):
    d, _ = _save(tmp_path / "m")
    first = (d / ARCH_JSON).read_text()
    with pytest.raises(InputError, match="exists and is not empty"):
        _save(d, accuracy=50.0)
    assert (d / ARCH_JSON).read_text() == first
    _save(d, accuracy=50.0, overwrite=True)
    assert read_model_meta(d)["accuracy"] == 50.0
    (tmp_path / "empty").mkdir()
    _save(tmp_path / "empty")  # an empty folder is fine
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        _save(tmp_path / "file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "file", "m"]  # no temporary folders left


def test_a_failed_write_leaves_nothing(tmp_path, monkeypatch):
    import nas.modeldir as md
    from farm.errors import ModelError

    def boom(*a, **k):
        raise ModelError("could not export the module to ONNX: nope")

    d, _ = _save(tmp_path / "keep")
    monkeypatch.setattr(md, "export_onnx", boom)
    with pytest.raises(ModelError):
        _save(tmp_path / "out" / "m")
    assert list((tmp_path / "out").iterdir()) == []
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    with pytest.raises(ModelError):
        _save(d, overwrite=True)
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before  # the old model is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep", "out"]
