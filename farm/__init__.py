"""hwfarm's farm layer: device registry, devices, workloads, measurement, store, scheduler.

``import farm`` is cheap and has no side effects. The public API is re-exported here.
"""

from __future__ import annotations

__version__ = "0.1.0"
