"""The Meter conformance suite (:mod:`farm.testing.meter`) over every meter the agent reads
(:data:`farm.agent.meters.METERS`): each on a stand-in source that runs anywhere (fake hwmon
and powercap trees, a fake tegrastats, a fake meter program), and on this host's real source
where it has one (skipped otherwise, saying what is missing)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

from farm.agent.meters import METERS, Meter, open_meter
from farm.testing.meter import METER_CHECKS

# A JetPack 6 Orin Nano line (board input rail VDD_IN), as in tests/farm/test_meters.py.
ORIN = ("RAM 1343/7620MB (lfb 157x4MB) SWAP 165/3810MB (cached 3MB) CPU [0%@1497,0%@729] EMC_FREQ 15%@204 "
        "GR3D_FREQ 0%@[305] cpu@48.562C VDD_IN 5251mW/8535mW VDD_CPU_GPU_CV 512mW/1944mW VDD_SOC 2720mW/3659mW")


def _ina2xx_power(tmp: Path) -> dict[str, Any]:
    d = tmp / "hwmon7"
    d.mkdir()
    (d / "name").write_text("ina226\n")
    (d / "power1_input").write_text("2000000\n")  # µW
    return {"meter": "ina2xx", "path": str(d), "sample_hz": 200}


def _ina3221_volts_amps(tmp: Path) -> dict[str, Any]:
    d = tmp / "hwmon3"
    d.mkdir()
    (d / "name").write_text("ina3221\n")
    (d / "in1_input").write_text("5000\n")  # mV
    (d / "curr1_input").write_text("400\n")  # mA
    return {"meter": "ina2xx", "path": str(d), "sample_hz": 200}


def _rapl(tmp: Path) -> dict[str, Any]:
    d = tmp / "intel-rapl:0"
    d.mkdir()
    (d / "name").write_text("package-0\n")
    (d / "energy_uj").write_text("1000000\n")
    (d / "max_energy_range_uj").write_text("262143328850\n")
    return {"meter": "rapl", "path": str(d), "sample_hz": 100}


def _tegrastats(tmp: Path) -> dict[str, Any]:
    exe = tmp / "tegrastats"
    exe.write_text(f"#!{sys.executable}\n"
                   "import sys, time\n"
                   "ms = int(sys.argv[sys.argv.index('--interval') + 1])\n"
                   "while True:\n"
                   f"    print({ORIN!r}, flush=True)\n"
                   "    time.sleep(ms / 1000)\n")
    exe.chmod(0o755)
    return {"meter": "tegrastats", "path": str(exe), "sample_hz": 50}


def _command(tmp: Path) -> dict[str, Any]:
    script = tmp / "meter.py"
    script.write_text("import signal, sys, time\n"
                      "signal.signal(signal.SIGINT, lambda *a: (print('0.5 J 0.25 s', flush=True), sys.exit(0)))\n"
                      "print('measuring', flush=True)\n"
                      "while True: time.sleep(0.01)\n")
    return {"meter": "command", "command": f"{sys.executable} {script}"}


def _host_rapl(tmp: Path) -> dict[str, Any]:
    zone = Path("/sys/class/powercap/intel-rapl:0")
    if not (zone / "energy_uj").exists():
        pytest.skip(f"no RAPL powercap zone on this host ({zone})")
    if not os.access(zone / "energy_uj", os.R_OK):
        pytest.skip(f"{zone}/energy_uj is not readable by this user (root-only since Linux 5.10)")
    return {"meter": "rapl", "path": str(zone)}


def _host_ina2xx(tmp: Path) -> dict[str, Any]:
    for d in sorted(Path("/sys/class/hwmon").glob("hwmon*")):
        name = (d / "name").read_text().strip() if (d / "name").exists() else ""
        if name.startswith("ina"):
            return {"meter": "ina2xx", "path": str(d)}
    pytest.skip("no INA2xx/INA3221 power monitor under /sys/class/hwmon on this host")


def _host_tegrastats(tmp: Path) -> dict[str, Any]:
    exe = shutil.which("tegrastats")
    if exe is None:
        pytest.skip("tegrastats is not on PATH (not a Jetson)")
    return {"meter": "tegrastats", "path": exe}


# case -> factory(tmp_path) -> the registry's energy: mapping for a meter reachable here
METER_SOURCES: dict[str, Callable[[Path], dict[str, Any]]] = {
    "ina2xx-fake-power": _ina2xx_power,
    "ina2xx-fake-volts-amps": _ina3221_volts_amps,
    "rapl-fake": _rapl,
    "tegrastats-fake": _tegrastats,
    "command-fake": _command,
    "rapl-host": _host_rapl,
    "ina2xx-host": _host_ina2xx,
    "tegrastats-host": _host_tegrastats,
}


def test_every_agent_meter_has_a_source_here() -> None:
    assert {case.split("-")[0] for case in METER_SOURCES} == set(METERS)


@pytest.fixture(params=sorted(METER_SOURCES))
def make_meter(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Meter]:
    energy = METER_SOURCES[request.param](tmp_path)
    return lambda: open_meter(energy)


@pytest.mark.parametrize("check", METER_CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_meter(make_meter: Callable[[], Meter], check: Callable[[Callable[[], Meter]], None]) -> None:
    check(make_meter)
