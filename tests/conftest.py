"""Shared fixtures: small real ONNX models, registries and stores in temp dirs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]


def gemm_model(hidden: int = 64, *, seed: int = 0, opset: int = 17) -> onnx.ModelProto:
    """1x32 → Gemm(hidden) → Relu → Gemm(8): a real model that runs in well under 1 ms."""
    rng = np.random.default_rng(seed)
    w1 = numpy_helper.from_array(rng.standard_normal((32, hidden)).astype(np.float32), "w1")
    b1 = numpy_helper.from_array(np.zeros(hidden, np.float32), "b1")
    w2 = numpy_helper.from_array(rng.standard_normal((hidden, 8)).astype(np.float32), "w2")
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1"),
        helper.make_node("Relu", ["h"], ["a"], name="relu1"),
        helper.make_node("MatMul", ["a", "w2"], ["y"], name="fc2"),
    ]
    graph = helper.make_graph(
        nodes, f"gemm{hidden}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])],
        initializer=[w1, b1, w2],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.fixture
def onnx_file(tmp_path: Path):
    """Factory: write a small Gemm model and return its path; different `hidden` → different hash."""

    def make(name: str = "m", hidden: int = 64) -> Path:
        path = tmp_path / f"{name}.onnx"
        onnx.save(gemm_model(hidden), path)
        return path

    return make


REGISTRY = """\
# test registry
devices:
  - name: host-cpu   # the real host
    url: local://cpu
    runtime: onnxruntime
    threads: 1
"""


@pytest.fixture
def registry_file(tmp_path: Path) -> Path:
    path = tmp_path / "devices.yaml"
    path.write_text(REGISTRY)
    return path


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run `hwfarm ...` in a fresh process, exactly as a user would."""
    full_env = dict(os.environ) | (env or {})
    return subprocess.run([sys.executable, "-m", "farm.cli", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


# Fast measurement settings for tests: accuracy is not under test here, behaviour is.
FAST = ["--warmup", "2", "--warmup-time", "0", "--min-time", "0", "--runs", "20", "--min-runs", "5", "--max-time", "2",
        "--rounds", "1", "--max-rounds", "1"]  # one round: the estimator over rounds has its own tests


def matmul_model(n: int, *, seed: int = 0) -> onnx.ModelProto:
    """x(n×n) · W(n×n): n³ MACs, for tests that need a model with a known amount of work."""
    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.standard_normal((n, n)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], f"matmul{n}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, n])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, n])],
        initializer=[w],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    """A real sshd on 127.0.0.1 (skipped where openssh-server is not installed; CI installs it)."""
    from . import sshd as sshd_mod

    if not sshd_mod.available():
        pytest.skip("openssh-server is not installed (apt-get install openssh-server)")
    pytest.importorskip("paramiko")
    server = sshd_mod.start(tmp_path_factory.mktemp("sshd"))
    yield server
    sshd_mod.stop(server)


def ssh_spec_text(server, known_hosts: Path, *, name: str = "board", tofu: bool = False, timeout_s: float = 600) -> str:
    """A registry entry for the test sshd, with this venv's python as the board's python."""
    return (f"  - name: {name}\n    url: {server.url()}\n    key_file: {server.client_key}\n"
            f"    known_hosts: {known_hosts}\n    trust_on_first_use: {'true' if tofu else 'false'}\n"
            f"    python: {sys.executable}\n    timeout_s: {timeout_s}\n")
