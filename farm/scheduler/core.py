"""The scheduler: jobs queued in the store, one worker per device, retries, resumption.

- :meth:`Scheduler.submit` returns a stored measurement for the same (device, workload hash,
  settings hash) unless forced, else queues a job (or joins the identical open one).
- :meth:`Scheduler.run` starts one worker thread per device. A worker first takes the
  device's lease in the store (so two processes never measure on one device at once), then
  claims jobs one at a time. Success writes the measurement and marks the job done in one
  transaction. Device failures retry with exponential backoff (capped at ``max_backoff_s``)
  up to ``max_attempts``; bad models fail at once (retrying cannot fix them).
- A device that stops answering altogether (a board rebooting, a phone re-enumerating on
  USB) is not a bad job: when a job has used its attempts, nothing has run on the device
  since the job's previous failure and the device's health check finds it offline, the job
  keeps retrying for up to ``outage_s`` seconds from the device's first failure (a device
  that answers its check while one job keeps failing has a bad job: that one fails). A
  device down longer than that fails the job and every job still queued for it at once,
  with the last error and how long the device was gone (a dead board costs ``outage_s``,
  not an attempt per job).
- Jobs measured in rounds (``Settings.in_rounds``): a finished round is kept in the job's
  row and the job goes back in the queue behind every job with fewer rounds done, so the
  device measures each queued model once, then each again, each round in a fresh session;
  the last round stores one record of all rounds (``farm.measurement.merge_rounds``). With
  the ``quiet`` estimator the rounds ask the agent for the reference workload's readings,
  the worker judges them against the device's floor (the store's ``reference_floor``,
  lowered by every reading since), and a job is done when ``farm.estimate.enough_rounds``
  says so; a round that ran slow holds the job's next one back ``SLOW_PAUSE_S`` (other
  jobs run meanwhile), so its rounds spread over a slow spell instead of all landing in
  it. A process killed mid-way keeps the rounds it finished.
- Jobs left ``running`` by a process that died are put back in the queue first, so running
  the same command again after ``kill -9`` finishes what is left and repeats nothing.
"""

from __future__ import annotations

import functools
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from farm.devices import Device, open_device
from farm.errors import DeviceError, HwfarmError, InputError, ModelError
from farm.estimate import enough_rounds, job_floor, low_level, quiet_flags
from farm.measurement import Measurement, Settings, merge_rounds, rounds_of
from farm.registry.spec import DeviceSpec
from farm.scheduler.executor import Executor, ThreadExecutor
from farm.store.base import Job, Store
from farm.store.sqlite import process_owner
from farm.workload import Workload, load_workload, workload_from_bytes

__all__ = ["Scheduler", "Submission", "JobEvent", "RunReport", "Failure", "OUTAGE_S"]

OUTAGE_S = 120.0  # how long a device may stop answering before its jobs fail (a reboot: 30–90 s)
SLOW_PAUSE_S = 0.5  # after a round that ran slow, the job's next round waits this long


@dataclass(frozen=True)
class Submission:
    workload: Workload
    device: str
    settings: Settings
    job: Job | None  # None when a stored measurement answered
    cached: Measurement | None


@dataclass(frozen=True)
class JobEvent:
    """Progress callback payload. ``kind``: started | round | done | retry | failed | waiting
    (``round``: one round of a job measured in rounds finished, more are left)."""

    kind: str
    device: str
    job: Job | None = None
    measurement: Measurement | None = None
    message: str = ""


@dataclass(frozen=True)
class Failure:
    """Why a job failed; ``exit_code`` follows the CLI's convention (2 bad input, 1 device)."""

    message: str
    exit_code: int = 1


@dataclass
class RunReport:
    done: dict[int, Measurement] = field(default_factory=dict)
    failed: dict[int, Failure] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed


class Scheduler:
    def __init__(
        self,
        store: Store,
        *,
        max_attempts: int = 3,
        backoff_s: float = 1.0,
        max_backoff_s: float = 15.0,
        outage_s: float = OUTAGE_S,
        lease_wait_s: float = 600.0,
        device_factory: Callable[[DeviceSpec], Device] = open_device,
        on_event: Callable[[JobEvent], None] | None = None,
        executor: Executor | None = None,
        slow_pause_s: float = SLOW_PAUSE_S,
    ) -> None:
        self.slow_pause_s = slow_pause_s
        self.store = store
        self.executor: Executor = executor or ThreadExecutor()
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.outage_s = outage_s
        self.lease_wait_s = lease_wait_s
        self._factory = device_factory
        self._on_event = on_event or (lambda e: None)
        self._owner = process_owner()

    def submit(self, spec: DeviceSpec, workload: Workload, settings: Settings, *, force: bool = False) -> Submission:
        self.store.put_device(spec)
        self.store.put_workload(workload)
        if not force:
            found = self.store.find_measurement(spec.name, workload.hash, settings.hash)
            # A device that gained an energy meter re-measures what was stored without energy.
            stale = spec.energy is not None and found is not None and found.energy_mj is None \
                and "energy" not in found.provenance
            if found is not None and not stale:
                return Submission(workload, spec.name, settings, None, found)
        job = self.store.enqueue(spec.name, workload.hash, settings, max_attempts=self.max_attempts)
        return Submission(workload, spec.name, settings, job, None)

    def requeue_stale(self) -> list[int]:
        return self.store.requeue_stale()

    def run(self, specs: list[DeviceSpec], *, job_ids: set[int] | None = None,
            workloads: dict[str, Workload] | None = None) -> RunReport:
        """Run queued jobs (only ``job_ids`` when given) on these devices until none is left."""
        report = RunReport()
        lock = threading.Lock()
        known = dict(workloads or {})
        beat = threading.Event()
        hb = threading.Thread(target=self._heartbeat, args=(specs, beat), daemon=True)
        hb.start()
        try:
            self.executor.run_workers([
                (s.name, functools.partial(self._worker, s, job_ids, known, report, lock)) for s in specs])
        finally:
            beat.set()
        return report

    # ------------------------------------------------------------------ internals

    def _heartbeat(self, specs: list[DeviceSpec], stop: threading.Event) -> None:
        while not stop.wait(5.0):
            running = [j.id for j in self.store.jobs(status="running") if j.owner == self._owner]
            self.store.heartbeat(running, self._owner)
            for s in specs:
                self.store.renew_device(s.name, self._owner)

    def _acquire(self, spec: DeviceSpec) -> bool:
        deadline = time.monotonic() + self.lease_wait_s
        told = False
        while True:
            holder = self.store.acquire_device(spec.name, self._owner)
            if holder is None:
                return True
            if not told:
                self._on_event(JobEvent("waiting", spec.name, message=f"device {spec.name!r} is busy (held by {holder})"))
                told = True
            if time.monotonic() > deadline:
                return False
            time.sleep(1.0)

    def _load(self, job: Job, known: dict[str, Workload]) -> Workload:
        if job.workload in known:
            return known[job.workload]
        rec = self.store.get_workload(job.workload)
        if rec is None:
            raise ModelError(f"workload {job.workload[:12]}: not in the store")
        data = self.store.model_bytes(job.workload)
        if data is not None:  # the bytes that were queued: no shared disk needed
            w = workload_from_bytes(data, fmt=rec.format, name=rec.name, path=rec.source_path)
        elif rec.source_path:  # a dataset written before the store kept model bytes
            w = load_workload(Path(rec.source_path))
        else:
            raise ModelError(f"workload {job.workload[:12]}: no model bytes or file recorded")
        if w.hash != job.workload:
            raise ModelError(f"{rec.source_path}: file changed since it was queued (hash differs)")
        known[w.hash] = w
        return w

    def _complete(self, job: Job, m: Measurement, spec: DeviceSpec, report: RunReport, lock: threading.Lock) -> None:
        stored = self.store.complete(job, m)
        with lock:
            report.done[job.id] = stored
        self._on_event(JobEvent("done", spec.name, job, stored))

    def _worker(self, spec: DeviceSpec, ids: set[int] | None, known: dict[str, Workload],
                report: RunReport, lock: threading.Lock) -> None:
        def fail_all(msg: str) -> None:
            for j in self.store.jobs(status="queued", device=spec.name):
                if ids is None or j.id in ids:
                    self.store.fail(j, msg, retry_in_s=None)
                    with lock:
                        report.failed[j.id] = Failure(msg, 1)
                    self._on_event(JobEvent("failed", spec.name, j, message=msg))

        if not self._acquire(spec):
            fail_all(f"device {spec.name!r} stayed busy for {self.lease_wait_s:g} s")
            return
        device: Device | None = None
        outage_s = self.outage_s if spec.outage_s is None else spec.outage_s  # the entry's, else the farm's
        down_since: float | None = None  # the device's first failure since anything last ran on it
        n_ok = 0  # jobs done on the device so far
        floor: list[float | None] = [None]  # the device's lowest reference reading (quiet estimator)
        model_floors: dict[int, float | None] = {}  # per job: its model's own floor (read once, not per round)
        ok_at_failure: dict[int, int] = {}  # n_ok when each job last failed
        try:
            device = self._factory(spec)
            floor[0] = self.store.reference_floor(spec.name)
            while True:
                job, wait_s = self.store.claim(spec.name, self._owner, ids=ids)
                if job is None:
                    if wait_s is None:
                        return
                    time.sleep(min(max(wait_s, 0.05), 5.0))
                    continue
                if job.id not in model_floors:
                    model_floors[job.id] = self._model_floor(job)
                model_floor = model_floors[job.id]
                if job.settings.in_rounds and job.rounds_done:
                    kept = self.store.rounds(job)
                    if self._rounds_done(kept, job.settings, floor[0], model_floor):  # killed after its last round
                        self._complete(job, merge_rounds(kept, job.settings, floor_us=floor[0],
                                                         model_floor_ms=model_floor), spec, report, lock)
                        continue
                self._on_event(JobEvent("started", spec.name, job))
                try:
                    workload = self._load(job, known)
                    m = device.run(workload, job.settings)
                except InputError as err:  # a bad model or bad input: retrying cannot fix it
                    self._finish_failed(job, str(err), spec, report, lock, exit_code=err.exit_code)
                except (DeviceError, HwfarmError) as err:
                    down_since = time.monotonic() if down_since is None else down_since
                    gone = time.monotonic() - down_since
                    # nothing ran on the device since this job last failed, and it fails its
                    # health check: the device is down, not the job bad
                    down = job.attempts >= job.max_attempts and ok_at_failure.get(job.id, 0) == n_ok \
                        and self._offline(device)
                    ok_at_failure[job.id] = n_ok
                    if job.attempts < job.max_attempts or (down and gone < outage_s):
                        delay = min(self.backoff_s * 2 ** (job.attempts - 1), self.max_backoff_s)
                        self.store.fail(job, str(err), retry_in_s=delay)
                        self._on_event(JobEvent("retry", spec.name, job, message=f"{err} (retry in {delay:g} s)"))
                        continue
                    msg = f"{err} (the device has not answered for {gone:.0f} s; its queued jobs fail too)" if down \
                        else str(err)
                    self._finish_failed(job, msg, spec, report, lock, exit_code=err.exit_code)
                    if down:
                        fail_all(msg)
                        return
                except Exception as err:  # a bug, not a device problem: record it, keep the farm going
                    self._finish_failed(job, f"internal error: {type(err).__name__}: {err}", spec, report, lock)
                else:
                    down_since, n_ok = None, n_ok + 1
                    if job.settings.in_rounds:
                        kept = self.store.rounds(job) + [m]
                        floor[0] = job_floor(rounds_of(kept), floor[0])
                        last = self._rounds_done(kept, job.settings, floor[0], model_floor)
                        slow = not quiet_flags(rounds_of([m]), floor[0], model_floor_ms=model_floor)[0]
                        self.store.add_round(job, m, last=last, retry_in_s=self.slow_pause_s if slow else 0.0)
                        if not last:
                            self._on_event(JobEvent("round", spec.name, job, m,
                                                    message=f"round {len(kept)}/{job.settings.round_limit}"
                                                    + (" (slow)" if slow else "")))
                            continue
                        m = merge_rounds(kept, job.settings, floor_us=floor[0], model_floor_ms=model_floor)
                    self._complete(job, m, spec, report, lock)
        except HwfarmError as err:  # the device could not even be opened
            fail_all(str(err))
        finally:
            if device is not None:
                device.close()
            self.store.release_device(spec.name, self._owner)

    def _model_floor(self, job: Job) -> float | None:
        """The model's own floor on the device: the low level of its earlier stable records
        with the same settings (None for a model never measured here, or a pooled job)."""
        if job.settings.estimator != "quiet":
            return None
        hist = self.store.stable_latencies(job.device, job.workload, job.settings.hash)
        return low_level(hist) if hist else None

    @staticmethod
    def _rounds_done(kept: list[Measurement], settings: Settings, floor_us: float | None,
                     model_floor_ms: float | None = None) -> bool:
        if settings.estimator != "quiet":
            return len(kept) >= settings.rounds
        return enough_rounds(rounds_of(kept), floor_us, need=settings.rounds, max_rounds=settings.round_limit,
                             target_ci=settings.policy.target_ci, model_floor_ms=model_floor_ms)

    @staticmethod
    def _offline(device: Device) -> bool:
        """Whether the device's health check finds it unreachable (an error checking counts)."""
        try:
            return device.check().connection == "offline"
        except Exception:  # a check that cannot even run: as good as no answer
            return True

    def _finish_failed(self, job: Job, msg: str, spec: DeviceSpec, report: RunReport, lock: threading.Lock,
                       *, exit_code: int = 1) -> None:
        self.store.fail(job, msg, retry_in_s=None)
        with lock:
            report.failed[job.id] = Failure(msg, exit_code)
        self._on_event(JobEvent("failed", spec.name, job, message=msg))
