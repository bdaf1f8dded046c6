"""Energy meters read by the agent (farm/agent/meters.py): fake sysfs trees in tmp dirs, a fake
tegrastats and a fake command meter, unit-level and end to end through ``hwfarm profile``."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import pytest

from farm.agent.meters import MeterError, open_meter, parse_tegrastats, tegrastats_input_mw
from farm.errors import InputError
from farm.registry.spec import DeviceSpec

from ..conftest import FAST, REGISTRY, run_cli, ssh_spec_text

# Golden tegrastats lines. NANO (JetPack 4, "POM_5V_IN inst/avg" without units) and ORIN (JetPack 6
# Orin Nano, "VDD_IN 5251mW/8535mW") are lines captured from real boards as quoted in public GitHub
# notes/tests found with code search (a Jetson Nano user's `sudo tegrastats` transcript; an Orin Nano
# test fixture); XAVIER is written here in the JetPack 5 format. Format reference: NVIDIA Jetson Linux
# Developer Guide, "tegrastats Utility"
# (https://docs.nvidia.com/jetson/archives/r35.2.1/DeveloperGuide/text/AT/JetsonLinuxDevelopmentTools/TegrastatsUtility.html)
# and rbonghi/jetson_stats, jtop/core/tegra_parse.py.
NANO = ("RAM 1655/3956MB (lfb 311x4MB) SWAP 0/1978MB (cached 0MB) IRAM 0/252kB(lfb 252kB) "
        "CPU [14%@204,14%@204,10%@204,11%@204] EMC_FREQ 3%@1600 GR3D_FREQ 16%@76 APE 25 PLL@36C CPU@39C "
        "iwlwifi@44C PMIC@50C GPU@37C AO@47C thermal@38C POM_5V_IN 2247/2189 POM_5V_GPU 78/78 POM_5V_CPU 275/275")
ORIN = ("10-08-2026 04:38:21 RAM 1343/7620MB (lfb 157x4MB) SWAP 165/3810MB (cached 3MB) "
        "CPU [0%@1497,0%@729,0%@729,0%@729,0%@729,0%@729] EMC_FREQ 15%@204 GR3D_FREQ 0%@[305] NVDEC off "
        "NVJPG off VIC off OFA off APE 200 cpu@48.562C soc2@46.593C soc0@48.625C gpu@49.625C tj@49.312C "
        "soc1@47.937C VDD_IN 5251mW/8535mW VDD_CPU_GPU_CV 512mW/1944mW VDD_SOC 2720mW/3659mW")
XAVIER = ("RAM 2020/7772MB (lfb 19x4MB) SWAP 0/3886MB (cached 0MB) CPU [100%@1907,100%@1907] EMC_FREQ 0% "
          "GR3D_FREQ 99% AO@40C GPU@41C VDD_IN 12345mW/11000mW VDD_CPU_GPU_CV 4000mW/3900mW VDD_SOC 2000mW/2000mW")
NO_POWER = "RAM 2020/3964MB (lfb 19x4MB) SWAP 43/1982MB (cached 1MB) CPU [100%@1479,100%@1479] GR3D_FREQ 99%"


@pytest.mark.parametrize("line, rail, instant_mw, rails", [
    (NANO, "POM_5V_IN", 2247.0, {"POM_5V_IN": (2247.0, 2189.0), "POM_5V_GPU": (78.0, 78.0),
                                 "POM_5V_CPU": (275.0, 275.0)}),
    (ORIN, "VDD_IN", 5251.0, {"VDD_IN": (5251.0, 8535.0), "VDD_CPU_GPU_CV": (512.0, 1944.0),
                              "VDD_SOC": (2720.0, 3659.0)}),
    (XAVIER, "VDD_IN", 12345.0, {"VDD_IN": (12345.0, 11000.0), "VDD_CPU_GPU_CV": (4000.0, 3900.0),
                                 "VDD_SOC": (2000.0, 2000.0)}),
])
def test_tegrastats_parser_golden_lines(line, rail, instant_mw, rails):
    assert parse_tegrastats(line) == rails  # RAM 1655/3956MB and SWAP are not rails
    assert tegrastats_input_mw(line) == (rail, instant_mw)


def test_tegrastats_line_without_input_rail():
    assert parse_tegrastats(NO_POWER) == {}
    assert tegrastats_input_mw(NO_POWER) is None
    assert tegrastats_input_mw("VDD_CPU_GPU_CV 512mW/1944mW") is None


def _ina_tree(root: Path, *, power_uw: int | None = 2_000_000, name: str = "ina226") -> Path:
    d = root / "hwmon7"
    d.mkdir(parents=True)
    (d / "name").write_text(name + "\n")
    if power_uw is not None:
        (d / "power1_input").write_text(f"{power_uw}\n")
    return d


def _put(path: Path, value: str) -> None:
    """Replace a sysfs-like file atomically: a sysfs read sees the whole value, never half a write."""
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(value + "\n")
    os.replace(tmp, path)


class _Rewriter:
    """Rewrites a sysfs-like file from a thread (as the kernel driver would update it)."""

    def __init__(self, path: Path, values: list[str], period_s: float = 0.005) -> None:
        self.path, self.values, self.period_s = path, values, period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        i = 0
        while not self._stop.is_set():
            _put(self.path, self.values[i % len(self.values)])
            i += 1
            self._stop.wait(self.period_s)

    def __enter__(self) -> _Rewriter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_ina2xx_mean_power_times_median(tmp_path):
    d = _ina_tree(tmp_path)
    meter = open_meter({"meter": "ina2xx", "path": str(d), "sample_hz": 200})
    assert "ina226" in meter.check() and "power1_input" in meter.check()
    with _Rewriter(d / "power1_input", ["1000000", "3000000"]):
        meter.start()
        time.sleep(0.1)
        meter.stop()
    out = meter.result(n_runs=10, median_ms=4.0)
    prov = out["provenance"]
    assert prov["meter"] == "ina2xx" and prov["n_samples"] >= 3 and prov["sample_hz_achieved"] > 0
    assert 1000 <= prov["mean_power_mw"] <= 3000
    assert out["energy_mj"] == pytest.approx(prov["mean_power_mw"] * 4.0 / 1000)


def test_ina2xx_voltage_times_current_where_no_power_node(tmp_path):
    d = _ina_tree(tmp_path, power_uw=None, name="ina3221")
    (d / "in1_input").write_text("5000\n")  # mV
    (d / "curr1_input").write_text("400\n")  # mA
    meter = open_meter({"meter": "ina2xx", "path": str(d)})
    assert "in1_input*curr1_input" in meter.check()
    meter.start()
    meter.stop()
    out = meter.result(n_runs=5, median_ms=10.0)
    assert out["provenance"]["mean_power_mw"] == pytest.approx(2000.0)
    assert out["energy_mj"] == pytest.approx(20.0)  # 2 W × 10 ms


def test_ina2xx_missing_or_broken_tree_is_a_meter_error(tmp_path):
    with pytest.raises(MeterError, match="does not exist"):
        open_meter({"meter": "ina2xx", "path": str(tmp_path / "nope")}).check()
    empty = tmp_path / "hwmon0"
    empty.mkdir()
    with pytest.raises(MeterError, match="neither power1_input"):
        open_meter({"meter": "ina2xx", "path": str(empty)}).check()
    d = _ina_tree(tmp_path / "x")
    (d / "power1_input").write_text("garbage\n")
    with pytest.raises(MeterError, match="not a number"):
        open_meter({"meter": "ina2xx", "path": str(d)}).check()
    with pytest.raises(MeterError, match="needs path"):
        open_meter({"meter": "ina2xx"})


def test_ina2xx_node_vanishing_mid_run_fails_the_run(tmp_path):
    d = _ina_tree(tmp_path)
    meter = open_meter({"meter": "ina2xx", "path": str(d), "sample_hz": 200})
    meter.check()
    meter.start()
    (d / "power1_input").unlink()  # the driver was unbound while measuring
    time.sleep(0.03)
    with pytest.raises(MeterError, match="cannot read .*power1_input"):
        meter.stop()


def test_agent_replies_meter_failure_without_samples(tmp_path, onnx_file):
    from farm.agent.__main__ import handle

    reply = handle({"op": "run", "model": str(onnx_file("h", 8)), "policy": {"warmup": 0, "min_time_s": 0,
                    "max_runs": 3}, "energy": {"meter": "ina2xx", "path": str(tmp_path / "gone")}})
    assert reply["ok"] is False and reply["kind"] == "meter" and "does not exist" in reply["error"]
    assert "samples_ms" not in reply
    check = handle({"op": "check_meter", "energy": {"meter": "rapl", "path": str(tmp_path / "rapl")}})
    assert check["ok"] is False and "no RAPL powercap zone" in check["error"]


def _rapl_tree(root: Path, energy_uj: int, max_uj: int = 262143328850) -> Path:
    d = root / "intel-rapl:0"
    d.mkdir(parents=True)
    (d / "name").write_text("package-0\n")
    (d / "energy_uj").write_text(f"{energy_uj}\n")
    (d / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return d


def test_rapl_counter_difference_per_run(tmp_path):
    d = _rapl_tree(tmp_path, 1_000_000)
    meter = open_meter({"meter": "rapl", "path": str(d)})
    assert "package-0" in meter.check()
    meter.start()
    _put(d / "energy_uj", "1500000")
    meter.stop()
    out = meter.result(n_runs=50, median_ms=1.0)
    assert out["energy_mj"] == pytest.approx(500.0 / 50)  # 0.5 J over 50 runs
    assert out["provenance"]["wraps"] == 0 and out["provenance"]["meter"] == "rapl"


def test_rapl_wrap_around(tmp_path):
    d = _rapl_tree(tmp_path, 990_000, max_uj=1_000_000)
    meter = open_meter({"meter": "rapl", "path": str(d), "sample_hz": 100})
    meter.check()
    meter.start()
    _put(d / "energy_uj", "30000")  # wrapped: 10 000 to the top + 30 000
    meter.stop()
    out = meter.result(n_runs=4, median_ms=1.0)
    assert out["provenance"]["energy_uj_total"] == pytest.approx(40_000)
    assert out["provenance"]["wraps"] == 1
    assert out["energy_mj"] == pytest.approx(10.0)


def test_rapl_wraps_between_samples_are_each_counted(tmp_path):
    d = _rapl_tree(tmp_path, 0, max_uj=1_000_000)
    meter = open_meter({"meter": "rapl", "path": str(d), "sample_hz": 200})
    meter.check()
    # The counter climbs 300 000 uJ per tick, wrapping several times: a before/after difference
    # alone would lose whole ranges; the sampler sees each wrap.
    values = [str((k * 300_000) % 1_000_000) for k in range(1, 11)]
    meter.start()
    for v in values:
        _put(d / "energy_uj", v)
        time.sleep(0.03)  # several sampler periods per step
    meter.stop()
    out = meter.result(n_runs=1, median_ms=1.0)
    assert out["provenance"]["energy_uj_total"] == pytest.approx(3_000_000)
    assert out["provenance"]["wraps"] == 3


def test_rapl_absent_says_so(tmp_path):
    with pytest.raises(MeterError, match="no RAPL powercap zone"):
        open_meter({"meter": "rapl", "path": str(tmp_path / "intel-rapl:0")}).check()


def _fake_tegrastats(tmp_path: Path, line: str) -> Path:
    exe = tmp_path / "tegrastats"
    exe.write_text(f"#!{sys.executable}\n"
                   "import sys, time\n"
                   "ms = int(sys.argv[sys.argv.index('--interval') + 1])\n"
                   "while True:\n"
                   f"    print({line!r}, flush=True)\n"
                   "    time.sleep(ms / 1000)\n")
    exe.chmod(0o755)
    return exe


def test_tegrastats_meter_samples_a_running_tegrastats(tmp_path):
    exe = _fake_tegrastats(tmp_path, ORIN)
    meter = open_meter({"meter": "tegrastats", "path": str(exe), "sample_hz": 50})
    assert "VDD_IN" in meter.check()
    meter.start()
    time.sleep(0.15)
    meter.stop()
    out = meter.result(n_runs=10, median_ms=2.0)
    assert out["provenance"]["rail"] == "VDD_IN" and out["provenance"]["n_samples"] >= 1
    assert out["energy_mj"] == pytest.approx(5251.0 * 2.0 / 1000)


def test_tegrastats_missing_or_powerless(tmp_path):
    with pytest.raises(MeterError, match="cannot run"):
        open_meter({"meter": "tegrastats", "path": str(tmp_path / "tegrastats")}).check()
    exe = _fake_tegrastats(tmp_path, NO_POWER)
    with pytest.raises(MeterError, match="no input rail"):
        open_meter({"meter": "tegrastats", "path": str(exe)}).check()


def test_command_meter_prints_joules(tmp_path):
    script = tmp_path / "meter.py"
    script.write_text("import signal, sys, time\n"
                      "signal.signal(signal.SIGINT, lambda *a: (print('0.5 J 0.25 s', flush=True), sys.exit(0)))\n"
                      "print('measuring', flush=True)\n"
                      "while True: time.sleep(0.01)\n")
    meter = open_meter({"meter": "command", "command": f"{sys.executable} {script}"})
    meter.check()
    meter.start()
    meter.stop()
    out = meter.result(n_runs=3, median_ms=5.0)
    assert out["provenance"]["window_source"] == "meter"
    assert out["energy_mj"] == pytest.approx(2000.0 * 5.0 / 1000)  # 0.5 J / 0.25 s = 2 W, × 5 ms


def test_registry_entry_with_a_meter_agents_cannot_read_is_input_error():
    from farm.devices import open_device

    with pytest.raises(InputError, match="android-battery"):
        open_device(DeviceSpec(name="h", url="local://cpu", energy={"meter": "android-battery"}))
    with pytest.raises(InputError, match="needs path"):
        open_device(DeviceSpec(name="h", url="local://cpu", energy={"meter": "rapl"}))


# ----------------------------------------------------------------- end to end through the CLI


def _registry(tmp_path: Path, energy_yaml: str) -> Path:
    reg = tmp_path / "devices.yaml"
    reg.write_text(REGISTRY.replace("    threads: 1\n", "    threads: 1\n" + energy_yaml))
    return reg


def test_profile_local_with_ina2xx_fake_tree(tmp_path, onnx_file):
    d = _ina_tree(tmp_path / "sys")
    reg = _registry(tmp_path, f"    energy: {{meter: ina2xx, path: {d}, sample_hz: 100}}\n")
    model = onnx_file("e", 16)
    with _Rewriter(d / "power1_input", ["1500000", "2500000"]):
        c = run_cli("--registry", str(reg), "--db", str(tmp_path / "db"), "devices", "check", "--json")
        p = run_cli("--registry", str(reg), "--db", str(tmp_path / "db"), "profile", str(model),
                    "--device", "host-cpu", *FAST, "--json")
    assert c.returncode == 0, c.stderr
    health = json.loads(c.stdout.splitlines()[0])
    assert health["ok"] and health["facts"]["energy"]["ok"] and "ina226" in health["detail"]
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout.splitlines()[0])
    prov = r["provenance"]["energy"]
    assert prov["meter"] == "ina2xx" and prov["path"] == str(d) and prov["n_samples"] >= 2
    assert 1500 <= prov["mean_power_mw"] <= 2500
    assert r["energy_mj"] == pytest.approx(prov["mean_power_mw"] * r["latency_ms"] / 1000, rel=1e-6)


def test_profile_local_with_rapl_fake_counter(tmp_path, onnx_file):
    d = _rapl_tree(tmp_path / "sys", 5_000_000, max_uj=10_000_000)
    reg = _registry(tmp_path, f"    energy: {{meter: rapl, path: {d}, sample_hz: 100}}\n")
    ticks = [str(5_000_000 + k * 700_000) for k in range(12)]
    ticks = [str(int(v) % 10_000_000) for v in ticks]  # wraps once on the way
    with _Rewriter(d / "energy_uj", ticks, period_s=0.05):
        p = run_cli("--registry", str(reg), "--db", str(tmp_path / "db"), "profile", str(onnx_file("r", 16)),
                    "--device", "host-cpu", *FAST, "--json")
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout.splitlines()[0])
    prov = r["provenance"]["energy"]
    assert prov["meter"] == "rapl" and prov["path"] == str(d) and prov["runs"] >= 5
    assert r["energy_mj"] == pytest.approx(prov["energy_uj_total"] / 1000 / prov["runs"])
    # Every step of the fake counter is 700 000 uJ, across the wrap too: no step is lost or invented.
    assert prov["energy_uj_total"] % 700_000 == pytest.approx(0)


def test_stored_latency_without_energy_is_remeasured_once_a_meter_is_added(tmp_path, onnx_file):
    model, db = onnx_file("c", 16), str(tmp_path / "db")
    plain = tmp_path / "plain.yaml"
    plain.write_text(REGISTRY)
    first = run_cli("--registry", str(plain), "--db", db, "profile", str(model), "--device", "host-cpu", *FAST, "--json")
    assert first.returncode == 0 and json.loads(first.stdout)["energy_mj"] is None
    d = _ina_tree(tmp_path / "sys", power_uw=1_000_000)
    reg = _registry(tmp_path, f"    energy: {{meter: ina2xx, path: {d}}}\n")
    p = run_cli("--registry", str(reg), "--db", db, "profile", str(model), "--device", "host-cpu", *FAST)
    assert p.returncode == 0, p.stderr
    assert "energy mJ" in p.stdout and "measured" in p.stdout  # not answered by the stored record
    again = run_cli("--registry", str(reg), "--db", db, "profile", str(model), "--device", "host-cpu", *FAST, "--json")
    r = json.loads(again.stdout)
    assert r["source"] == "cached" and r["energy_mj"] == pytest.approx(r["latency_ms"], rel=1e-6)  # 1 W × latency


def test_broken_meter_fails_check_and_run_clearly(tmp_path, onnx_file):
    missing = tmp_path / "sys" / "class" / "powercap" / "intel-rapl:0"
    reg = _registry(tmp_path, f"    energy: {{meter: rapl, path: {missing}}}\n")
    c = run_cli("--registry", str(reg), "--db", str(tmp_path / "db"), "devices", "check", "--json")
    health = json.loads(c.stdout.splitlines()[0])
    assert not health["ok"] and health["status"] == "unavailable"
    assert "energy meter unavailable" in health["detail"] and "no RAPL powercap zone" in health["detail"]
    p = run_cli("--registry", str(reg), "--db", str(tmp_path / "db"), "profile", str(onnx_file("b", 16)),
                "--device", "host-cpu", *FAST, "--json")
    assert p.returncode != 0
    assert "rapl" in p.stderr and "Traceback" not in p.stderr
    import sqlite3

    if (tmp_path / "db").exists():
        con = sqlite3.connect(tmp_path / "db")
        assert con.execute("SELECT COUNT(*) FROM measurements").fetchone()[0] == 0


def test_profile_over_ssh_with_ina2xx_on_the_board(sshd, tmp_path, onnx_file):
    kh = tmp_path / "known_hosts"
    kh.write_text(sshd.known_hosts_line())
    d = _ina_tree(tmp_path / "board-sys", power_uw=3_000_000)
    reg = tmp_path / "devices.yaml"
    reg.write_text("devices:\n" + ssh_spec_text(sshd, kh)
                   + f"    energy: {{meter: ina2xx, path: {d}}}\n")
    p = run_cli("--registry", str(reg), "--db", str(tmp_path / "db"), "profile", str(onnx_file("s", 16)),
                "--device", "board", *FAST, "--json")
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout.splitlines()[0])
    assert r["provenance"]["energy"]["mean_power_mw"] == pytest.approx(3000.0)
    assert r["energy_mj"] == pytest.approx(3000.0 * r["latency_ms"] / 1000, rel=1e-6)


def test_an_energy_meter_turns_the_contention_gate_off(tmp_path, onnx_file):
    # The meter integrates over the timed window: the gate's waiting would be charged to the model.
    from farm.agent.__main__ import handle

    model = str(onnx_file("g", 8))
    policy = {"warmup": 0, "min_time_s": 0, "max_runs": 5, "target_ci": 0}
    metered = handle({"op": "run", "model": model, "policy": policy,
                      "energy": {"meter": "rapl", "path": str(_rapl_tree(tmp_path, 1_000_000))}})
    assert metered["ok"], metered
    assert metered["provenance"]["contention"] is None and metered["contended"] == []
    plain = handle({"op": "run", "model": model, "policy": policy})
    assert plain["provenance"]["contention"]["gate"] == 1.25
