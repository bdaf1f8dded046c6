"""LiteRT delegates on agent devices (local://, ssh://): a library that does not load is a
failed health check and a clear job error, never a crash or a stored record; which nodes the
delegate took and which stayed on the CPU is read from the interpreter and recorded."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")

from farm.agent.litert import LiteRtRunner, delegation_report  # noqa: E402
from farm.formats.tflite_builder import TfliteBuilder, conv_model  # noqa: E402

from ..conftest import FAST, run_cli  # noqa: E402


def split_model() -> bytes:
    """FULLY_CONNECTED → CUMSUM → ADD: XNNPACK takes the first and the last, not CUMSUM,
    so the default delegate yields two partitions around one CPU op."""
    b = TfliteBuilder()
    s = b.schema
    x = b.tensor("x", (1, 8))
    w = b.tensor("w", (8, 8), data=np.full((8, 8), 0.1, np.float32))
    h = b.tensor("h", (1, 8))
    b.op(s.BuiltinOperator.FULLY_CONNECTED, [x, w, -1], [h], s.BuiltinOptions.FullyConnectedOptions,
         s.FullyConnectedOptionsT())
    axis = b.tensor("axis", (1,), s.TensorType.INT32, data=np.array([1], np.int32))
    c = b.tensor("c", (1, 8))
    b.op(s.BuiltinOperator.CUMSUM, [h, axis], [c], s.BuiltinOptions.CumsumOptions, s.CumsumOptionsT())
    y = b.tensor("y", (1, 8))
    b.op(s.BuiltinOperator.ADD, [c, c], [y], s.BuiltinOptions.AddOptions, s.AddOptionsT())
    return b.build([x], [y])


# The node list ai-edge-litert 2.x gave for split_model() with its default delegate: the
# model's three nodes, then one DELEGATE node per partition.
CAPTURED = [
    {"index": 0, "op_name": "FULLY_CONNECTED", "inputs": [0, 1, -1], "outputs": [2]},
    {"index": 1, "op_name": "CUMSUM", "inputs": [2, 3], "outputs": [4]},
    {"index": 2, "op_name": "ADD", "inputs": [4, 4], "outputs": [5]},
    {"index": 3, "op_name": "DELEGATE", "inputs": [0, 1], "outputs": [2]},
    {"index": 4, "op_name": "DELEGATE", "inputs": [4], "outputs": [5]},
]
# A chain of four nodes that one partition takes whole (only its ends are the DELEGATE's tensors).
CHAIN = [
    {"index": 0, "op_name": "CONV_2D", "inputs": [0, 1, 2], "outputs": [3]},
    {"index": 1, "op_name": "RELU", "inputs": [3], "outputs": [4]},
    {"index": 2, "op_name": "DEPTHWISE_CONV_2D", "inputs": [4, 5, 6], "outputs": [7]},
    {"index": 3, "op_name": "ADD", "inputs": [7, 3], "outputs": [8]},
    {"index": 4, "op_name": "DELEGATE", "inputs": [0, 1, 2, 5, 6], "outputs": [8]},
]


@pytest.mark.parametrize("ops, delegate, expect", [
    (CAPTURED, None, {"coverage": "partial", "replaced_nodes": 2, "total_nodes": 3, "partitions": 2,
                      "delegated_ops": ["ADD", "FULLY_CONNECTED"], "cpu_fallback_ops": ["CUMSUM"],
                      "ran": ["XNNPACK (default delegate)"], "requested": "default (XNNPACK)"}),
    (CAPTURED[:3], "cpu", {"coverage": "none", "replaced_nodes": 0, "partitions": 0, "ran": None,
                           "cpu_ops": ["ADD", "CUMSUM", "FULLY_CONNECTED"], "cpu_fallback_ops": None}),
    (CAPTURED[:3], "edgetpu", {"coverage": "none", "ran": None, "cpu_fallback_ops": ["ADD", "CUMSUM", "FULLY_CONNECTED"]}),
    (CHAIN, "/usr/lib/libedgetpu.so.1", {"coverage": "full", "replaced_nodes": 4, "partitions": 1, "cpu_ops": None,
                                         "ran": ["/usr/lib/libedgetpu.so.1"], "cpu_fallback_ops": None}),
    (CHAIN, "edgetpu", {"ran": ["libedgetpu.so.1"], "requested": "edgetpu"}),
    (None, "xnnpack", {"coverage": None, "evidence": None}),
])
def test_delegation_report_on_captured_node_lists(ops, delegate, expect):
    got = delegation_report(ops, delegate)
    assert {k: got[k] for k in expect} == expect


def test_default_delegate_partition_is_read_from_the_real_interpreter(tmp_path):
    path = tmp_path / "split.tflite"
    path.write_bytes(split_model())
    runner = LiteRtRunner()
    runner.prepare(str(path), threads=1)()
    d = runner.delegation
    assert d is not None and d["coverage"] == "partial" and d["partitions"] == 2
    assert d["delegated_ops"] == ["ADD", "FULLY_CONNECTED"] and d["cpu_fallback_ops"] == ["CUMSUM"]
    runner.prepare(str(path), threads=1, delegate="cpu")()
    d = runner.delegation
    assert d["coverage"] == "none" and d["partitions"] == 0 and d["cpu_ops"] == ["ADD", "CUMSUM", "FULLY_CONNECTED"]
    runner.prepare(str(path), threads=1, delegate="xnnpack")()
    assert runner.delegation["ran"] == ["XNNPACK"] and runner.delegation["replaced_nodes"] == 2


@pytest.mark.parametrize("delegate, coverage, fallback", [(None, "partial", ["CUMSUM"]), ("cpu", "none", None)])
def test_delegation_is_in_the_measurement_provenance(tmp_path, delegate, coverage, fallback):
    reg = tmp_path / "devices.yaml"
    reg.write_text("devices:\n  - name: board\n    url: local://cpu\n    runtime: litert\n"
                   + (f"    delegate: {delegate}\n" if delegate else "") + "    timeout_s: 60\n")
    model = tmp_path / "split.tflite"
    model.write_bytes(split_model())
    db = tmp_path / "farm.db"
    c = run_cli("--registry", str(reg), "--db", str(db), "devices", "check", "board", "--json")
    assert c.returncode == 0, c.stdout
    p = run_cli("--registry", str(reg), "--db", str(db), "profile", str(model), "--device", "board", "--json", *FAST)
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)["provenance"]["delegate"]
    assert d["coverage"] == coverage and d["cpu_fallback_ops"] == fallback and d["total_nodes"] == 3
    assert d["evidence"] == "interpreter node list after delegation"


def test_missing_delegate_is_a_failed_check_and_a_clear_error(tmp_path):
    reg = tmp_path / "devices.yaml"
    reg.write_text("devices:\n  - name: coral\n    url: local://cpu\n    runtime: litert\n"
                   f"    delegate: {tmp_path / 'libedgetpu.so.1'}\n    timeout_s: 60\n")
    model = tmp_path / "m.tflite"
    model.write_bytes(conv_model())
    db = tmp_path / "farm.db"
    c = run_cli("--registry", str(reg), "--db", str(db), "devices", "check", "coral", "--json")
    health = json.loads(c.stdout)
    assert c.returncode == 1 and health["status"] == "unavailable"
    assert "cannot load LiteRT delegate" in health["detail"] and "libedgetpu.so.1" in health["detail"]
    p = run_cli("--registry", str(reg), "--db", str(db), "profile", str(model), "--device", "coral", "--json", *FAST)
    assert p.returncode == 1 and "cannot load LiteRT delegate" in p.stderr and "Traceback" not in p.stderr
    assert p.stdout.strip() == ""


def test_edgetpu_alias_names_the_edgetpu_library(tmp_path):
    """``delegate: edgetpu`` loads libedgetpu.so.1 (absent here: a failed check naming it)."""
    reg = tmp_path / "devices.yaml"
    reg.write_text("devices:\n  - name: coral\n    url: local://cpu\n    runtime: litert\n    delegate: edgetpu\n")
    c = run_cli("--registry", str(reg), "--db", str(tmp_path / "f.db"), "devices", "check", "coral", "--json")
    health = json.loads(c.stdout)
    assert c.returncode == 1 and "cannot load LiteRT delegate libedgetpu.so.1" in health["detail"]


def test_delegate_on_a_runtime_without_delegates_fails_the_check(tmp_path):
    reg = tmp_path / "devices.yaml"
    reg.write_text("devices:\n  - name: b\n    url: local://cpu\n    runtime: onnxruntime\n    delegate: edgetpu\n")
    c = run_cli("--registry", str(reg), "--db", str(tmp_path / "f.db"), "devices", "check", "b", "--json")
    health = json.loads(c.stdout)
    assert c.returncode == 1 and health["status"] == "error" and "runtime: litert" in health["detail"]


def test_delegation_is_recorded_on_an_ssh_board(sshd, tmp_path):
    """The same agent on a board over SSH (the loopback sshd) records the same partition."""
    from ..conftest import ssh_spec_text

    kh = tmp_path / "known_hosts"
    kh.write_text(sshd.known_hosts_line())
    reg = tmp_path / "devices.yaml"
    reg.write_text("devices:\n" + ssh_spec_text(sshd, kh, timeout_s=120) + "    runtime: litert\n    delegate: xnnpack\n")
    model = tmp_path / "split.tflite"
    model.write_bytes(split_model())
    p = run_cli("--registry", str(reg), "--db", str(tmp_path / "f.db"), "profile", str(model), "--device", "board",
                "--json", *FAST)
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)["provenance"]["delegate"]
    assert d["ran"] == ["XNNPACK"] and d["coverage"] == "partial" and d["cpu_fallback_ops"] == ["CUMSUM"]
