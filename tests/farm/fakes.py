"""Test doubles for the scheduler: a scripted Device and in-memory workloads."""

from __future__ import annotations

import hashlib
import time

from farm.agent.measure import summarize
from farm.devices.base import Health
from farm.devices.caps import DeviceCaps
from farm.errors import DeviceError, DeviceTimeout, ModelError, RuntimeFailure
from farm.ir.graph import Graph, Node, TensorInfo
from farm.measurement import Measurement, Settings
from farm.registry.spec import DeviceSpec
from farm.workload import Workload


def workload(name: str = "w", payload: bytes = b"model") -> Workload:
    x = TensorInfo("x", (1, 8), "float32")
    y = TensorInfo("y", (1, 4), "float32")
    g = Graph(name, (Node("fc", "Gemm", (x,), (y,), macs=32, params=36, bytes_moved=48),), (x,), (y,))
    return Workload(hashlib.sha256(payload).hexdigest(), "onnx", name, None, g, payload)


class ScriptedDevice:
    """Follows a script of outcomes per workload name: 'ok', 'timeout', 'crash', 'badmodel',
    'down' (unreachable: the run fails and so does the health check until the next outcome)."""

    def __init__(self, spec: DeviceSpec, script: dict[str, list[str]] | None = None) -> None:
        self.spec = spec
        self.script = {k: list(v) for k, v in (script or {}).items()}
        self.calls: list[str] = []
        self.closed = False
        self.down = False  # the last outcome was 'down': the health check finds it offline too

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def caps(self) -> DeviceCaps:
        return DeviceCaps(simulated=False, runtime="fake")

    def info(self):
        return {"name": self.name, "kind": "fake"}

    def check(self) -> Health:
        if self.down:
            return Health(self.name, "unreachable", "scripted: down")
        return Health(self.name, "ok", "scripted")

    def run(self, w: Workload, settings: Settings) -> Measurement:
        self.calls.append(w.name)
        outcome = self.script.get(w.name, ["ok"]).pop(0) if self.script.get(w.name) else "ok"
        self.down = outcome == "down"
        if self.down:
            raise DeviceError(f"device {self.name!r}: cannot reach it")
        if outcome == "timeout":
            raise DeviceTimeout(f"device {self.name!r}: no answer")
        if outcome == "crash":
            raise RuntimeFailure(f"device {self.name!r}: agent died")
        if outcome == "badmodel":
            raise ModelError(f"{w.name}: unsupported op")
        samples = [1.0, 1.1, 0.9, 1.0, 1.05, 0.95]
        return Measurement(self.name, w.hash, settings, summarize(samples), tuple(samples), (), (), "converged",
                           {"simulated": False, "runtime": settings.runtime}, created_at=time.strftime("%Y"))

    def close(self) -> None:
        self.closed = True
