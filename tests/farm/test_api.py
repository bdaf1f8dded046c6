"""The Python API: farm.profile is the CLI's path, usable from a notebook."""

from __future__ import annotations

import pytest

import farm
from farm.errors import ModelError, RegistryError

FAST = farm.Policy(warmup=2, warmup_s=0, min_runs=5, min_time_s=0, max_runs=20, max_time_s=2)


def test_profile_measures_then_caches(tmp_path, registry_file, onnx_file):
    db = tmp_path / "h.db"
    a, b = onnx_file("a", 16), onnx_file("b", 32)
    first = farm.profile([a, b], device="host-cpu", registry=registry_file, db=db, policy=FAST, rounds=1, max_rounds=1)
    assert [r.source for r in first] == ["measured", "measured"] and all(r.ok for r in first)
    assert first[0].measurement.device == "host-cpu" and first[0].model == str(a)
    again = farm.profile([b], device="host-cpu", registry=registry_file, db=db, policy=FAST, rounds=1, max_rounds=1)
    assert again[0].source == "cached" and again[0].measurement == first[1].measurement
    store = farm.SqliteStore(db)
    assert len(store.measurements(device="host-cpu")) == 2


def test_bad_input_raises_before_the_store_exists(tmp_path, registry_file, onnx_file):
    db = tmp_path / "h.db"
    with pytest.raises(ModelError, match="missing.onnx"):
        farm.profile([onnx_file("a"), tmp_path / "missing.onnx"], device="host-cpu", registry=registry_file, db=db)
    with pytest.raises(RegistryError, match="no device named 'gpu'"):
        farm.profile([onnx_file("a")], device="gpu", registry=registry_file, db=db)
    assert not db.exists()


def test_runtime_rejection_is_a_failed_result_not_an_exception(tmp_path, registry_file):
    # A valid ONNX graph whose op onnxruntime has no kernel for: inspectable, not runnable.
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Relu", ["x"], ["y"], domain="com.example.custom")
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example.custom", 1)])
    path = tmp_path / "custom.onnx"
    onnx.save(m, path)
    (r,) = farm.profile([path], device="host-cpu", registry=registry_file, db=tmp_path / "h.db", policy=FAST, rounds=1, max_rounds=1)
    assert not r.ok and r.source == "failed" and r.failure.exit_code == 2
    assert "custom.onnx" in r.error
