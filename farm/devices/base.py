"""The Device protocol every device kind implements, and the records it returns.

A device is a transport (moves files, runs commands), a runner (the runtime on the device)
and a parser (runner output → numbers), behind a handful of methods. The conformance suite
:mod:`farm.testing.device` checks the contract; ``tests/conformance/test_device.py`` runs it
over every kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from farm.devices.caps import DeviceCaps
from farm.measurement import Measurement, Settings
from farm.registry.spec import DeviceSpec
from farm.workload import Workload

__all__ = ["Device", "Health", "STATES"]


# The connection state a status implies where the device kind does not say more.
_STATE_OF_STATUS = {"ok": "online", "unavailable": "online", "error": "online", "busy": "busy",
                    "unreachable": "offline"}
STATES = ("online", "offline", "unauthorized", "busy", "unknown")


@dataclass(frozen=True)
class Health:
    """Result of :meth:`Device.check`. ``status``: ok | unavailable | unreachable | busy | error.

    ``state`` is the device's connection state, one of :data:`STATES`: ``online`` (it
    answered; it may still be unable to run, see ``status``), ``offline`` (no answer),
    ``unauthorized`` (it refused our key, or we refused its host key), ``busy`` (another job
    or program holds it), ``unknown`` (not contacted: the kind cannot run here). Kinds that
    know better pass it; otherwise it follows from ``status``.
    """

    device: str
    status: str
    detail: str = ""
    facts: dict[str, Any] = field(default_factory=dict)
    state: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def connection(self) -> str:
        return self.state or _STATE_OF_STATUS.get(self.status, "unknown")

    def to_json(self) -> dict[str, Any]:
        return {"device": self.device, "ok": self.ok, "status": self.status, "state": self.connection,
                "detail": self.detail, "facts": self.facts}


@runtime_checkable
class Device(Protocol):
    """What the scheduler needs from a device. Implementations are not thread-safe: the
    scheduler gives each device to exactly one worker."""

    spec: DeviceSpec

    @property
    def name(self) -> str: ...

    @property
    def caps(self) -> DeviceCaps:
        """What the device is and runs (simulated or real, runtime, dtypes, memory limits,
        accelerator and fallback): callers read this, never the URL scheme."""
        ...

    def info(self) -> dict[str, Any]:
        """Static description: kind, url, runtime, threads, plus what the device reports."""
        ...

    def check(self) -> Health:
        """Is it reachable and able to run? Never raises for device problems."""
        ...

    def run(self, workload: Workload, settings: Settings) -> Measurement:
        """Measure one workload. Raises ModelError for models the device rejects,
        DeviceError (DeviceTimeout, RuntimeFailure, ...) for device failures."""
        ...

    def close(self) -> None:
        """Release processes and connections; the device can be reopened by the factory."""
        ...
