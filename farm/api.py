"""The Python API for profiling: the same path ``hwfarm profile`` takes.

    import farm
    results = farm.profile(["models/mlp.onnx"], device="host-cpu")
    for r in results:
        print(r.model, r.measurement.latency_ms if r.ok else r.error)

    c = farm.compare("a.onnx", "b.onnx", device="host-cpu")   # b / a, paired rounds
    print(c.ratio.ratio, c.ratio.ci_low, c.ratio.ci_high)

The default policy is the quiet estimator (:mod:`farm.estimate`): at least
``PROFILE_ROUNDS`` rounds, each in a fresh session, up to ``PROFILE_MAX_ROUNDS`` until that
many ran in the machine's quiet state and the between-round interval is within the
policy's ``target_ci``; each round runs under ``PROFILE_POLICY``.

Input problems (registry, model files, a device kind that cannot run here) raise before
the dataset is opened, so bad input never changes the store.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Sequence

from farm.devices import open_device
from farm.errors import HwfarmError, InputError
from farm.estimate import Ratio, paired_ratio
from farm.measurement import Measurement, Policy, Settings, record_rounds, resolve_runtime
from farm.registry.spec import load_registry
from farm.scheduler.core import SLOW_PAUSE_S, Failure, JobEvent, Scheduler
from farm.store.base import Store
from farm.store.sqlite import SqliteStore
from farm.workload import load_workload

__all__ = ["profile", "compare", "ProfileResult", "Comparison", "PROFILE_POLICY", "PROFILE_ROUNDS",
           "PROFILE_MAX_ROUNDS", "PAIRED_ROUNDS", "PAIRED_POLICY"]

# One round of `hwfarm profile`: shorter than a whole measurement used to be (0.2 s warm-up,
# 0.5 s timed), because the rounds, not one long run, now carry the precision.
PROFILE_POLICY = Policy(warmup=10, warmup_s=0.05, min_runs=10, min_time_s=0.15, max_runs=500, max_time_s=1.0,
                        target_ci=0.02)
PROFILE_ROUNDS = 3  # quiet rounds wanted
PROFILE_MAX_ROUNDS = 12  # the most rounds one model gets
PAIRED_ROUNDS = 12  # rounds of each model in a paired comparison
# A paired round is short: the two models' rounds sit closer in time, so a state both see
# cancels in their ratio, and more pairs narrow its interval.
PAIRED_POLICY = Policy(warmup=5, warmup_s=0.03, min_runs=5, min_time_s=0.08, max_runs=500, max_time_s=1.0,
                       target_ci=0.02)


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
    rounds: int | None = None,
    max_rounds: int | None = None,
    estimator: str | None = None,
    on_event: Callable[[JobEvent], None] | None = None,
    on_requeue: Callable[[list[int]], None] | None = None,
    slow_pause_s: float | None = None,
) -> list[ProfileResult]:
    """Measure ``models`` on a registered device; results are stored in ``db`` and returned
    in the order given. ``timeout_s`` overrides the device entry's per-job deadline.
    Every model is measured once, then every model again, in rounds (see
    :mod:`farm.measurement`): ``estimator="quiet"`` (default on real devices) wants
    ``rounds`` quiet rounds (``PROFILE_ROUNDS``) and runs at most ``max_rounds``
    (``PROFILE_MAX_ROUNDS``, or ``rounds`` when larger); ``"pooled"`` (default on simulated
    devices, which have no slow states: one round) runs exactly ``rounds`` and pools them."""
    spec = load_registry(registry).get(device)
    if timeout_s is not None:
        spec = spec.model_copy(update={"timeout_s": timeout_s})
    workloads = [load_workload(m) for m in models]
    probe = open_device(spec)  # a kind that cannot run here fails now, with nothing written
    simulated = probe.caps.simulated
    probe.close()
    policy = policy or PROFILE_POLICY
    estimator = estimator or ("pooled" if simulated else "quiet")
    rounds = rounds or (PROFILE_ROUNDS if estimator == "quiet" else 1)
    if estimator == "pooled":
        if max_rounds not in (None, rounds):
            raise InputError(f"max_rounds {max_rounds}: only the quiet estimator adds rounds ({spec.name} pools "
                             f"exactly {rounds})")
        max_rounds = None
    else:
        max_rounds = max(max_rounds or PROFILE_MAX_ROUNDS, rounds)
    store = SqliteStore(db) if isinstance(db, (str, os.PathLike)) else db
    sched = Scheduler(store, on_event=on_event, slow_pause_s=SLOW_PAUSE_S if slow_pause_s is None else slow_pause_s)
    requeued = sched.requeue_stale()
    if requeued and on_requeue is not None:
        on_requeue(requeued)
    subs = [sched.submit(spec, w, Settings(runtime=resolve_runtime(spec.default_runtime, w.format),
                                           threads=threads or spec.threads, affinity=spec.affinity,
                                           policy=policy, rounds=rounds, max_rounds=max_rounds,
                                           estimator=estimator), force=force)
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


@dataclass(frozen=True)
class Comparison:
    """Two models measured in alternating rounds: each one's record and ``b / a``."""

    a: ProfileResult
    b: ProfileResult
    ratio: Ratio

    def to_json(self) -> dict[str, object]:
        """The ``hwfarm profile A B --paired --json`` object (keys are only ever added)."""
        r = self.ratio
        return {"a": self.a.measurement.to_json(model=self.a.model) if self.a.measurement else None,
                "b": self.b.measurement.to_json(model=self.b.model) if self.b.measurement else None,
                "ratio": r.ratio, "ci95": [r.ci_low, r.ci_high], "pairs": r.pairs,
                "per_round": list(r.per_round), "unstable": r.unstable}


def compare(
    a: str | os.PathLike[str],
    b: str | os.PathLike[str],
    *,
    device: str,
    rounds: int = PAIRED_ROUNDS,
    policy: Policy | None = None,
    **kwargs: object,
) -> Comparison:
    """Measure ``a`` and ``b`` alternately, round by round (``rounds`` each, fresh sessions,
    always measured: stored records were not interleaved), and pair their rounds: the ratio
    ``b / a`` with its between-round interval (:func:`farm.estimate.paired_ratio`). The
    records are stored as :func:`profile` stores them. This is how a speedup is proven."""
    if rounds < 2:
        raise ValueError("a paired comparison needs at least 2 rounds")
    kwargs.pop("force", None)
    ra, rb = profile([a, b], device=device, policy=policy or PAIRED_POLICY, rounds=rounds, max_rounds=rounds, estimator="quiet",
                     force=True, slow_pause_s=0.0, **kwargs)  # type: ignore[arg-type]
    for r in (ra, rb):
        if r.measurement is None:
            raise HwfarmError(r.error or f"{r.model}: not measured")
    assert ra.measurement is not None and rb.measurement is not None
    floor = (ra.measurement.provenance.get("reference") or {}).get("floor_us")
    return Comparison(ra, rb, paired_ratio(record_rounds(ra.measurement), record_rounds(rb.measurement), floor))

