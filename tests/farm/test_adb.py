"""Android phones over ADB against the wire-protocol peer on 127.0.0.1 (tests/adbd.py): adb-shell's
real client code end to end — RSA auth, shell and sync services, the benchmark_model runner and
parser, deadlines, hostile names, dropped connections, thermal gate and the battery meter."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from farm.agent.measure import Policy
from farm.devices import open_device
from farm.devices.adb.device import DeviceUnauthorized
from farm.errors import DeviceError, DeviceTimeout, ModelError, RuntimeFailure
from farm.measurement import Settings
from farm.registry.spec import DeviceSpec, EnergySpec
from farm.workload import load_workload

from .. import adbd
from ..conftest import FAST, REGISTRY, gemm_model, run_cli

pytest.importorskip("adb_shell")
pytest.importorskip("ai_edge_litert")  # the stand-in benchmark_model runs models with LiteRT

from farm.formats.tflite_builder import fc_model  # noqa: E402

GOLDEN = Path(__file__).parent / "golden" / "benchmark_model"
QUICK = Settings(runtime="benchmark_model", threads=1, policy=Policy(warmup=2, warmup_s=0, max_runs=20, max_time_s=2))


@pytest.fixture
def phone(tmp_path):
    peer, spec = adbd.start_phone(tmp_path / "adb")
    yield peer, spec
    peer.close()


@pytest.fixture
def model(tmp_path) -> Path:
    p = tmp_path / "fc.tflite"
    p.write_bytes(fc_model(64, 32))
    return p


def _registry(tmp_path: Path, spec: DeviceSpec, **extra) -> Path:
    reg = tmp_path / "devices.yaml"
    reg.write_text(REGISTRY + adbd.spec_text(spec, **extra))
    return reg


def _device(spec: DeviceSpec, **changes):
    return open_device(spec.model_copy(update=changes))


def test_profile_end_to_end_through_the_cli(phone, tmp_path, model):
    peer, spec = phone
    reg = _registry(tmp_path, spec)
    args = ["--registry", str(reg), "--db", str(tmp_path / "h.db"), "profile", str(model), "--device", "phone",
            "--json", *FAST]
    p = run_cli(*args)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["device"] == "phone" and r["latency_ms"] > 0 and r["latency_stats"]["n"] == 20
    prov = r["provenance"]
    assert prov["runtime"] == "benchmark_model" and prov["phone"] == "Google Pixel 7" and prov["os"].startswith("Android 14")
    assert prov["stats_method"]["median"] == "benchmark_model median" and prov["battery_temperature_c"] == 31.2
    assert prov["delegate"]["created"] == ["XNNPACK CPU"] and r["kernels"]
    # The flags benchmark_model got: the policy mapped onto its options, op profiling on.
    argv = adbd.standin_calls(peer)[-1]["argv"]
    for flag in ("--num_threads=1", "--warmup_runs=2", "--num_runs=20", "--min_secs=0", "--max_secs=2",
                 "--enable_op_profiling=true"):
        assert flag in argv
    # Model and binary are cached on the phone by content hash: a forced re-run pushes nothing.
    cached = peer.tmp / "hwfarm" / "models" / f"{r['workload']}.tflite"
    assert cached.read_bytes() == model.read_bytes()
    pushes = len(peer.pushed)
    again = run_cli(*args, "--force")
    assert again.returncode == 0, again.stderr
    assert len(peer.pushed) == pushes and json.loads(again.stdout)["provenance"]["runtime_version"] == prov["runtime_version"]


def test_devices_check_reports_the_phone(phone, tmp_path):
    _, spec = phone
    p = run_cli("--registry", str(_registry(tmp_path, spec)), "devices", "check", "phone", "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    h = json.loads(p.stdout)
    f = h["facts"]
    assert h["ok"] and f["state"] == "online" == h["state"] and f["model"] == "Pixel 7" and f["android"] == "14"
    assert f["battery_level"] == 80 and f["battery_temperature_c"] == 31.2 and f["thermal_status"] == 0
    assert f["cpu_freq_mhz"]["cpu3"] == 2850 and f["benchmark_model"].startswith("/data/local/tmp/hwfarm/bin/")


def test_unauthorized_key_is_a_clear_error(tmp_path, model):
    stranger = adbd.make_client_key(tmp_path / "stranger")
    peer = adbd.AdbPeer(tmp_path / "phone")  # accepts no key
    try:
        spec = DeviceSpec(name="phone", url=f"adb://127.0.0.1:{peer.port}", key_file=str(stranger), timeout_s=1.5)
        dev = open_device(spec)
        h = dev.check()
        assert h.status == "unreachable" and h.facts["state"] == "unauthorized" == h.connection
        assert "unauthorized" in h.detail and "Allow USB debugging" in h.detail and f"{stranger}.pub" in h.detail
        with pytest.raises(DeviceUnauthorized):
            dev.run(load_workload(model), QUICK)
        p = run_cli("--registry", str(_registry(tmp_path, spec)), "devices", "check", "phone")
        assert p.returncode == 1 and "unauthorized" in p.stdout
        # The user taps "Allow": the key is accepted, then it signs its way in.
        peer.accept_new_keys = True
        assert dev.check().facts["state"] == "online"
        peer.accept_new_keys = False
        dev.close()
        assert dev.check().facts["state"] == "online"  # now it signs its way in
        dev.close()
    finally:
        peer.close()


def test_key_is_generated_once_in_the_config_dir(tmp_path, monkeypatch):
    import subprocess
    import sys

    cfg = tmp_path / "cfg"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(cfg))
    subprocess.run([sys.executable, "-c", "import farm.devices.adb.device"], check=True)  # importing writes nothing
    assert not cfg.exists()
    peer = adbd.AdbPeer(tmp_path / "phone", accept_new_keys=True)
    try:
        spec = DeviceSpec(name="phone", url=f"adb://127.0.0.1:{peer.port}", timeout_s=5)
        assert open_device(spec).check().facts["state"] == "online"
        key = cfg / "hwfarm" / "adbkey"
        first = key.read_bytes()
        assert Path(f"{key}.pub").exists() and oct(key.stat().st_mode & 0o777) == "0o600"
        assert open_device(spec).check().facts["state"] == "online" and key.read_bytes() == first
    finally:
        peer.close()


def test_deadline_kills_the_benchmark_on_the_phone(phone, model):
    peer, spec = phone
    adbd.standin_config(peer, mode="run", sleep_s=60)
    dev = _device(spec, timeout_s=2.0)
    try:
        w = load_workload(model)
        t0 = time.monotonic()
        with pytest.raises(DeviceTimeout, match="killed"):
            dev.run(w, QUICK)
        assert time.monotonic() - t0 < 20
        pid = adbd.standin_calls(peer)[-1]["pid"]
        assert adbd.wait_until(lambda: _gone(pid))  # loopback: the "phone" is this machine
        adbd.standin_config(peer, mode="run")
        assert dev.run(w, QUICK).stats.n > 0  # the phone is usable again
    finally:
        dev.close()


def test_shell_metacharacters_are_inert(phone, tmp_path):
    peer, spec = phone
    evil_dir = tmp_path / "x; touch PWNED1 #"
    evil_dir.mkdir()
    model = evil_dir / "m $(touch PWNED2) `touch PWNED3`; rm -rf ~ '\".tflite"
    model.write_bytes(fc_model(16, 8))
    lib = peer.tmp / "lib q.so"
    lib.write_bytes(b"\x7fELF")
    reg = _registry(tmp_path, spec, delegate="/data/local/tmp/lib q.so",
                    delegate_options={"backend_type": "htp; touch PWNED4 $(touch PWNED5)"})
    p = run_cli("--registry", str(reg), "--db", str(tmp_path / "h.db"), "profile", str(model), "--device", "phone",
                "--json", *FAST, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["model"] == str(model)
    argv = adbd.standin_calls(peer)[-1]["argv"]
    assert f"--external_delegate_path={lib}" in argv
    assert "--external_delegate_options=backend_type:htp; touch PWNED4 $(touch PWNED5)" in argv
    for where in (tmp_path, peer.tmp, peer.tmp / "hwfarm", Path.home(), Path("/tmp")):
        assert not any((where / f"PWNED{i}").exists() for i in range(1, 6))


@pytest.mark.slow
def test_disconnect_mid_job_is_retried_then_failed_with_the_reason(phone, tmp_path, model):
    peer, spec = phone
    adbd.standin_config(peer, mode="run", sleep_s=0.8)
    reg = _registry(tmp_path, spec)
    db = tmp_path / "h.db"
    peer.drop_connection_on("--graph=", times=1)
    p = run_cli("--registry", str(reg), "--db", str(db), "profile", str(model), "--device", "phone", "--json", *FAST)
    assert p.returncode == 0, p.stderr
    jobs = [json.loads(x) for x in run_cli("--db", str(db), "--registry", str(reg), "jobs", "list", "--json")
            .stdout.splitlines()]
    assert jobs[-1]["status"] == "done" and jobs[-1]["attempts"] == 2
    assert peer.connections >= 2  # reconnected after the drop
    peer.drop_connection_on("--graph=", times=10)
    p = run_cli("--registry", str(reg), "--db", str(db), "profile", str(model), "--device", "phone", "--json",
                *FAST, "--force")
    assert p.returncode == 1
    jobs = [json.loads(x) for x in run_cli("--db", str(db), "--registry", str(reg), "jobs", "list", "--json")
            .stdout.splitlines()]
    last = jobs[-1]
    assert last["status"] == "failed" and last["attempts"] == last["max_attempts"] == 3
    assert "connection lost" in last["error"]
    # what was measured before is still there
    shown = run_cli("--db", str(db), "--registry", str(reg), "dataset", "show", "--device", "phone", "--json")
    assert shown.returncode == 0 and shown.stdout.strip()


def test_recorded_nnapi_run_reports_the_delegate_and_the_cpu_fallback(phone, model):
    peer, spec = phone
    adbd.standin_config(peer, mode="golden", golden=str(GOLDEN / "tf2.4_mi11_nnapi_gpu_op_profiling.txt"))
    dev = _device(spec, delegate="nnapi", delegate_options={"nnapi_accelerator_name": "qti-gpu"})
    try:
        m = dev.run(load_workload(model), QUICK)
    finally:
        dev.close()
    assert "--use_nnapi=true" in adbd.standin_calls(peer)[-1]["argv"]
    d = m.provenance["delegate"]
    assert d["requested"] == "nnapi" and d["ran"] == ["TfLiteNnapiDelegate"] and d["coverage"] == "partial"
    assert d["cpu_fallback_ops"] == ["RESIZE_NEAREST_NEIGHBOR", "STRIDED_SLICE"]
    assert m.stats.median_ms == pytest.approx(156.669) and m.stats.n == 50 and m.peak_memory_kb == pytest.approx(61.0078 * 1024)
    placements = {k["class"]: k["placement"] for k in m.breakdown}
    assert placements == {"STRIDED_SLICE": "cpu", "TfLiteNnapiDelegate": "delegate:TfLiteNnapiDelegate",
                          "RESIZE_NEAREST_NEIGHBOR": "cpu"}
    assert sum(k["latency_ms"] for k in m.breakdown) == pytest.approx(158.7, abs=0.1)


@pytest.mark.parametrize(("golden", "error", "match"), [
    ("tf2.4_mi11_nnapi_dsp_failed.txt", RuntimeFailure, "Failed to apply NNAPI delegate"),
    ("tf2.1x_xnnpack_partial_allocate_failed.txt", ModelError, "Failed to allocate tensors"),
])
def test_recorded_failures(phone, model, golden, error, match):
    peer, spec = phone
    adbd.standin_config(peer, mode="golden", golden=str(GOLDEN / golden), rc=1)
    dev = _device(spec, delegate="nnapi")
    try:
        with pytest.raises(error, match=match):
            dev.run(load_workload(model), QUICK)
    finally:
        dev.close()


def test_onnx_model_is_refused_before_the_phone_is_touched(phone, tmp_path):
    import onnx

    peer, spec = phone
    path = tmp_path / "g.onnx"
    onnx.save(gemm_model(8), path)
    p = run_cli("--registry", str(_registry(tmp_path, spec)), "--db", str(tmp_path / "h.db"), "profile", str(path),
                "--device", "phone", *FAST)
    assert p.returncode == 2 and "benchmark_model runs .tflite models" in p.stderr
    assert not adbd.standin_calls(peer)


def test_external_delegate_missing_is_a_failed_check(phone):
    _, spec = phone
    h = _device(spec, delegate="/vendor/lib64/libQnnTFLiteDelegate.so").check()
    assert h.status == "unavailable" and "libQnnTFLiteDelegate.so" in h.detail


def test_missing_benchmark_model_or_wrong_runtime_is_a_failed_check(phone):
    _, spec = phone
    h = _device(spec, benchmark_model="/data/local/tmp/nowhere/benchmark_model").check()
    assert h.status == "unavailable" and "benchmark_model not found" in h.detail
    h = _device(spec, runtime="onnxruntime").check()
    assert h.status == "error" and "adb devices run benchmark_model" in h.detail


def test_usb_phone_that_is_not_plugged_in(tmp_path):
    key = adbd.make_client_key(tmp_path / "k")
    h = open_device(DeviceSpec(name="usbphone", url="adb://usb/NOPE123", key_file=str(key), timeout_s=2)).check()
    assert h.status in ("unreachable", "unavailable") and "usb/NOPE123" in h.detail and h.facts["state"] != "online"


def test_affinity_is_applied_with_taskset(phone, model):
    peer, spec = phone
    dev = _device(spec, affinity=(0,))
    try:
        m = dev.run(load_workload(model), QUICK)
    finally:
        dev.close()
    assert adbd.standin_calls(peer)[-1]["affinity"] == [0] and m.provenance["affinity"] == [0]
    assert " taskset 1 " in peer.commands[-1]


def test_thermal_gate_waits_for_the_phone_to_cool(phone, model):
    peer, spec = phone
    dev = _device(spec, thermal_gate_c=40.0, timeout_s=20)
    try:
        dev.run(load_workload(model), QUICK)  # binary and model staged: what follows is the gate
        peer.set_battery(temp_c=45.0)
        threading.Timer(1.0, lambda: peer.set_battery(temp_c=33.0)).start()
        m = dev.run(load_workload(model), QUICK)
        assert m.provenance["thermal_wait_s"] >= 0.5 and m.provenance["battery_temperature_c"] == 33.0
        peer.set_thermal_status(3)  # severe, whatever the battery says
        hot = _device(spec, timeout_s=1.0)
        with pytest.raises(DeviceError, match="still hot"):
            hot.run(load_workload(model), QUICK)
        hot.close()
    finally:
        dev.close()


def test_energy_from_the_battery_meter(phone, model):
    peer, spec = phone
    adbd.standin_config(peer, mode="run", sleep_s=0.5)
    dev = _device(spec, energy=EnergySpec(meter="android-battery", sample_hz=20))
    try:
        m = dev.run(load_workload(model), QUICK)
        e = m.provenance["energy"]
        assert e["sign_convention"] == "negative-discharge" and e["current_unit"] == "uA" and e["n_samples"] >= 3
        assert e["mean_power_w"] == pytest.approx(0.45 * 3.95) and e["sample_hz_requested"] == 20
        assert m.energy_mj == pytest.approx(0.45 * 3.95 * m.stats.median_ms)
        peer.set_battery(status="Charging", current_ua=900000, usb=True)
        m = dev.run(load_workload(model), QUICK)
        assert m.energy_mj is None and "charging" in m.provenance["energy"]["not_measured"]
    finally:
        dev.close()


def test_offline_phone(tmp_path, model):
    peer, spec = adbd.start_phone(tmp_path / "adb")
    peer.close()
    dev = open_device(spec)
    h = dev.check()
    assert h.status == "unreachable" and h.facts["state"] == "offline" and "offline" in h.detail
    with pytest.raises(DeviceError, match="offline"):
        dev.run(load_workload(model), QUICK)


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def test_no_stray_processes_after_close(phone, model):
    peer, spec = phone
    dev = open_device(spec)
    dev.run(load_workload(model), QUICK)
    dev.close()
    assert adbd.wait_until(lambda: not peer.live_processes(), 5)
    assert os.getpid() > 0
