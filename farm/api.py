"""The Python API for profiling: the same path ``hwfarm profile`` takes.

    import farm
    results = farm.profile(["models/mlp.onnx"], device="host-cpu")
    for r in results:
        print(r.model, r.measurement.latency_ms if r.ok else r.error)

Input problems (registry, model files, a device kind that cannot run here) raise before
the dataset is opened, so bad input never changes the store.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Sequence

from farm.devices import open_device
from farm.measurement import Measurement, Policy, Settings, resolve_runtime
from farm.registry.spec import load_registry
from farm.scheduler.core import Failure, JobEvent, Scheduler
from farm.store.base import Store
from farm.store.sqlite import SqliteStore
from farm.workload import load_workload

__all__ = ["profile", "ProfileResult"]


@dataclass(frozen=True)
class ProfileResult:
    """One model's outcome: a measurement (``source`` measured | cached) or a failure."""

    model: str
    measurement: Measurement | None
    source: str  # "measured" | "cached" | "failed"
    failure: Failure | None = None

    @property
    def ok(self) -> bool:
        return self.measurement is not None

    @property
    def error(self) -> str | None:
        return self.failure.message if self.failure else None


def profile(
    models: Sequence[str | os.PathLike[str]],
    *,
    device: str,
    registry: str | os.PathLike[str] = "devices.yaml",
    db: str | os.PathLike[str] | Store = "hwfarm.db",
    policy: Policy | None = None,
    threads: int | None = None,
    timeout_s: float | None = None,
    force: bool = False,
    rounds: int = 1,
    on_event: Callable[[JobEvent], None] | None = None,
    on_requeue: Callable[[list[int]], None] | None = None,
) -> list[ProfileResult]:
    """Measure ``models`` on a registered device; results are stored in ``db`` and returned
    in the order given. ``timeout_s`` overrides the device entry's per-job deadline.
    ``rounds`` > 1 measures every model once, then every model again, that many times, and
    stores one record per model pooling its rounds' runs (see :mod:`farm.measurement`)."""
    spec = load_registry(registry).get(device)
    if timeout_s is not None:
        spec = spec.model_copy(update={"timeout_s": timeout_s})
    workloads = [load_workload(m) for m in models]
    open_device(spec).close()  # a kind that cannot run here fails now, with nothing written
    policy = policy or Policy()
    store = SqliteStore(db) if isinstance(db, (str, os.PathLike)) else db
    sched = Scheduler(store, on_event=on_event)
    requeued = sched.requeue_stale()
    if requeued and on_requeue is not None:
        on_requeue(requeued)
    subs = [sched.submit(spec, w, Settings(runtime=resolve_runtime(spec.default_runtime, w.format),
                                           threads=threads or spec.threads, affinity=spec.affinity,
                                           policy=policy, rounds=rounds), force=force)
            for w in workloads]
    ids = {s.job.id for s in subs if s.job is not None}
    report = sched.run([spec], job_ids=ids, workloads={w.hash: w for w in workloads}) if ids else None
    results = []
    for model, sub in zip(models, subs, strict=True):
        if sub.cached is not None:
            results.append(ProfileResult(str(model), sub.cached, "cached"))
        elif report is not None and sub.job is not None and sub.job.id in report.done:
            results.append(ProfileResult(str(model), report.done[sub.job.id], "measured"))
        else:
            failure = report.failed.get(sub.job.id) if report is not None and sub.job is not None else None
            # Another process sharing the dataset may have run the (joined, identical) job.
            job = store.get_job(sub.job.id) if failure is None and sub.job is not None else None
            if job is not None and job.status == "done" and job.measurement_id is not None:
                results.append(ProfileResult(str(model), store.get_measurement(job.measurement_id), "measured"))
                continue
            if job is not None and job.status == "failed":
                failure = Failure(job.error or f"{model}: failed")
            results.append(ProfileResult(str(model), None, "failed", failure or Failure(f"{model}: not run")))
    return results
