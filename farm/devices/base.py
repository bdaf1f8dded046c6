"""The Device protocol every device kind implements, and the records it returns.

A device is a transport (moves files, runs commands), a runner (the runtime on the device)
and a parser (runner output → numbers), behind four methods. The contract tests in
``tests/farm/test_device_contract.py`` run against every kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ..measurement import Measurement, Settings
from ..registry import DeviceSpec
from ..workload import Workload

__all__ = ["Device", "Health"]


@dataclass(frozen=True)
class Health:
    """Result of :meth:`Device.check`. ``status``: ok | unavailable | unreachable | busy | error."""

    device: str
    status: str
    detail: str = ""
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_json(self) -> dict[str, Any]:
        return {"device": self.device, "ok": self.ok, "status": self.status,
                "detail": self.detail, "facts": self.facts}


@runtime_checkable
class Device(Protocol):
    """What the scheduler needs from a device. Implementations are not thread-safe: the
    scheduler gives each device to exactly one worker."""

    spec: DeviceSpec

    @property
    def name(self) -> str: ...

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
