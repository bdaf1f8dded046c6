"""serial:// MCU devices end to end against the firmware emulator on a pseudo-terminal."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

import onnx
import pytest

from farm.agent.measure import Policy
from farm.devices import open_device
from farm.devices.serial.device import input_bytes, port_url, workload_matches
from farm.errors import DeviceError, DeviceTimeout, InputError, ModelError
from farm.measurement import Settings
from farm.registry.spec import DeviceSpec
from farm.scheduler.core import Scheduler
from farm.store.sqlite import SqliteStore
from farm.workload import load_workload

from ..conftest import FAST, gemm_model, matmul_model, run_cli
from ..mcu_emulator import Fault, McuEmulator

pytest.importorskip("serial")

POLICY = Policy(warmup=2, warmup_s=0, min_time_s=0, min_runs=5, max_runs=30, max_time_s=2.0)


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "gemm.onnx"
    onnx.save(gemm_model(64), path)
    return path


def _emulator(tmp_path: Path, model: Path, **kw) -> McuEmulator:
    w = load_workload(model)
    return McuEmulator(w.graph, w.name, tmp_path / "ttyMCU", **kw).start()


@pytest.fixture
def emu(tmp_path, model):
    e = _emulator(tmp_path, model)
    yield e
    e.stop()


def _registry(tmp_path: Path, url: str, extra: str = "") -> Path:
    reg = tmp_path / "devices.yaml"
    reg.write_text(f"devices:\n  - name: mcu\n    url: {url}\n    timeout_s: 30\n{extra}")
    return reg


def _run(spec: DeviceSpec, path: Path):
    device = open_device(spec)
    try:
        return device.run(load_workload(path), Settings(runtime="eembc", policy=POLICY))
    finally:
        device.close()


# ---------------------------------------------------------------------------- end to end through the CLI


def test_profile_cli_json_against_the_emulator(tmp_path, model, emu):
    reg = _registry(tmp_path, emu.url, "    firmware_model: gemm\n")
    db = tmp_path / "hwfarm.db"
    check = run_cli("--registry", str(reg), "devices", "check", "mcu", "--json")
    assert check.returncode == 0, check.stdout + check.stderr
    facts = json.loads(check.stdout.splitlines()[0])["facts"]
    assert facts["firmware_model"] == "gemm" and facts["baud"] == 115200

    p = run_cli("--registry", str(reg), "--db", str(db), "profile", str(model), "--device", "mcu", "--json", *FAST)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    prov = out["provenance"]
    assert out["device"] == "mcu" and out["source"] == "measured"
    assert prov["simulated"] is False and prov["runtime"] == "eembc"
    assert prov["firmware_model"] == "gemm" and prov["firmware_name"] == "hwfarm emulator"
    assert prov["baud"] == 115200 and prov["port"] == str(tmp_path / "ttyMCU")
    assert prov["runtime_version"].startswith("ULPMark for tinyML")
    stats = out["latency_stats"]
    assert stats["n"] >= 5 and stats["p10"] <= stats["median"] <= stats["p90"] and stats["cv"] >= 0
    # the firmware's own timer: the simulated latency with ~2 % noise
    assert out["latency_ms"] == pytest.approx(emu.latency_us / 1e3, rel=0.05)
    # the measurement is in the dataset, and the firmware got every input byte
    rows = sqlite3.connect(db).execute("select count(*) from measurements").fetchone()
    assert rows == (1,)
    assert bytes(emu._db) == input_bytes(load_workload(model))
    assert any(c.startswith("infer ") and c.endswith(" 0") for c in emu.commands)


def test_same_latency_as_the_simulated_device(tmp_path, model, emu):
    """The emulator reports the Cortex-M7 simulator's latency; the serial path must not distort it."""
    assert emu.profile.name == "cortex_m7"
    m = _run(DeviceSpec(name="mcu", url=emu.url), model)
    sim = open_device(DeviceSpec(name="sim", url="sim://cortex_m7?seed=1")).run(
        load_workload(model), Settings(runtime="sim", policy=POLICY))
    assert m.stats.median_ms == pytest.approx(sim.stats.median_ms, rel=0.05)
    assert m.provenance["inferences_per_sample"] >= 1


def test_int8_model_is_timed_by_the_cortex_m7_profile(tmp_path):
    """An int8 .tflite (what MLPerf Tiny firmware runs) on the emulated board: int8 kernels of
    the Cortex-M7 profile, the same latency as the simulated device, faster than its float twin."""
    pytest.importorskip("ai_edge_litert")
    from farm.formats.tflite_builder import fc_model, fc_model_int8

    path = tmp_path / "fc_int8.tflite"
    path.write_bytes(fc_model_int8(64, 16))
    w = load_workload(path)
    assert {t.dtype for n in w.graph.nodes for t in n.inputs} >= {"int8"}
    e = _emulator(tmp_path, path)
    try:
        m = _run(DeviceSpec(name="mcu", url=e.url), path)
    finally:
        e.stop()
    assert bytes(e._db) == input_bytes(w) and len(e._db) == 64  # int8 input: one byte per element
    sim = open_device(DeviceSpec(name="sim", url="sim://cortex_m7?seed=1")).run(w, Settings(runtime="sim", policy=POLICY))
    assert m.stats.median_ms == pytest.approx(sim.stats.median_ms, rel=0.05)
    fpath = tmp_path / "fc.tflite"
    fpath.write_bytes(fc_model(64, 16))
    f = _emulator(tmp_path, fpath)
    try:
        mf = _run(DeviceSpec(name="mcu", url=f.url), fpath)
    finally:
        f.stop()
    assert mf.stats.median_ms > m.stats.median_ms


def test_timer_wraparound_is_unwrapped(tmp_path, model):
    e = _emulator(tmp_path, model, timer_start_us=2**32 - 300)
    try:
        m = _run(DeviceSpec(name="mcu", url=e.url), model)
    finally:
        e.stop()
    assert min(m.samples_ms) > 0 and m.stats.median_ms == pytest.approx(e.latency_us / 1e3, rel=0.05)


# ---------------------------------------------------------------------------- faults


def test_garbled_lines_are_retried_and_the_result_is_right(tmp_path, model):
    faults = [Fault("garble", "profile"), Fault("garble", "db", skip=2), Fault("garble", "infer", skip=3, times=2)]
    e = _emulator(tmp_path, model, faults=faults)
    try:
        m = _run(DeviceSpec(name="mcu", url=e.url), model)
    finally:
        e.stop()
    assert m.provenance["garbled_retries"] == 4
    assert m.stats.median_ms == pytest.approx(e.latency_us / 1e3, rel=0.05)
    assert all(f.times == 0 for f in faults)  # every fault fired


def test_garbled_every_time_gives_up_naming_the_device(tmp_path, model):
    e = _emulator(tmp_path, model, faults=[Fault("garble", "name", times=99)])
    try:
        with pytest.raises(DeviceError, match=r"device 'mcu': 3 garbled answers to `name`"):
            _run(DeviceSpec(name="mcu", url=e.url), model)
    finally:
        e.stop()


def test_hang_is_a_timeout_naming_the_device(tmp_path, model):
    e = _emulator(tmp_path, model, faults=[Fault("hang", "infer", skip=2)])
    try:
        url = e.url.replace("timeout=2", "timeout=0.5")
        with pytest.raises(DeviceTimeout, match=r"device 'mcu': no answer to `infer \d+ \d+` on .*ttyMCU"):
            _run(DeviceSpec(name="mcu", url=url), model)
    finally:
        e.stop()


def test_every_read_is_bounded_by_the_job_deadline(tmp_path, model):
    e = _emulator(tmp_path, model, faults=[Fault("hang", "infer", skip=2)])
    try:
        url = e.url.replace("timeout=2", "timeout=300")
        with pytest.raises(DeviceTimeout, match=r"device 'mcu': no answer to `infer \d+ \d+` .* within 0\.\d+ s"):
            _run(DeviceSpec(name="mcu", url=url, timeout_s=0.8), model)
    finally:
        e.stop()


def test_disconnect_mid_job_is_retried_after_reconnect(tmp_path, model):
    e = _emulator(tmp_path, model, faults=[Fault("disconnect", "infer", skip=3, reconnect_after_s=0.2)])
    reg = _registry(tmp_path, e.url)
    db = tmp_path / "hwfarm.db"
    try:
        p = run_cli("--registry", str(reg), "--db", str(db), "profile", str(model), "--device", "mcu", "--json", *FAST)
        jobs = run_cli("--db", str(db), "jobs", "list", "--json")
    finally:
        e.stop()
    assert p.returncode == 0, p.stderr
    assert "retry" in p.stderr and "disconnected" in p.stderr
    job = json.loads(jobs.stdout.splitlines()[0])
    assert job["status"] == "done" and job["attempts"] == 2


def test_disconnect_for_good_fails_with_the_reason_and_stores_nothing(tmp_path, model):
    e = _emulator(tmp_path, model, faults=[Fault("disconnect", "infer", skip=3)])
    spec = DeviceSpec(name="mcu", url=e.url)
    store = SqliteStore(tmp_path / "hwfarm.db")
    sched = Scheduler(store, backoff_s=0.05, outage_s=0)  # gone for good: no outage window to wait out
    w = load_workload(model)
    try:
        sub = sched.submit(spec, w, Settings(runtime="eembc", policy=POLICY))
        report = sched.run([spec], workloads={w.hash: w})
    finally:
        e.stop()
    assert sub.job is not None and not report.done
    failure = report.failed[sub.job.id]
    assert failure.exit_code == 1
    assert failure.message.startswith(f"device 'mcu': cannot open serial port {tmp_path / 'ttyMCU'} at 115200 baud")
    job = store.jobs()[0]
    assert job.status == "failed" and job.attempts == 3 and "cannot open serial port" in (job.error or "")
    assert store.measurements() == []
    assert sum(c.startswith("infer") for c in e.commands) == 4  # calibrate, warm up, 2 samples, then gone


# ---------------------------------------------------------------------------- which model runs


def test_model_mismatch_is_refused_clearly(tmp_path, emu):
    other = tmp_path / "other.onnx"
    onnx.save(gemm_model(32), other)
    reg = _registry(tmp_path, emu.url)
    db = tmp_path / "hwfarm.db"
    p = run_cli("--registry", str(reg), "--db", str(db), "profile", str(other), "--device", "mcu", *FAST)
    assert p.returncode == 2
    line = " ".join(p.stderr.split())
    assert "device 'mcu': its firmware runs model 'gemm', not 'other'" in line and "flash_command" in line
    assert not any(c.startswith("infer") for c in emu.commands)  # refused before measuring
    assert sqlite3.connect(db).execute("select count(*) from measurements").fetchone() == (0,)


def test_flash_command_reflashes_the_board(tmp_path, model, emu):
    flash = tmp_path / "flash"
    flash.mkdir()
    emu.flash_dir = flash
    big = tmp_path / "big mm.onnx"  # a space in the name: arguments are substituted, not shell-parsed
    onnx.save(matmul_model(128), big)
    spec = DeviceSpec(name="mcu", url=emu.url, flash_command=f"cp {{model}} {flash}/")
    m_big = _run(spec, big)
    assert m_big.provenance["firmware_model"] == "big mm"
    m_small = _run(spec, model)
    assert m_small.provenance["firmware_model"] == "gemm"
    assert m_big.stats.median_ms > 5 * m_small.stats.median_ms


def test_flash_command_refuses_junk_and_reports_failures(tmp_path, model, emu):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07not a model" * 5)
    w = load_workload(model)
    bad = w.__class__(w.hash[::-1], "onnx", "junk", None, w.graph, junk.read_bytes())
    device = open_device(DeviceSpec(name="mcu", url=emu.url, flash_command="true"))
    try:
        with pytest.raises(ModelError, match="not a valid ONNX model; nothing flashed|nothing flashed"):
            device.run(bad, Settings(runtime="eembc", policy=POLICY))
    finally:
        device.close()
    device = open_device(DeviceSpec(name="mcu", url=emu.url, flash_command="false"))
    other = tmp_path / "other.onnx"
    onnx.save(gemm_model(16), other)
    try:
        with pytest.raises(DeviceError, match=r"flash_command for 'other' failed \(exit 1\)"):
            device.run(load_workload(other), Settings(runtime="eembc", policy=POLICY))
    finally:
        device.close()


def test_check_flags_the_wrong_firmware(tmp_path, emu):
    h = open_device(DeviceSpec(name="mcu", url=emu.url, firmware_model="kws01")).check()
    assert h.status == "error" and "reports model 'gemm'" in h.detail and "kws01" in h.detail


def test_unreachable_port(tmp_path, model):
    spec = DeviceSpec(name="mcu", url=f"serial://{tmp_path}/ttyNONE?baud=9600")
    h = open_device(spec).check()
    assert h.status == "unreachable" and "cannot open serial port" in h.detail and "ttyNONE" in h.detail
    assert h.connection == "offline"
    with pytest.raises(DeviceError, match="device 'mcu': cannot open serial port .*ttyNONE at 9600 baud"):
        _run(spec, model)


# ---------------------------------------------------------------------------- small pure parts


@pytest.mark.parametrize("url, port", [
    ("serial:///dev/ttyACM0?baud=115200", "/dev/ttyACM0"),
    ("serial:///dev/serial/by-id/usb-STM_Nucleo-if02", "/dev/serial/by-id/usb-STM_Nucleo-if02"),
    ("serial://socket/10.0.0.7:7000", "socket://10.0.0.7:7000"),
    ("serial://rfc2217/lab-bridge:4000?baud=9600", "rfc2217://lab-bridge:4000"),
    ("serial://loop/", "loop://"),
])
def test_port_url(url, port):
    assert port_url(DeviceSpec(name="m", url=url)) == port


@pytest.mark.parametrize("query", ["baud=fast", "timeout=-1", "baud=0"])
def test_bad_query_is_input_error(query):
    with pytest.raises(InputError, match="device 'm'"):
        open_device(DeviceSpec(name="m", url=f"serial:///dev/ttyACM0?{query}"))


def test_workload_matches(model):
    w = load_workload(model)
    assert workload_matches("gemm", w) and workload_matches("GEMM ", w)
    assert workload_matches(w.hash[:12], w) and not workload_matches(w.hash[:8], w)
    assert not workload_matches("ic01", w)


def test_input_bytes_are_seeded_and_sized(model):
    w = load_workload(model)
    data = input_bytes(w)
    assert len(data) == 32 * 4 and data == input_bytes(w)  # [1, 32] float32


def test_input_larger_than_the_firmware_buffer_is_a_model_error(tmp_path):
    path = tmp_path / "mm.onnx"
    onnx.save(matmul_model(64), path)  # a 16 KiB float input
    e = _emulator(tmp_path, path, max_input_bytes=4096)
    try:
        with pytest.raises(ModelError, match=r"does not fit device 'mcu'.*16384 bytes.*MAX_DB_INPUT_SIZE = 4096"):
            _run(DeviceSpec(name="mcu", url=e.url), path)
    finally:
        e.stop()


# ---------------------------------------------------------------------------- energy (external meter command)

METER = """\
import signal, sys, time
t0 = time.monotonic()
def stop(*_):
    s = time.monotonic() - t0
    print(f"{0.05 * s:.9f} {s:.6f}")  # a constant 50 mW load, integrated: joules, seconds
    sys.exit(0)
signal.signal(signal.SIGINT, stop)
print("meter ready", flush=True)
while True:
    time.sleep(0.005)
"""


def test_energy_from_a_meter_command(tmp_path, model):
    meter = tmp_path / "meter.py"
    meter.write_text(METER)
    e = _emulator(tmp_path, model)
    try:
        spec = DeviceSpec(name="mcu", url=e.url, energy={"meter": "command", "command": f"{sys.executable} {meter}"})
        m = _run(spec, model)
    finally:
        e.stop()
    prov = m.provenance
    assert prov["energy_window_source"] == "meter" and prov["energy_avg_power_mw"] == pytest.approx(50, rel=1e-3)
    assert prov["energy_inferences"] >= 1000 and prov["energy_method"].startswith("command meter")
    # 50 mW x the per-inference time of the window
    assert m.energy_mj == pytest.approx(0.05 * e.latency_us / 1e6 * 1e3, rel=0.05)
    assert m.to_json()["energy_mj"] == m.energy_mj


@pytest.mark.parametrize("command, match", [
    ("true", r"energy meter command 'true' exited \(code 0\) before its ready line"),
    ("sh -c 'trap \"echo oops; exit 0\" INT; echo ready; while :; do sleep 0.01; done'",
     r"printed no joules after SIGINT \(exit 0; last line 'oops'"),
    ("no-such-meter-binary", "cannot run: No such file or directory"),
])
def test_energy_meter_failures_fail_the_run_clearly(tmp_path, model, emu, command, match):
    spec = DeviceSpec(name="mcu", url=emu.url, energy={"meter": "command", "command": command})
    with pytest.raises(DeviceError, match=match):
        _run(spec, model)


def test_energy_meter_kind_other_than_command_is_refused(emu):
    with pytest.raises(InputError, match="device 'mcu' field 'energy'.*meter: command"):
        open_device(DeviceSpec(name="mcu", url=emu.url, energy={"meter": "rapl"}))


def test_a_port_in_use_is_refused_clearly(emu):
    first = open_device(DeviceSpec(name="mcu", url=emu.url))
    second = open_device(DeviceSpec(name="mcu2", url=emu.url))
    try:
        assert first.identify().model == "gemm"  # holds the port open
        h = second.check()
        assert h.status == "busy" == h.connection and "device 'mcu2': cannot open serial port" in h.detail
        assert "in use by another program?" in h.detail
    finally:
        first.close()
        second.close()
    assert second.check().ok


def test_emulator_script_serves_a_board_until_stopped(tmp_path, model):
    import subprocess

    link = tmp_path / "ttyS"
    script = Path(__file__).resolve().parents[1] / "mcu_emulator.py"
    proc = subprocess.Popen([sys.executable, str(script), str(model), "--link", str(link)],
                            stdout=subprocess.PIPE, text=True)
    try:
        banner = proc.stdout.readline() if proc.stdout else ""
        assert banner.startswith("emulating gemm") and f"serial://{link}?baud=115200" in banner
        h = open_device(DeviceSpec(name="mcu", url=f"serial://{link}", firmware_model="gemm")).check()
        assert h.ok, h.detail
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    assert not link.exists()


@pytest.mark.parametrize("field, value", [("flash_command", "cp '{model} /x"), ("flash_command", "  ")])
def test_unsplittable_commands_are_input_errors(field, value):
    with pytest.raises(InputError, match=f"device 'm' field '{field}'"):
        open_device(DeviceSpec(name="m", url="serial:///dev/ttyACM0", **{field: value}))


def test_without_pyserial_the_kind_is_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "serial", None)  # import serial → ImportError
    with pytest.raises(DeviceError, match=r"serial devices need pyserial: pip install 'hwfarm\[serial\]'"):
        open_device(DeviceSpec(name="m", url="serial:///dev/ttyACM0"))


def test_termios_errors_of_a_vanished_port_are_device_errors(monkeypatch, emu):
    """flush() is tcdrain: EIO once the other end is gone raises termios.error, not OSError."""
    import termios

    from farm.devices.serial.device import SerialLink

    link = SerialLink("mcu", str(emu.link), 115200, timeout_s=2)
    link.open()
    monkeypatch.setattr(link._ser, "flush", lambda: (_ for _ in ()).throw(termios.error(5, "Input/output error")))
    with pytest.raises(DeviceError, match=r"device 'mcu': serial port .* failed during `name` .*Input/output error"):
        link.send("name")
    assert not link.is_open
