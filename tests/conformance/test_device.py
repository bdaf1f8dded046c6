"""The Device conformance suite (:mod:`farm.testing.device`) over every device kind in this repo.

Each kind has a factory that returns a DeviceSpec for a device reachable in the test
environment: the host itself, a loopback sshd, an ADB test daemon, a pseudo-terminal firmware
emulator, a seeded simulator profile, and a third-party kind loaded through the
``hwfarm.devices`` entry point.
"""

from __future__ import annotations

import sys
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Callable

import pytest

import farm.registry.plugins as plugins
from farm.devices import Device, open_device
from farm.devices.agent_device import AgentDevice, LocalTransport
from farm.registry.spec import DeviceSpec
from farm.testing.device import DEVICE_CHECKS, check_deadline_kills_the_run

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


class LabDevice(AgentDevice):
    """A third-party kind (``mylab://``) that reuses the host machinery under its own scheme."""

    def __init__(self, spec: DeviceSpec) -> None:
        super().__init__(spec, LocalTransport())


def _plugin_spec(request: pytest.FixtureRequest, tmp: Path) -> DeviceSpec:
    monkeypatch = request.getfixturevalue("monkeypatch")
    ep = EntryPoint(name="mylab", value=f"{__name__}:LabDevice", group="hwfarm.devices")
    monkeypatch.setattr(plugins, "entry_points", lambda group: [ep] if group == "hwfarm.devices" else [])
    plugins.device_plugins.cache_clear()
    request.addfinalizer(plugins.device_plugins.cache_clear)  # runs after monkeypatch's undo
    return DeviceSpec(name="bench-7", url="mylab://bench-7", runtime="onnxruntime", threads=1)


# kind -> factory(request, tmp_path) -> DeviceSpec of a device reachable in the test environment
DEVICES: dict[str, Callable[[pytest.FixtureRequest, Path], DeviceSpec]] = {
    "local": lambda request, tmp: DeviceSpec(name="host-cpu", url="local://cpu", runtime="onnxruntime", threads=1),
    "ssh": _ssh_spec,
    "adb": _adb_spec,
    "sim": lambda request, tmp: DeviceSpec(name="sim-raspi4", url="sim://raspi4?seed=0", threads=1),
    "serial": _serial_spec,  # the MLPerf Tiny firmware emulator on a pty, flashed per model
    "plugin": _plugin_spec,
}


@pytest.fixture(params=sorted(DEVICES))
def make_device(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Device]:
    spec = DEVICES[request.param](request, tmp_path)
    return lambda: open_device(spec)


@pytest.mark.parametrize("check", DEVICE_CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_device(make_device: Callable[[], Device], check: Callable[[Callable[[], Device]], None]) -> None:
    check(make_device)


def test_plugin_kind_is_opened_through_its_entry_point(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    device = open_device(_plugin_spec(request, tmp_path))
    try:
        assert isinstance(device, LabDevice) and device.spec.kind == "mylab"
    finally:
        device.close()


def test_deadline_kills_the_run() -> None:
    # The deadline covers the agent's start-up too, so it leaves room for a loaded machine
    # (importing onnxruntime alone can take a second there); the endless run is still killed.
    spec = DeviceSpec(name="host-cpu", url="local://cpu", timeout_s=8.0)
    check_deadline_kills_the_run(lambda: open_device(spec))
