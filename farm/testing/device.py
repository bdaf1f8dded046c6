"""Conformance suite for :class:`farm.devices.base.Device`.

``make_device()`` returns a fresh, reachable device (the host itself, a board on a loopback
sshd, a phone behind a test ADB daemon, a firmware emulator on a pty, a seeded simulator,
your plugin's test rig). Each check opens its own device and closes it. Checks adapt to what
the device says it is (:attr:`Device.caps`), never to its URL scheme: a runtime that takes
only ``.tflite`` gets TFLite models of the same layer widths, a simulated device is given a
graph its hardware cannot compute instead of unreadable bytes.

    from farm.testing.device import check_device
    check_device(lambda: open_device(my_spec))

:func:`check_deadline_kills_the_run` is separate: it needs a device whose ``timeout_s`` is
short (a few seconds) and a real clock, so simulated devices skip it.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from farm.agent.measure import Policy
from farm.devices.base import STATES, Device
from farm.errors import DeviceTimeout, ModelError
from farm.measurement import Settings, resolve_runtime
from farm.testing._models import gemm_model, matmul_model, save_onnx, save_tflite_fc
from farm.testing._util import expect_raises
from farm.workload import Workload

__all__ = ["DEVICE_CHECKS", "FAST", "REQUIRED_PROVENANCE", "check_device", "check_deadline_kills_the_run",
           "check_satisfies_protocol_and_describes_itself", "check_check_reports_ok_with_facts",
           "check_run_returns_a_consistent_measurement", "check_more_work_takes_longer",
           "check_rejected_model_is_a_model_error_and_device_survives", "check_close_then_reuse"]

MakeDevice = Callable[[], Device]

REQUIRED_PROVENANCE = frozenset({"runtime", "runtime_version", "threads", "python", "os", "cpu_model",
                                 "hwfarm_version", "simulated", "device"})
# Fast measurement settings: accuracy is not under test here, behaviour is.
FAST = Policy(warmup=2, warmup_s=0, min_time_s=0, min_runs=5, max_runs=30, max_time_s=2.0)


def _takes_tflite_only(device: Device) -> bool:
    runtime = device.caps.runtime
    return resolve_runtime(runtime, "onnx") != runtime and resolve_runtime(runtime, "tflite") == runtime


def _gemm(device: Device, tmp: Path, hidden: int, name: str) -> Workload:
    """gemm_model(hidden), or for TFLite-only runtimes a FULLY_CONNECTED 32 → hidden."""
    if _takes_tflite_only(device):
        return save_tflite_fc(32, hidden, tmp / f"{name}.tflite")
    return save_onnx(gemm_model(hidden), tmp / f"{name}.onnx")


def _matmul(device: Device, tmp: Path, n: int, name: str) -> Workload:
    """matmul_model(n) (n³ MACs), or for TFLite-only runtimes a FULLY_CONNECTED n → n²/16
    (n³/16 MACs), so sizes keep their order."""
    if _takes_tflite_only(device):
        return save_tflite_fc(n, n * n // 16, tmp / f"{name}.tflite")
    return save_onnx(matmul_model(n), tmp / f"{name}.onnx")


def _settings(device: Device, w: Workload, **kw: Any) -> Settings:
    return Settings(runtime=resolve_runtime(device.caps.runtime, w.format), threads=device.spec.threads,
                    policy=kw.pop("policy", FAST), **kw)


def _rejected(device: Device, good: Workload) -> Workload:
    """A workload the device must refuse: bytes its runtime cannot load, or for a simulator
    (which reads the graph) a graph in a precision its hardware does not have."""
    if device.caps.simulated:
        nodes = tuple(replace(n, outputs=tuple(replace(t, dtype="float64") for t in n.outputs))
                      for n in good.graph.nodes)
        return replace(good, graph=replace(good.graph, nodes=nodes), hash=hashlib.sha256(b"f64").hexdigest())
    junk = b"\x08\x07" + b"not a model" * 10
    return Workload(hashlib.sha256(junk).hexdigest(), good.format, "junk", None, good.graph, junk)


def check_satisfies_protocol_and_describes_itself(make_device: MakeDevice) -> None:
    device = make_device()
    try:
        assert isinstance(device, Device), f"{type(device).__name__} does not satisfy the Device protocol"
        info = device.info()
        assert info["name"] == device.name, f"info()['name'] is {info['name']!r}, the device is {device.name!r}"
        assert info["url"] == device.spec.url, f"info()['url'] is {info['url']!r}, the spec's is {device.spec.url!r}"
        assert "kind" in info, f"{device.name}: info() has no 'kind': {sorted(info)}"
    finally:
        device.close()


def check_check_reports_ok_with_facts(make_device: MakeDevice) -> None:
    device = make_device()
    try:
        h = device.check()
        assert h.ok, f"{device.name}: check() is not ok: {h.status}: {h.detail}"
        assert h.device == device.name, f"check() names {h.device!r}, the device is {device.name!r}"
        assert h.facts, f"{device.name}: check() reports no facts"
        state = h.to_json()["state"]
        assert state == "online", f"{device.name}: a healthy device's state is {state!r}, not 'online'"
        assert state in STATES
    finally:
        device.close()


def check_run_returns_a_consistent_measurement(make_device: MakeDevice) -> None:
    device = make_device()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            w = _gemm(device, Path(tmp), 64, "gemm")
            m = device.run(w, _settings(device, w))
        assert m.device == device.name, f"measurement names device {m.device!r}, not {device.name!r}"
        assert m.workload == w.hash, "measurement's workload is not the workload's hash"
        s = m.stats
        if m.samples_ms:
            assert s.n + s.n_outliers == len(m.samples_ms), \
                f"{device.name}: n {s.n} + outliers {s.n_outliers} != {len(m.samples_ms)} samples"
            assert s.n >= 5, f"{device.name}: {s.n} runs, the policy asks for at least 5"
            assert min(m.samples_ms) <= s.median_ms <= max(m.samples_ms), \
                f"{device.name}: median {s.median_ms} outside the samples"
        else:  # a tool that reports only aggregates (benchmark_model) must say how the stats were derived
            assert s.n >= 5, f"{device.name}: {s.n} runs, the policy asks for at least 5"
            assert m.provenance["stats_method"], f"{device.name}: no samples and no provenance 'stats_method'"
        assert s.p10_ms <= s.median_ms <= s.p90_ms, f"{device.name}: p10/median/p90 out of order: {s}"
        assert s.ci_low_ms <= s.median_ms <= s.ci_high_ms, f"{device.name}: median outside its CI: {s}"
        assert s.median_ms > 0 and s.cv >= 0, f"{device.name}: median {s.median_ms}, cv {s.cv}"
        assert m.stop_reason in ("converged", "max_runs", "max_time"), f"stop_reason {m.stop_reason!r}"
        missing = REQUIRED_PROVENANCE - set(m.provenance)
        assert not missing, f"{device.name}: provenance lacks {sorted(missing)}"
        assert m.provenance["threads"] == device.spec.threads, \
            f"{device.name}: ran with {m.provenance['threads']} threads, the spec says {device.spec.threads}"
    finally:
        device.close()


def check_more_work_takes_longer(make_device: MakeDevice) -> None:
    device = make_device()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            small = _matmul(device, Path(tmp), 16, "small")
            big = _matmul(device, Path(tmp), 256, "big")  # 4096x the MACs
            t_small = device.run(small, _settings(device, small)).stats.median_ms
            t_big = device.run(big, _settings(device, big)).stats.median_ms
        assert t_big > 5 * t_small, f"{device.name}: 4096x the MACs took {t_big:.4g} ms vs {t_small:.4g} ms"
    finally:
        device.close()


def check_rejected_model_is_a_model_error_and_device_survives(make_device: MakeDevice) -> None:
    device = make_device()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            good = _gemm(device, Path(tmp), 8, "good")
            bad = _rejected(device, good)
            expect_raises(ModelError, lambda: device.run(bad, _settings(device, bad)),
                          f"{device.name}: running a model it cannot run")
            m = device.run(good, _settings(device, good))
        assert m.stats.n > 0, f"{device.name}: no runs after a rejected model"
    finally:
        device.close()


def check_close_then_reuse(make_device: MakeDevice) -> None:
    device = make_device()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            w = _gemm(device, Path(tmp), 8, "w")
            device.close()
            device.close()  # closing twice is harmless
            m = device.run(w, _settings(device, w))
        assert m.stats.n > 0, f"{device.name}: no runs after close()"
    finally:
        device.close()


def check_deadline_kills_the_run(make_device: MakeDevice) -> None:
    """A run past the device's ``timeout_s`` raises DeviceTimeout (saying the run was killed)
    and the next run works. ``make_device`` must return a device with a short ``timeout_s``
    (8 s leaves room for an agent's start-up on a loaded machine)."""
    device = make_device()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            w = _matmul(device, Path(tmp), 128, "m")
            endless = Policy(warmup=0, max_runs=10**7, max_time_s=600, target_ci=0)
            err = expect_raises(DeviceTimeout, lambda: device.run(w, _settings(device, w, policy=endless)),
                                f"{device.name}: a run longer than timeout_s {device.spec.timeout_s:g} s")
            assert "killed" in str(err), f"{device.name}: the timeout does not say the run was killed: {err}"
            quick = Policy(warmup=1, warmup_s=0, min_time_s=0, min_runs=3, max_runs=5, max_time_s=0.5)
            m = device.run(w, _settings(device, w, policy=quick))
        assert m.stats.n > 0, f"{device.name}: no runs after a killed run"  # a fresh agent takes over
    finally:
        device.close()


DEVICE_CHECKS: tuple[Callable[[MakeDevice], None], ...] = (
    check_satisfies_protocol_and_describes_itself,
    check_check_reports_ok_with_facts,
    check_run_returns_a_consistent_measurement,
    check_more_work_takes_longer,
    check_rejected_model_is_a_model_error_and_device_survives,
    check_close_then_reuse,
)


def check_device(make_device: MakeDevice) -> None:
    """Run every check of :data:`DEVICE_CHECKS`; the first failure raises AssertionError."""
    for check in DEVICE_CHECKS:
        check(make_device)
