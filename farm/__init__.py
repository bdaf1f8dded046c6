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
    "profile": "farm.api", "ProfileResult": "farm.api",
    "load_registry": "farm.registry", "DeviceSpec": "farm.registry", "Registry": "farm.registry",
    "open_device": "farm.devices", "Device": "farm.devices", "Health": "farm.devices",
    "load_workload": "farm.workload", "Workload": "farm.workload",
    "Graph": "farm.graph", "Node": "farm.graph", "TensorInfo": "farm.graph",
    "Measurement": "farm.measurement", "Settings": "farm.measurement", "Policy": "farm.measurement",
    "LatencyStats": "farm.measurement",
    "SqliteStore": "farm.store", "Scheduler": "farm.scheduler",
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
