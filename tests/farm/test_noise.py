"""`hwfarm devices check --noise`: the agent's noise scan, the doctor's advice, the command."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from farm.agent import __main__ as agent_main
from farm.agent import noise
from farm.agent.noise import _top_processes, noise_scan, parse_cpu_list
from farm.devices.agent_device import AgentDevice, LocalTransport
from farm.doctor import VERDICTS, diagnose
from farm.errors import DeviceUnavailable
from farm.registry.spec import DeviceSpec

from ..conftest import run_cli

LINUX = sys.platform.startswith("linux")

# ---------------------------------------------------------------------------- the scan (on the agent)


def test_noise_scan_figures_are_consistent():
    scan = noise_scan(0.6, window_s=0.2)
    json.dumps(scan)  # JSON-able as the agent replies it
    assert scan["seconds"] >= 0.6  # it scans at least as long as asked (how much longer is the machine's)
    assert scan["windows"] >= 3 and scan["reads"] >= scan["windows"]
    assert 0 < scan["ref_min_us"] <= scan["ref_median_us"] <= scan["ref_p90_us"]
    assert scan["ref_min_us"] <= scan["floor_us"] <= scan["ref_p90_us"]
    assert 0 <= scan["window_cv"] < 1
    for key in ("slow_share", "ref_slow_read_share", "probe_fast_share", "probe_slow_share"):
        assert 0 <= scan[key] <= 1, key
    assert scan["probe_fast_share"] + scan["probe_slow_share"] == pytest.approx(1, abs=1e-3)
    assert scan["probe_fast_share"] >= 0.05  # at least the readings at or below the fast level
    states = scan["states"]
    assert set(states) == {"quiet", "slow", "very_slow"} and sum(states.values()) == pytest.approx(1, abs=1e-3)
    assert scan["states_seen"] == sum(1 for v in states.values() if v) and states["quiet"] > 0  # the floor is quiet
    assert scan["slow_share"] == pytest.approx(states["slow"] + states["very_slow"], abs=1e-3)
    assert scan["cpu_count"] == os.cpu_count()
    if LINUX:
        assert scan["cpus_usable"] == sorted(os.sched_getaffinity(0))
        assert 0 <= scan["steal_share"] <= 1 and 0 <= scan["iowait_share"] <= 1
        assert len(scan["loadavg"]) == 3 and scan["other_runnable"] >= 0
        assert isinstance(scan["top_processes"], list) and len(scan["top_processes"]) <= 3
        assert all(p["pid"] != os.getpid() for p in scan["top_processes"])  # the scan is not "other"
        assert isinstance(scan["isolated_cpus"], list)


def test_noise_scan_degrades_where_the_os_says_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(noise, "PROC", str(tmp_path / "no-proc"))
    monkeypatch.setattr(noise, "SYS_CPU", str(tmp_path / "no-sys"))
    scan = noise_scan(0.5)
    for key in ("steal_share", "iowait_share", "loadavg", "other_runnable", "top_processes", "governors",
                "turbo", "turbo_control", "isolated_cpus"):
        assert scan[key] is None, key
    assert scan["ref_median_us"] > 0 and scan["windows"] >= 2  # the measured figures do not need the OS
    json.dumps(scan)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_noise_scan_reads_proc_and_sysfs(tmp_path, monkeypatch):
    proc, sys_cpu = tmp_path / "proc", tmp_path / "sys"
    _write(proc / "stat", "cpu  100 0 50 800 10 0 0 40 0 0\ncpu0 1 2 3\nprocs_running 3\n")
    _write(proc / "loadavg", "1.50 0.75 0.25 2/100 999\n")
    _write(proc / "4242" / "stat", "4242 (a (weird) name) S 1 " + " ".join(["0"] * 50) + "\n")
    _write(sys_cpu / "cpu0" / "cpufreq" / "scaling_governor", "powersave\n")
    _write(sys_cpu / "cpu1" / "cpufreq" / "scaling_governor", "performance\n")
    _write(sys_cpu / "intel_pstate" / "no_turbo", "0\n")
    _write(sys_cpu / "isolated", "2-3,5\n")
    monkeypatch.setattr(noise, "PROC", str(proc))
    monkeypatch.setattr(noise, "SYS_CPU", str(sys_cpu))
    scan = noise_scan(0.5)
    assert scan["loadavg"] == [1.5, 0.75, 0.25]
    assert scan["other_runnable"] == 2.0  # 3 running, one of them the scan
    assert scan["steal_share"] == 0.0 and scan["iowait_share"] == 0.0  # the file did not move
    assert scan["top_processes"] == []  # process 4242 used no CPU during the scan
    assert scan["governors"] == ["performance", "powersave"]
    assert scan["turbo"] is True and scan["turbo_control"] == str(sys_cpu / "intel_pstate" / "no_turbo")
    assert scan["isolated_cpus"] == [2, 3, 5]


def test_boost_file_says_turbo_off(tmp_path, monkeypatch):
    _write(tmp_path / "cpufreq" / "boost", "0\n")
    monkeypatch.setattr(noise, "SYS_CPU", str(tmp_path))
    assert noise._turbo() == (False, str(tmp_path / "cpufreq" / "boost"))


@pytest.mark.parametrize(("text", "cpus"), [("", []), ("3", [3]), ("0-2,5", [0, 1, 2, 5]), ("1,4-5", [1, 4, 5])])
def test_parse_cpu_list(text, cpus):
    assert parse_cpu_list(text) == cpus


@pytest.mark.skipif(not hasattr(os, "sysconf"), reason="needs SC_CLK_TCK")
def test_top_processes_counts_cpu_used_during_the_scan_only():
    hz = os.sysconf("SC_CLK_TCK")
    me = os.getpid()
    before = {
        10: ("kworker/0:1-events", 5000, 7, 2),  # renamed while it worked: still the same process
        11: ("make", 100, 8, 1),
        12: ("old", 9000, 9, 1),  # pid 12 is reused below by a new process
        me: ("python", 0, 1, 1),
    }
    after = {
        10: ("kworker/0:1-mm_percpu_wq", 5000 + hz // 2, 7, 2),
        11: ("make", 100 + hz, 8, 1),
        12: ("cc1", hz // 5, 99, 11),
        13: ("new", hz // 10, 100, 1),
        me: ("python", 10 * hz, 1, 1),
    }
    top = _top_processes(before, after, elapsed_s=1.0)
    assert top is not None
    assert [(p["pid"], p["name"], p["kernel"]) for p in top] == [
        (11, "make", False), (10, "kworker/0:1-mm_percpu_wq", True), (12, "cc1", False)]
    assert [p["cpu_share"] for p in top] == pytest.approx([1.0, 0.5, 0.2], abs=0.02)
    assert _top_processes(None, after, 1.0) is None


def test_agent_noise_op_validates_seconds(monkeypatch):
    calls: list[float] = []
    monkeypatch.setattr(agent_main, "noise_scan", lambda seconds: calls.append(seconds) or {"windows": 1})
    assert agent_main.handle({"op": "noise", "seconds": 2}) == {"ok": True, "noise": {"windows": 1}}
    assert agent_main.handle({"op": "noise"})["ok"] and calls == [2.0, 3.0]
    for bad in (0.1, 61, "soon", None, float("nan")):
        reply = agent_main.handle({"op": "noise", "seconds": bad})
        assert reply["ok"] is False and reply["kind"] == "request" and "0.5 to 60" in reply["error"]
    assert calls == [2.0, 3.0]


class _FakeSession:
    def __init__(self, reply: dict[str, Any]) -> None:
        self.reply = reply
        self.sent: list[tuple[dict[str, Any], float]] = []

    def start(self, timeout_s: float) -> dict[str, Any]:
        return {"ok": True, "facts": {"cpu_count": 4, "governor": "performance"}}

    def request(self, req: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        self.sent.append((req, timeout_s))
        return self.reply

    def close(self) -> None:
        pass


def test_agent_device_noise_request_and_failure():
    device = AgentDevice(DeviceSpec(name="box", url="local://cpu"), LocalTransport())
    device._agent = _FakeSession({"ok": True, "noise": {"windows": 8}})  # type: ignore[assignment]
    assert device.noise(2.0) == {"noise": {"windows": 8}, "facts": {"cpu_count": 4, "governor": "performance"}}
    assert device._agent.sent == [({"op": "noise", "seconds": 2.0}, 32.0)]  # type: ignore[attr-defined]
    device._agent = _FakeSession({"ok": False, "kind": "request", "error": "unknown op 'noise'"})  # type: ignore[assignment]
    with pytest.raises(DeviceUnavailable, match="device 'box': noise check failed: unknown op 'noise'"):
        device.noise(1.0)


# ---------------------------------------------------------------------------- the doctor (host side)


def _scan(**over: Any) -> dict[str, Any]:
    """A quiet scan on a pinned, tuned Linux box; tests change one thing at a time."""
    base: dict[str, Any] = {
        "seconds": 3.0, "window_s": 0.25, "windows": 12, "reads": 30000,
        "ref_median_us": 19.2, "ref_min_us": 18.9, "ref_p90_us": 19.6, "window_cv": 0.01, "floor_us": 19.1,
        "slow_share": 0.0, "ref_slow_read_share": 0.01, "states": {"quiet": 1.0, "slow": 0.0, "very_slow": 0.0},
        "states_seen": 1, "probe_fast_us": 4.0, "probe_fast_share": 0.99, "probe_slow_share": 0.01,
        "other_runnable": 0.0, "steal_share": 0.0, "iowait_share": 0.0, "loadavg": [1.0, 1.0, 1.0],
        "top_processes": [{"pid": 300, "name": "sshd", "cpu_share": 0.01, "kernel": False, "cmd": "sshd: pi"}],
        "governors": ["performance"], "turbo": False, "turbo_control": "/sys/devices/system/cpu/cpufreq/boost",
        "isolated_cpus": [3], "cpus_usable": [0, 1, 2, 3], "cpu_count": 4,
    }
    return base | over


def _text(lines: tuple[str, ...]) -> str:
    return "\n".join(lines)


def test_quiet_scan_says_quiet_and_stops_nothing():
    d = diagnose(_scan(), {}, affinity=[3])
    assert d.verdict == "quiet"
    assert d.advice[0].startswith("quiet right now")
    assert "stop" not in _text(d.advice).lower() and "pin" not in _text(d.advice)
    assert d.to_json() == {"verdict": "quiet", "findings": list(d.findings), "advice": list(d.advice)}
    assert "pinned to isolated CPU(s) [3]" in d.findings


def test_steal_time_says_the_hypervisor_takes_the_cpu():
    d = diagnose(_scan(steal_share=0.05), {})
    assert d.verdict == "noisy"
    assert any("hypervisor is taking this VM's CPU" in a and "dedicated/bare-metal" in a for a in d.advice)
    assert any("steal time 5%" in f for f in d.findings)
    assert diagnose(_scan(steal_share=0.2), {}).verdict == "very noisy"
    assert not any("hypervisor" in a for a in diagnose(_scan(steal_share=0.01), {}).advice)


def test_a_busy_process_is_named_and_stopped():
    busy = [{"pid": 4711, "name": "cc1plus", "cpu_share": 0.85, "kernel": False, "cmd": "cc1plus -O2 big.cpp"},
            {"pid": 300, "name": "sshd", "cpu_share": 0.02, "kernel": False, "cmd": "sshd"}]
    d = diagnose(_scan(top_processes=busy), {})
    assert d.verdict == "noisy"
    (stop,) = [a for a in d.advice if a.startswith("stop ")]
    assert "cc1plus (pid 4711, 85% of a core: cc1plus -O2 big.cpp)" in stop and "sshd" not in stop


def test_a_busy_kernel_thread_is_not_to_be_stopped():
    kworker = [{"pid": 35, "name": "kworker/u8:1", "cpu_share": 0.3, "kernel": True, "cmd": None}]
    d = diagnose(_scan(top_processes=kworker), {})
    assert d.verdict == "noisy"
    assert not any(a.startswith("stop") for a in d.advice)
    assert any("kworker/u8:1" in f for f in d.findings) and any("other than 0" in a for a in d.advice)


def test_powersave_governor_says_cpupower():
    d = diagnose(_scan(governors=["powersave"]), {})
    assert d.verdict == "quiet"  # a setting, not a measured disturbance: advice only
    assert any("sudo cpupower frequency-set -g performance" in a for a in d.advice)
    # the agent's facts stand in where the scan saw no governor files
    assert any("cpupower" in a for a in diagnose(_scan(governors=None), {"governor": "schedutil"}).advice)
    assert any("not visible" in f for f in diagnose(_scan(governors=None), {}).findings)


def test_turbo_on_says_how_to_turn_it_off():
    intel = diagnose(_scan(turbo=True, turbo_control="/sys/devices/system/cpu/intel_pstate/no_turbo"), {})
    assert any("echo 1 | sudo tee /sys/devices/system/cpu/intel_pstate/no_turbo" in a for a in intel.advice)
    boost = diagnose(_scan(turbo=True), {})
    assert any("echo 0 | sudo tee /sys/devices/system/cpu/cpufreq/boost" in a for a in boost.advice)


def test_slow_spells_say_more_rounds():
    d = diagnose(_scan(slow_share=0.4, window_cv=0.2, states_seen=2,
                       states={"quiet": 0.6, "slow": 0.4, "very_slow": 0.0}), {})
    assert d.verdict == "very noisy"
    assert any("--max-rounds" in a and "unstable" in a for a in d.advice)
    assert diagnose(_scan(slow_share=0.2, window_cv=0.04), {}).verdict == "noisy"
    drift = diagnose(_scan(window_cv=0.1), {})  # drifting, but no window above 1.25x the floor
    assert drift.verdict == "noisy" and any("vary by 10%" in f for f in drift.findings)
    assert not any("windows ran in a slow state" in f for f in drift.findings)
    assert any("--max-rounds" in a for a in drift.advice)
    short = diagnose(_scan(ref_slow_read_share=0.25, probe_slow_share=0.3), {})
    assert short.verdict == "noisy" and any("--gate" in a for a in short.advice)


def test_pinning_advice_follows_the_cpus():
    no_isolation = _scan(isolated_cpus=[])
    d = diagnose(no_isolation, {})
    assert any("affinity: [3] in devices.yaml" in a and "isolcpus=3" in a for a in d.advice)
    pinned = diagnose(no_isolation, {}, affinity=[2])
    assert not any("affinity:" in a for a in pinned.advice) and any("isolcpus=2" in a for a in pinned.advice)
    assert any("isolated CPU: affinity: [3]" in a for a in diagnose(_scan(), {}, affinity=[0]).advice)
    one_cpu = diagnose(_scan(isolated_cpus=[], cpus_usable=[0], cpu_count=1), {})
    assert not any("affinity" in a for a in one_cpu.advice)


def test_every_verdict_is_known():
    assert {diagnose(_scan(**kw), {}).verdict for kw in ({}, {"steal_share": 0.05}, {"window_cv": 0.5})} == set(VERDICTS)


# ---------------------------------------------------------------------------- the command


@pytest.fixture
def farm(tmp_path, registry_file):
    registry_file.write_text(registry_file.read_text()
                             + "  - name: sim-raspi4\n    url: sim://raspi4?seed=0\n    runtime: sim\n")

    def hw(*args: str):
        return run_cli("--registry", str(registry_file), "--db", str(tmp_path / "hwfarm.db"), *args)

    hw.registry = registry_file  # type: ignore[attr-defined]
    return hw


def test_devices_check_noise_json_keeps_the_contract(farm):
    p = farm("devices", "check", "host-cpu", "--noise", "--seconds", "0.6", "--json")
    assert p.returncode == 0, p.stderr
    obj = json.loads(p.stdout)
    assert set(obj) == {"device", "ok", "status", "state", "detail", "facts", "noise"}
    assert obj["device"] == "host-cpu" and obj["ok"] and obj["facts"]["runtimes"]["onnxruntime"]
    n = obj["noise"]
    assert n["verdict"] in VERDICTS and n["findings"] and n["advice"]
    assert n["ref_median_us"] > 0 and n["seconds"] >= 0.6 and n["windows"] >= 2
    # without --noise the object is exactly what it was
    plain = json.loads(farm("devices", "check", "host-cpu", "--json").stdout)
    assert set(plain) == {"device", "ok", "status", "state", "detail", "facts"}


def test_devices_check_noise_on_simulated_and_serial_devices(farm, tmp_path):
    p = farm("devices", "check", "sim-raspi4", "--noise", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["noise"] == {"note": "simulated device: no noise to measure"}
    table = farm("devices", "check", "sim-raspi4", "--noise")
    assert table.returncode == 0 and "sim-raspi4: simulated device: no noise to measure" in table.stdout
    farm.registry.write_text(farm.registry.read_text()
                             + f"  - name: mcu\n    url: serial://{tmp_path / 'no-tty'}\n    outage_s: 1\n")
    s = farm("devices", "check", "mcu", "--noise", "--json")
    assert s.returncode == 1  # unreachable, as without --noise
    assert "needs an agent device" in json.loads(s.stdout)["noise"]["note"]


def test_devices_check_noise_seconds_out_of_range_is_exit_2(farm):
    p = farm("devices", "check", "host-cpu", "--noise", "--seconds", "0.1")
    assert p.returncode == 2 and "Traceback" not in p.stderr
