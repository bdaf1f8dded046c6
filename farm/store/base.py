"""The Store protocol: the dataset as the rest of hwfarm sees it, and the records it returns.

Contract (checked for every implementation by :mod:`farm.testing.store`):

- **Thread safety**: every method may be called from any thread; one call is atomic.
- **Records are immutable**: methods return frozen dataclasses; changing the store never
  changes a record already returned.
- **Idempotence**: ``put_device``, ``put_workload`` and ``put_fusion_rules`` may be
  repeated; a workload and its model bytes are keyed by content hash.
- **Jobs** move ``queued → running → done | failed``; ``claim`` hands a queued job to
  exactly one owner; ``fail`` with ``retry_in_s`` re-queues it until ``max_attempts``;
  ``requeue_stale`` returns the running jobs of owners that died. A job measured in rounds
  keeps each finished round (``add_round``) and goes back in the queue until its last.
- **Reference floor**: ``reference_floor(device)`` is ``farm.estimate.low_level`` of the
  ``reference.level_us`` in the provenance of the device's recent records (None when none
  has one); ``stable_latencies(device, workload, settings_hash)`` the latencies of the
  newest records for that key not marked ``unstable``, newest first.
- **Leases**: at most one owner holds a device at a time (``acquire_device``); a lease
  expires after ``ttl_s`` unless renewed.
- **Model bytes** are stored by content hash (``put_workload`` keeps them, ``model_bytes``
  reads them), so a job can run on a host that does not share the coordinator's disk.

:class:`~farm.store.sqlite.SqliteStore` is the embedded default (a file, or ``":memory:"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from farm.ir.graph import Graph
from farm.measurement import Measurement, Settings
from farm.registry.spec import DeviceSpec
from farm.workload import Workload

__all__ = ["Store", "Job", "WorkloadRecord", "FusionRecord", "JOB_STATES"]

JOB_STATES = ("queued", "running", "done", "failed")


@dataclass(frozen=True)
class Job:
    id: int
    device: str
    workload: str
    settings: Settings
    status: str
    attempts: int
    max_attempts: int
    error: str | None
    measurement_id: int | None
    owner: str | None
    rounds_done: int = 0  # of a job measured in rounds (``settings.rounds``)


@dataclass(frozen=True)
class WorkloadRecord:
    hash: str
    format: str
    name: str
    source_path: str | None
    size_bytes: int
    macs: int
    params: int
    graph: Graph


@dataclass(frozen=True)
class FusionRecord:
    """One tested fusion candidate on a device: its op sequence, the verdict and the
    measurements behind it (``evidence``: latencies and the decision rule's numbers)."""

    device: str
    candidate: str
    ops: tuple[str, ...]
    fused: bool
    evidence: dict[str, Any]
    created_at: str


@runtime_checkable
class Store(Protocol):
    """Devices, workloads (graphs and model bytes), measurements, jobs, fusion rules, leases."""

    path: str

    def close(self) -> None: ...

    # devices and workloads
    def put_device(self, spec: DeviceSpec) -> None: ...
    def device_names(self) -> list[str]: ...
    def put_workload(self, w: Workload) -> None: ...
    def get_workload(self, hash_: str) -> WorkloadRecord | None: ...
    def model_bytes(self, hash_: str) -> bytes | None: ...

    # measurements
    def add_measurement(self, m: Measurement) -> Measurement: ...
    def get_measurement(self, mid: int) -> Measurement: ...
    def find_measurement(self, device: str, workload: str, settings_hash: str) -> Measurement | None: ...
    def measurements(self, *, device: str | None = None, workload: str | None = None) -> list[Measurement]: ...
    def dataset_rows(self, *, device: str | None = None) -> list[dict[str, Any]]: ...
    def reference_floor(self, device: str, *, recent: int = 50) -> float | None: ...
    def stable_latencies(self, device: str, workload: str, settings_hash: str, *,
                         recent: int = 10) -> list[float]: ...

    # jobs
    def enqueue(self, device: str, workload: str, settings: Settings, *, max_attempts: int = 3) -> Job: ...
    def get_job(self, job_id: int) -> Job: ...
    def jobs(self, *, status: str | None = None, device: str | None = None) -> list[Job]: ...
    def claim(self, device: str, owner: str, *, ids: set[int] | None = None) -> tuple[Job | None, float | None]: ...
    def heartbeat(self, job_ids: list[int], owner: str) -> None: ...
    def complete(self, job: Job, m: Measurement) -> Measurement: ...
    def add_round(self, job: Job, m: Measurement, *, last: bool | None = None,
                  retry_in_s: float = 0.0) -> list[Measurement]: ...
    def rounds(self, job: Job) -> list[Measurement]: ...
    def fail(self, job: Job, error: str, *, retry_in_s: float | None) -> Job: ...
    def requeue_stale(self, *, stale_after_s: float = 300.0) -> list[int]: ...

    # fusion rules
    def put_fusion_rules(self, device: str, records: list[FusionRecord]) -> None: ...
    def fusion_rules(self, device: str) -> list[FusionRecord]: ...

    # device leases
    def acquire_device(self, name: str, owner: str, *, ttl_s: float = 60.0) -> str | None: ...
    def device_holder(self, name: str) -> str | None: ...
    def renew_device(self, name: str, owner: str, *, ttl_s: float = 60.0) -> None: ...
    def release_device(self, name: str, owner: str) -> None: ...
