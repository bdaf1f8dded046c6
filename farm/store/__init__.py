"""The dataset: devices, workloads, measurements, jobs and fusion rules.

:class:`SqliteStore` (:mod:`.sqlite`) is the embedded default: one SQLite file in WAL mode.
"""

from farm.store.sqlite import FusionRecord, Job, SqliteStore, WorkloadRecord, open_store, process_owner

__all__ = ["SqliteStore", "Job", "WorkloadRecord", "FusionRecord", "open_store", "process_owner"]
