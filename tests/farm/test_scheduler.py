"""Scheduler behaviour with a scripted device: caching, retries, permanent failures, resume."""

from __future__ import annotations

from farm.measurement import Settings
from farm.registry.spec import DeviceSpec
from farm.scheduler.core import Scheduler
from farm.store.sqlite import SqliteStore

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
    store, sched, devices, _ = make(tmp_path, {"a": ["timeout"] * 10}, max_attempts=2, outage_s=0)
    w = workload("a", b"a")
    _, ids = submit_all(sched, [w])
    report = sched.run([SPEC], job_ids=ids, workloads={w.hash: w})
    (failure,) = report.failed.values()
    assert "no answer" in failure.message and failure.exit_code == 1
    assert len(devices[0].calls) == 2
    assert store.get_job(next(iter(ids))).status == "failed"


def test_a_device_gone_for_a_while_is_waited_for(tmp_path):
    # The device stops answering for six attempts (a reboot): past max_attempts, but nothing
    # ran on it in between and its health check finds it offline, so the job keeps retrying
    # within the outage window and succeeds.
    store, sched, devices, events = make(tmp_path, {"a": ["down"] * 6 + ["ok"]}, max_attempts=2, outage_s=60)
    w = workload("a", b"a")
    _, ids = submit_all(sched, [w])
    report = sched.run([SPEC], job_ids=ids, workloads={w.hash: w})
    assert report.ok and devices[0].calls == ["a"] * 7
    assert [e.kind for e in events].count("retry") == 6
    assert store.get_job(next(iter(ids))).status == "done"


def test_backoff_is_capped(tmp_path):
    store, sched, _, events = make(tmp_path, {"a": ["down"] * 5}, max_attempts=2, outage_s=60, max_backoff_s=0.03)
    w = workload("a", b"a")
    _, ids = submit_all(sched, [w])
    assert sched.run([SPEC], job_ids=ids, workloads={w.hash: w}).ok
    delays = [float(e.message.rsplit("retry in ", 1)[1].rstrip(" s)")) for e in events if e.kind == "retry"]
    assert delays == [0.01, 0.02, 0.03, 0.03, 0.03]


def test_a_device_down_past_the_outage_window_fails_every_queued_job_at_once(tmp_path):
    # Gone for good: once the window is over, the job that ran out of attempts and every job
    # still queued fail with the device's last error and how long it was gone; the queued
    # jobs are not each tried max_attempts times.
    script = {n: ["down"] * 1000 for n in "abcd"}
    store, sched, devices, _ = make(tmp_path, script, max_attempts=2, outage_s=0.2)
    ws = [workload(n, n.encode()) for n in "abcd"]
    _, ids = submit_all(sched, ws)
    report = sched.run([SPEC], job_ids=ids, workloads={w.hash: w for w in ws})
    assert not report.done and set(report.failed) == ids
    assert all("cannot reach" in f.message and "has not answered for" in f.message for f in report.failed.values())
    assert all(store.get_job(i).status == "failed" for i in ids)
    assert len(devices[0].calls) < 4 * 12  # a 0.2 s window at 10–150 ms backoffs, not 1000 tries each


def test_the_device_entry_sets_its_own_outage_window(tmp_path):
    # The farm waits an hour for a device by default here; this entry says 0 s: it fails at once.
    store, sched, devices, _ = make(tmp_path, {"a": ["down"] * 1000}, max_attempts=2, outage_s=3600)
    spec = DeviceSpec(name="dev", url="local://cpu", outage_s=0)
    w = workload("a", b"a")
    ids = {sched.submit(spec, w, Settings()).job.id}
    (failure,) = sched.run([spec], job_ids=ids, workloads={w.hash: w}).failed.values()
    assert "has not answered for 0 s" in failure.message and devices[0].calls == ["a", "a"]


def test_a_job_that_fails_on_a_device_that_answers_its_check_is_not_an_outage(tmp_path):
    # One job, the device timing out on it every time but answering its health check: the
    # job is the problem (it hangs the device), so it fails after max_attempts.
    store, sched, devices, _ = make(tmp_path, {"a": ["timeout"] * 100}, max_attempts=3, outage_s=3600)
    w = workload("a", b"a")
    _, ids = submit_all(sched, [w])
    (failure,) = sched.run([SPEC], job_ids=ids, workloads={w.hash: w}).failed.values()
    assert "no answer" in failure.message and "has not answered" not in failure.message
    assert devices[0].calls == ["a"] * 3


def test_a_job_that_fails_while_the_device_works_is_not_an_outage(tmp_path):
    # 'a' finds the device unreachable every time while 'b' and 'c' run fine between its
    # attempts: 'a' is the problem, so it fails after max_attempts however long the window.
    store, sched, devices, _ = make(tmp_path, {"a": ["down"] * 100, "b": ["ok"], "c": ["ok"]}, max_attempts=2,
                                    outage_s=3600)
    ws = [workload(n, n.encode()) for n in "abc"]
    _, ids = submit_all(sched, ws)
    report = sched.run([SPEC], job_ids=ids, workloads={w.hash: w for w in ws})
    assert len(report.done) == 2 and len(report.failed) == 1
    (failure,) = report.failed.values()
    assert "cannot reach" in failure.message and "has not answered" not in failure.message
    assert devices[0].calls.count("a") == 2


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


def test_a_queued_job_runs_from_the_stored_model_bytes_when_its_file_is_gone(tmp_path):
    """The store keeps model bytes by content hash: a worker on another host, or after the
    file was deleted, runs exactly the bytes that were queued."""
    from farm.formats.onnx_export import graph_to_onnx
    from farm.workload import load_workload
    from farm.zoo.nets import build_net

    path = tmp_path / "m.onnx"
    path.write_bytes(graph_to_onnx(build_net("ds_cnn")).SerializeToString())
    w = load_workload(path)
    store, sched, devices, _ = make(tmp_path)
    _, ids = submit_all(sched, [w])
    assert store.model_bytes(w.hash) == w.data
    path.unlink()
    report = sched.run([SPEC], job_ids=ids)  # no in-memory workloads: loaded from the store
    assert report.ok and len(report.done) == 1
    assert devices[0].calls == ["m"]
