"""The dataset: devices, workloads (graphs and model bytes), measurements, jobs, fusion rules.

:class:`Store` (:mod:`.base`) is the protocol and its contract; :class:`SqliteStore`
(:mod:`.sqlite`) the embedded default: one SQLite file in WAL mode, or ``":memory:"``.
"""

from farm.store.base import FusionRecord, Job, Store, WorkloadRecord
from farm.store.sqlite import SqliteStore, open_store, process_owner

__all__ = ["Store", "SqliteStore", "Job", "WorkloadRecord", "FusionRecord", "open_store", "process_owner"]
