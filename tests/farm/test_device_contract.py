"""The Device protocol contract. Every device kind runs these same tests.

To add a kind, add a factory to ``CONTRACT_DEVICES`` that returns a DeviceSpec for a device
reachable in the test environment (the host itself, a loopback sshd, an ADB test daemon, a
pseudo-terminal firmware emulator, a seeded simulator profile).
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import replace
from pathlib import Path
from typing import Callable

import onnx
import pytest

from farm.agent.measure import Policy
from farm.devices import Device, open_device
from farm.errors import DeviceTimeout, ModelError
from farm.measurement import Settings, resolve_runtime
from farm.registry.spec import DeviceSpec
from farm.workload import Workload, load_workload

from ..conftest import gemm_model, matmul_model
from ..mcu_emulator import contract_spec as _serial_spec


def _ssh_spec(request: pytest.FixtureRequest, tmp: Path) -> DeviceSpec:
    server = request.getfixturevalue("sshd")
    known = tmp / "known_hosts"
    known.write_text(server.known_hosts_line())
    return DeviceSpec(name="board", url=server.url(), key_file=str(server.client_key), known_hosts=str(known),
                      python=sys.executable, runtime="onnxruntime", threads=1)


def _adb_spec(request: pytest.FixtureRequest, tmp: Path) -> DeviceSpec:
    from .. import adbd

    if not adbd.available():
        pytest.skip("adb-shell is not installed")
    pytest.importorskip("ai_edge_litert")  # the benchmark_model stand-in runs models with LiteRT
    peer, spec = adbd.start_phone(tmp / "adb")
    request.addfinalizer(peer.close)
    return spec


# kind -> factory(request, tmp_path) -> DeviceSpec of a device reachable in the test environment
CONTRACT_DEVICES: dict[str, Callable[[pytest.FixtureRequest, Path], DeviceSpec]] = {
    "local": lambda request, tmp: DeviceSpec(name="host-cpu", url="local://cpu", runtime="onnxruntime", threads=1),
    "ssh": _ssh_spec,
    "adb": _adb_spec,
    "sim": lambda request, tmp: DeviceSpec(name="sim-raspi4", url="sim://raspi4?seed=0", threads=1),
    "serial": _serial_spec,  # the MLPerf Tiny firmware emulator on a pty, flashed per model
}

REQUIRED_PROVENANCE = {"runtime", "runtime_version", "threads", "python", "os", "cpu_model",
                       "hwfarm_version", "simulated", "device"}
FAST = Policy(warmup=2, warmup_s=0, min_time_s=0, min_runs=5, max_runs=30, max_time_s=2.0)


@pytest.fixture(params=sorted(CONTRACT_DEVICES))
def device(request, tmp_path) -> Device:
    d = open_device(CONTRACT_DEVICES[request.param](request, tmp_path))
    yield d
    d.close()


# Kinds whose runtime takes .tflite only (benchmark_model): they get a TFLite model with the
# same layer widths, and (for matmul_model(n)) n·n²/16 MACs, so size ratios keep their order.
TFLITE_KINDS = {"adb"}


def _load(tmp_path: Path, model: onnx.ModelProto, name: str, device: Device | None = None) -> Workload:
    if device is not None and device.info()["kind"] in TFLITE_KINDS:
        from farm.formats.tflite_builder import fc_model

        rows, cols = model.graph.initializer[0].dims
        path = tmp_path / f"{name}.tflite"
        path.write_bytes(fc_model(rows, cols if model.graph.name.startswith("gemm") else rows * rows // 16))
        return load_workload(path)
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, path)
    return load_workload(path)


def _settings(device: Device, w: Workload, **kw) -> Settings:
    return Settings(runtime=resolve_runtime(device.spec.default_runtime, w.format), threads=device.spec.threads,
                    policy=kw.pop("policy", FAST), **kw)


def test_satisfies_protocol_and_describes_itself(device):
    assert isinstance(device, Device)
    info = device.info()
    assert info["name"] == device.name and info["url"] == device.spec.url and "kind" in info


def test_check_reports_ok_with_facts(device):
    h = device.check()
    assert h.ok, h.detail
    assert h.device == device.name and h.facts
    assert h.to_json()["state"] == "online"  # every kind reports a connection state


def test_run_returns_a_consistent_measurement(device, tmp_path):
    w = _load(tmp_path, gemm_model(64), "gemm", device)
    m = device.run(w, _settings(device, w))
    assert m.device == device.name and m.workload == w.hash
    s = m.stats
    if m.samples_ms:
        assert s.n + s.n_outliers == len(m.samples_ms) and s.n >= 5
        assert min(m.samples_ms) <= s.median_ms <= max(m.samples_ms)
    else:  # a tool that reports only aggregates (benchmark_model) must say how the stats were derived
        assert s.n >= 5 and m.provenance["stats_method"]
    assert s.p10_ms <= s.median_ms <= s.p90_ms and s.ci_low_ms <= s.median_ms <= s.ci_high_ms
    assert s.median_ms > 0 and s.cv >= 0
    assert m.stop_reason in ("converged", "max_runs", "max_time")
    assert REQUIRED_PROVENANCE <= set(m.provenance), REQUIRED_PROVENANCE - set(m.provenance)
    assert m.provenance["threads"] == device.spec.threads


def test_more_work_takes_longer(device, tmp_path):
    small = _load(tmp_path, matmul_model(16), "small", device)
    big = _load(tmp_path, matmul_model(256), "big", device)  # 4096x the MACs
    t_small = device.run(small, _settings(device, small)).stats.median_ms
    t_big = device.run(big, _settings(device, big)).stats.median_ms
    assert t_big > 5 * t_small


def _rejected(kind: str, good: Workload) -> Workload:
    """A workload this kind of device must refuse: bytes its runtime cannot load, or for a
    simulator (which reads the graph) a graph in a precision its hardware does not have."""
    if kind == "sim":
        nodes = tuple(replace(n, outputs=tuple(replace(t, dtype="float64") for t in n.outputs)) for n in good.graph.nodes)
        return replace(good, graph=replace(good.graph, nodes=nodes), hash=hashlib.sha256(b"f64").hexdigest())
    junk = b"\x08\x07" + b"not a model" * 10
    return Workload(hashlib.sha256(junk).hexdigest(), good.format, "junk", None, good.graph, junk)


def test_rejected_model_is_a_model_error_and_device_survives(device, tmp_path):
    good = _load(tmp_path, gemm_model(8), "good", device)
    bad = _rejected(device.info()["kind"], good)
    with pytest.raises(ModelError):
        device.run(bad, _settings(device, bad))
    assert device.run(good, _settings(device, good)).stats.n > 0


def test_close_then_reuse(device, tmp_path):
    w = _load(tmp_path, gemm_model(8), "w", device)
    device.close()
    device.close()
    assert device.run(w, _settings(device, w)).stats.n > 0


def test_job_deadline_kills_the_run(tmp_path):
    # The deadline covers the agent's start-up too, so it leaves room for a loaded machine
    # (importing onnxruntime alone can take a second there); the endless run is still killed.
    spec = DeviceSpec(name="host-cpu", url="local://cpu", timeout_s=8.0)
    device = open_device(spec)
    try:
        w = _load(tmp_path, matmul_model(128), "m")
        endless = Policy(warmup=0, max_runs=10**7, max_time_s=600, target_ci=0)
        with pytest.raises(DeviceTimeout, match="killed"):
            device.run(w, Settings(policy=endless))
        quick = Policy(warmup=1, warmup_s=0, min_time_s=0, min_runs=3, max_runs=5, max_time_s=0.5)
        assert device.run(w, Settings(policy=quick)).stats.n > 0  # a fresh agent takes over
    finally:
        device.close()
