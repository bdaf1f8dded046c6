"""hwfarm's farm layer: device registry, devices, workloads, measurement, store, scheduler.

``import farm`` is cheap and has no side effects; the names below load on first use.

    import farm
    results = farm.profile(["model.onnx"], device="host-cpu")
    store = farm.SqliteStore("hwfarm.db")
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "profile": "farm.api", "ProfileResult": "farm.api", "compare": "farm.api", "Comparison": "farm.api",
    "load_registry": "farm.registry.spec", "DeviceSpec": "farm.registry.spec", "Registry": "farm.registry.spec",
    "open_device": "farm.devices", "Device": "farm.devices", "Health": "farm.devices",
    "load_workload": "farm.workload", "Workload": "farm.workload",
    "Graph": "farm.ir.graph", "Node": "farm.ir.graph", "TensorInfo": "farm.ir.graph",
    "Measurement": "farm.measurement", "Settings": "farm.measurement", "Policy": "farm.measurement",
    "LatencyStats": "farm.measurement",
    "SqliteStore": "farm.store.sqlite", "Scheduler": "farm.scheduler.core",
    "HwfarmError": "farm.errors", "InputError": "farm.errors", "DeviceError": "farm.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'farm' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
