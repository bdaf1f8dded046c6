"""Device kinds, chosen by URL scheme: one function (:func:`open_device`) for library and CLI.

Built-in kinds live in :data:`DEVICE_KINDS`. Third-party kinds come in through the
``hwfarm.devices`` entry-point group: ``myscheme = mypkg.module:MyDevice`` where
``MyDevice(spec)`` implements :class:`~farm.devices.base.Device`.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.metadata import EntryPoint, entry_points
from typing import Callable

from ..errors import DeviceUnavailable
from ..registry import DeviceSpec
from .base import Device, Health

__all__ = ["Device", "Health", "open_device", "DEVICE_KINDS", "plugin_schemes"]


def _local(spec: DeviceSpec) -> Device:
    from .agent_device import AgentDevice, LocalTransport

    return AgentDevice(spec, LocalTransport())


def _ssh(spec: DeviceSpec) -> Device:
    from .agent_device import AgentDevice
    from .ssh import SshTransport

    return AgentDevice(spec, SshTransport(spec))


def _adb(spec: DeviceSpec) -> Device:
    from .adb import AdbDevice

    return AdbDevice(spec)


def _sim(spec: DeviceSpec) -> Device:
    from ..sim.device import SimDevice

    return SimDevice(spec)


def _serial(spec: DeviceSpec) -> Device:
    from .serial import SerialDevice

    return SerialDevice(spec)


DEVICE_KINDS: dict[str, Callable[[DeviceSpec], Device]] = {
    "local": _local,
    "ssh": _ssh,
    "adb": _adb,
    "serial": _serial,
    "sim": _sim,
}


@lru_cache(maxsize=1)
def _plugins() -> dict[str, EntryPoint]:
    """Third-party device kinds by scheme; each loads only when a device of its kind opens."""
    return {ep.name: ep for ep in entry_points(group="hwfarm.devices")}


def plugin_schemes() -> tuple[str, ...]:
    return tuple(s for s in _plugins() if s not in DEVICE_KINDS)


def open_device(spec: DeviceSpec) -> Device:
    """Build the device for a registry entry. Raises DeviceUnavailable for kinds that cannot
    run here; nothing is contacted until ``check()`` or ``run()``."""
    kind = spec.kind
    if kind in DEVICE_KINDS:
        return DEVICE_KINDS[kind](spec)
    ep = _plugins().get(kind)
    if ep is None:  # parse_device_url already refused it; defensive
        raise DeviceUnavailable(f"device {spec.name!r}: no device kind for {kind}://")
    factory: Callable[[DeviceSpec], Device] = ep.load()
    return factory(spec)
