"""Scheduler behaviour with a scripted device: caching, retries, permanent failures, resume."""

from __future__ import annotations

from farm.measurement import Settings
from farm.registry import DeviceSpec
from farm.scheduler import Scheduler
from farm.store import SqliteStore

from .fakes import ScriptedDevice, workload

SPEC = DeviceSpec(name="dev", url="local://cpu")


def make(tmp_path, script=None, **kw):
    store = SqliteStore(tmp_path / "s.db")
    devices: list[ScriptedDevice] = []

    def factory(spec):
        d = ScriptedDevice(spec, script)
        devices.append(d)
        return d

    events = []
    sched = Scheduler(store, device_factory=factory, backoff_s=0.01, on_event=events.append, **kw)
    return store, sched, devices, events


def submit_all(sched, ws, **kw):
    subs = [sched.submit(SPEC, w, Settings(), **kw) for w in ws]
    ids = {s.job.id for s in subs if s.job}
    return subs, ids


def test_runs_each_job_once_and_caches(tmp_path):
    store, sched, devices, events = make(tmp_path)
    ws = [workload("a", b"a"), workload("b", b"b")]
    subs, ids = submit_all(sched, ws)
    report = sched.run([SPEC], job_ids=ids, workloads={w.hash: w for w in ws})
    assert report.ok and len(report.done) == 2
    assert devices[0].calls == ["a", "b"] and devices[0].closed
    assert [e.kind for e in events].count("done") == 2
    subs2, ids2 = submit_all(sched, ws)
    assert ids2 == set() and all(s.cached is not None for s in subs2)
    subs3, ids3 = submit_all(sched, ws, force=True)
    assert len(ids3) == 2
    sched.run([SPEC], job_ids=ids3, workloads={w.hash: w for w in ws})
    assert len(store.measurements()) == 4


def test_transient_failures_retry_with_backoff(tmp_path):
    store, sched, devices, events = make(tmp_path, {"a": ["timeout", "crash", "ok"]})
    w = workload("a", b"a")
    _, ids = submit_all(sched, [w])
    report = sched.run([SPEC], job_ids=ids, workloads={w.hash: w})
    assert report.ok
    assert devices[0].calls == ["a", "a", "a"]
    assert [e.kind for e in events] == ["started", "retry", "started", "retry", "started", "done"]
    job = store.get_job(next(iter(ids)))
    assert job.status == "done" and job.attempts == 3


def test_retries_are_bounded(tmp_path):
    store, sched, devices, _ = make(tmp_path, {"a": ["timeout"] * 10}, max_attempts=2)
    w = workload("a", b"a")
    _, ids = submit_all(sched, [w])
    report = sched.run([SPEC], job_ids=ids, workloads={w.hash: w})
    (failure,) = report.failed.values()
    assert "no answer" in failure.message and failure.exit_code == 1
    assert len(devices[0].calls) == 2
    assert store.get_job(next(iter(ids))).status == "failed"


def test_bad_model_fails_at_once_with_input_exit_code(tmp_path):
    store, sched, devices, _ = make(tmp_path, {"a": ["badmodel"]})
    ws = [workload("a", b"a"), workload("b", b"b")]
    _, ids = submit_all(sched, ws)
    report = sched.run([SPEC], job_ids=ids, workloads={w.hash: w for w in ws})
    assert len(report.done) == 1 and len(report.failed) == 1
    (failure,) = report.failed.values()
    assert failure.exit_code == 2 and devices[0].calls == ["a", "b"]


def test_only_requested_jobs_run(tmp_path):
    store, sched, devices, _ = make(tmp_path)
    ws = [workload("a", b"a"), workload("b", b"b")]
    subs, ids = submit_all(sched, ws)
    mine = {subs[0].job.id}
    sched.run([SPEC], job_ids=mine, workloads={w.hash: w for w in ws})
    assert devices[0].calls == ["a"]
    assert store.get_job(subs[1].job.id).status == "queued"


def test_unopenable_device_fails_its_jobs(tmp_path):
    from farm.errors import DeviceUnavailable

    store = SqliteStore(tmp_path / "s.db")

    def factory(spec):
        raise DeviceUnavailable("no such board")

    sched = Scheduler(store, device_factory=factory)
    w = workload("a", b"a")
    _, ids = submit_all(sched, [w])
    report = sched.run([SPEC], job_ids=ids)
    assert [f.message for f in report.failed.values()] == ["no such board"]
    assert store.get_job(next(iter(ids))).status == "failed"


def test_busy_device_waits_then_gives_up(tmp_path):
    import os
    import socket

    store, sched, devices, events = make(tmp_path, lease_wait_s=0.5)
    w = workload("a", b"a")
    _, ids = submit_all(sched, [w])
    other = f"{socket.gethostname()}:{os.getppid()}"  # a live process that is not us
    assert store.acquire_device("dev", other) is None
    report = sched.run([SPEC], job_ids=ids, workloads={w.hash: w})
    assert not devices and not report.ok
    assert any(e.kind == "waiting" and other in e.message for e in events)
