"""Tiny models for the conformance suites, built in memory (onnx.helper, the TFLite builder)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from farm.workload import Workload, load_workload

__all__ = ["gemm_model", "matmul_model", "save_onnx", "save_tflite_fc"]


def gemm_model(hidden: int = 64, *, seed: int = 0) -> Any:
    """1x32 → Gemm(hidden) → Relu → MatMul(8): a real ONNX model that runs in well under 1 ms."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w1 = numpy_helper.from_array(rng.standard_normal((32, hidden)).astype(np.float32), "w1")
    b1 = numpy_helper.from_array(np.zeros(hidden, np.float32), "b1")
    w2 = numpy_helper.from_array(rng.standard_normal((hidden, 8)).astype(np.float32), "w2")
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1"),
             helper.make_node("Relu", ["h"], ["a"], name="relu1"),
             helper.make_node("MatMul", ["a", "w2"], ["y"], name="fc2")]
    graph = helper.make_graph(nodes, f"gemm{hidden}",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])],
                              initializer=[w1, b1, w2])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def matmul_model(n: int, *, seed: int = 0) -> Any:
    """x(n×n) · W(n×n): n³ MACs, a model with a known amount of work."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.standard_normal((n, n)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], f"matmul{n}",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, n])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, n])],
                              initializer=[w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def save_onnx(model: Any, path: Path) -> Workload:
    import onnx

    onnx.save(model, path)
    return load_workload(path)


def save_tflite_fc(in_features: int, out_features: int, path: Path) -> Workload:
    """A float32 FULLY_CONNECTED ``.tflite`` (needs ai-edge-litert for the schema)."""
    from farm.formats.tflite_builder import fc_model

    path.write_bytes(fc_model(in_features, out_features))
    return load_workload(path)
