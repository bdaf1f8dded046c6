"""Reading an ONNX file's structure without its weights (onnx_skeleton / read_onnx_structure):
the same graph as the full import, and the same one-line errors for bad files."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from farm.errors import ModelError
from farm.formats.onnx import load_onnx_graph, onnx_skeleton, read_onnx_structure
from farm.formats.onnx_export import graph_to_onnx
from farm.zoo import onnx_models
from farm.zoo.nets import build_net

MODELS = {
    "resnet8": lambda: onnx_models.resnet8_cifar(),
    "mobilenet": lambda: onnx_models.mobilenet_v1(),
    "legacy-ir3": lambda: onnx_models.legacy_ir3_model(),
    "constant-weights": lambda: onnx_models.constant_weights_model(),
    "qlinear": lambda: onnx_models.qlinear_model(),
    "mobilenet_v2-ir": lambda: graph_to_onnx(build_net("mobilenet_v2", resolution=96)),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_structure_equals_full_import(tmp_path: Path, name: str):
    path = tmp_path / f"{name}.onnx"
    onnx.save(MODELS[name](), path)
    assert read_onnx_structure(path).to_dict() == load_onnx_graph(path).to_dict()


def test_skeleton_drops_weight_bytes_and_keeps_small_tensors(tmp_path: Path):
    model = graph_to_onnx(build_net("mobilenet_v2", resolution=96))
    data = model.SerializeToString()
    skel = onnx.load_model_from_string(onnx_skeleton(data))
    assert len(onnx_skeleton(data)) < len(data) / 20
    full = {t.name: t for t in model.graph.initializer}
    for t in skel.graph.initializer:
        assert list(t.dims) == list(full[t.name].dims) and t.data_type == full[t.name].data_type
        small = onnx.numpy_helper.to_array(full[t.name]).size <= 64
        assert (t.raw_data == full[t.name].raw_data) if small else not t.raw_data
    assert [n.name for n in skel.graph.node] == [n.name for n in model.graph.node]


def test_bad_files_are_model_errors(tmp_path: Path):
    path = tmp_path / "m.onnx"
    data = onnx_models.resnet8_cifar().SerializeToString()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="truncated or corrupt"):
        read_onnx_structure(path)
    path.write_bytes(b"")
    with pytest.raises(ModelError, match="empty"):
        read_onnx_structure(path)
    path.write_bytes(b"\x00\x00\x00\x00TFL3" + b"\x00" * 32)
    with pytest.raises(ModelError, match="TFLite"):
        read_onnx_structure(path)
    with pytest.raises(ModelError, match="cannot read"):
        read_onnx_structure(tmp_path / "missing.onnx")
