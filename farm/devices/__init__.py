"""Device kinds, chosen by URL scheme: one function (:func:`open_device`) for library and CLI.

Built-in kinds live in :data:`DEVICE_KINDS`. Third-party kinds come in through the
``hwfarm.devices`` entry-point group: ``myscheme = mypkg.module:MyDevice`` where
``MyDevice(spec)`` implements :class:`~farm.devices.base.Device`.
"""

from __future__ import annotations

from typing import Callable

from farm.devices.base import Device, Health
from farm.errors import DeviceUnavailable
from farm.registry.plugins import device_plugins
from farm.registry.spec import DeviceSpec

__all__ = ["Device", "Health", "open_device", "DEVICE_KINDS"]


def _local(spec: DeviceSpec) -> Device:
    from farm.devices.agent_device import AgentDevice, LocalTransport

    return AgentDevice(spec, LocalTransport())


def _ssh(spec: DeviceSpec) -> Device:
    from farm.devices.agent_device import AgentDevice
    from farm.devices.ssh import SshTransport

    return AgentDevice(spec, SshTransport(spec))


def _adb(spec: DeviceSpec) -> Device:
    from farm.devices.adb.device import AdbDevice

    return AdbDevice(spec)


def _sim(spec: DeviceSpec) -> Device:
    from farm.devices.sim import SimDevice

    return SimDevice(spec)


def _serial(spec: DeviceSpec) -> Device:
    from farm.devices.serial.device import SerialDevice

    return SerialDevice(spec)


DEVICE_KINDS: dict[str, Callable[[DeviceSpec], Device]] = {
    "local": _local,
    "ssh": _ssh,
    "adb": _adb,
    "serial": _serial,
    "sim": _sim,
}


def open_device(spec: DeviceSpec) -> Device:
    """Build the device for a registry entry. Raises DeviceUnavailable for kinds that cannot
    run here; nothing is contacted until ``check()`` or ``run()``."""
    kind = spec.kind
    if kind in DEVICE_KINDS:
        return DEVICE_KINDS[kind](spec)
    ep = device_plugins().get(kind)
    if ep is None:  # parse_device_url already refused it; defensive
        raise DeviceUnavailable(f"device {spec.name!r}: no device kind for {kind}://")
    factory: Callable[[DeviceSpec], Device] = ep.load()
    return factory(spec)
