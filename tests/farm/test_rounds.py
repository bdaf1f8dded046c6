"""Measuring in rounds: every queued model once, then every model again; one pooled record each."""

from __future__ import annotations

import json
import sqlite3

import pytest

from farm.agent.measure import summarize
from farm.measurement import Measurement, Settings, merge_rounds
from farm.registry.spec import DeviceSpec
from farm.scheduler.core import Scheduler
from farm.store.sqlite import SqliteStore

from .fakes import ScriptedDevice, workload

SPEC = DeviceSpec(name="dev", url="local://cpu")


class Killed(BaseException):
    """Stands in for kill -9: nothing in the worker catches it, the job stays ``running``."""


class RoundDevice(ScriptedDevice):
    """A scripted device whose k-th successful run returns runs around k ms (so rounds differ)."""

    def __init__(self, spec, script=None, kill_at: int | None = None) -> None:
        super().__init__(spec, script)
        self.kill_at = kill_at

    def run(self, w, settings):
        if self.kill_at is not None and len(self.calls) + 1 == self.kill_at:
            self.calls.append(w.name)
            raise Killed
        m = super().run(w, settings)
        k = len(self.calls)
        samples = tuple(k * x for x in m.samples_ms)
        return Measurement(m.device, m.workload, settings, summarize(list(samples)), samples, (), (k * 0.5,),
                           "converged", {"measured_at": f"t{k}"}, energy_mj=float(k), created_at=f"t{k}")


def make(tmp_path, devices, **kw):
    store = SqliteStore(tmp_path / "r.db")
    events = []
    sched = Scheduler(store, device_factory=lambda spec: devices.pop(0), backoff_s=0.01, on_event=events.append, **kw)
    return store, sched, events


def submit(sched, ws, rounds):
    subs = [sched.submit(SPEC, w, Settings(rounds=rounds)) for w in ws]
    return {s.job.id for s in subs}


def _m(samples, outliers=(), energy=None, n_stop="converged"):
    s = list(samples)
    return Measurement("d", "w", Settings(), summarize(s, contended=list(outliers)), tuple(s), tuple(outliers), (),
                       n_stop, {"measured_at": "t"}, energy_mj=energy)


def test_one_round_keeps_the_settings_key_it_had_before_rounds():
    assert "rounds" not in Settings().to_dict()
    assert Settings(rounds=1).hash == Settings().hash
    three = Settings(rounds=3)
    assert three.hash != Settings().hash and three.to_dict()["rounds"] == 3
    assert Settings.from_dict(three.to_dict()) == three
    with pytest.raises(ValueError, match="rounds"):
        Settings(rounds=0)


def test_merge_pools_every_rounds_runs_and_keeps_their_outliers_out():
    a = _m([1.0, 1.1, 0.9, 5.0], outliers=[3], energy=2.0)
    b = _m([2.0, 2.1, 1.9, 2.0, 2.05, 1.95], energy=4.0)
    m = merge_rounds([a, b], Settings(rounds=2))
    assert m.samples_ms == a.samples_ms + b.samples_ms
    # the first round's outlier stays out; its other runs, a third faster than the second
    # round's, stay in (the machine's drift between rounds is what the pool is for)
    assert m.outliers == (3,)
    assert m.stats.n == 9 and m.stats.median_ms == pytest.approx(1.95)
    assert m.energy_mj == pytest.approx((2.0 * 3 + 4.0 * 6) / 9)  # weighted by each round's runs
    assert m.stop_reason == "2 rounds" and m.settings.rounds == 2
    assert [r["median_ms"] for r in m.provenance["rounds"]] == [a.stats.median_ms, b.stats.median_ms]
    assert merge_rounds([a, _m([1.0, 1.0, 1.0])], Settings(rounds=2)).energy_mj is None  # one round lacked it
    with pytest.raises(ValueError):
        merge_rounds([], Settings())


def test_rounds_interleave_models_and_store_one_pooled_record_each(tmp_path):
    dev = RoundDevice(SPEC)
    store, sched, events = make(tmp_path, [dev])
    ws = [workload(n, n.encode()) for n in "abc"]
    ids = submit(sched, ws, rounds=2)
    report = sched.run([SPEC], job_ids=ids, workloads={w.hash: w for w in ws})
    assert report.ok and dev.calls == ["a", "b", "c", "a", "b", "c"]
    assert [e.kind for e in events].count("round") == 3 and [e.kind for e in events].count("done") == 3
    records = store.measurements()
    assert len(records) == 3  # no record per round: the dataset holds whole measurements only
    a = next(m for m in records if m.workload == ws[0].hash)
    assert a.samples_ms == tuple(1 * x for x in (1.0, 1.1, 0.9, 1.0, 1.05, 0.95)) + \
        tuple(4 * x for x in (1.0, 1.1, 0.9, 1.0, 1.05, 0.95))  # calls 1 and 4
    assert [r["measured_at"] for r in a.provenance["rounds"]] == ["t1", "t4"]
    assert a.warmup_ms == (0.5, 2.0) and a.energy_mj == pytest.approx(2.5) and a.stop_reason == "2 rounds"
    job = store.get_job(next(iter(ids)))
    assert job.status == "done" and job.rounds_done == 2 and job.attempts == 1
    assert sqlite3.connect(tmp_path / "r.db").execute("SELECT rounds_json FROM jobs").fetchall() == [("[]",)] * 3
    again = sched.submit(SPEC, ws[0], Settings(rounds=2))
    assert again.cached is not None and again.job is None
    assert sched.submit(SPEC, ws[0], Settings()).cached is None  # a one-round measurement is another key


def test_a_killed_run_keeps_its_finished_rounds(tmp_path, monkeypatch):
    first = RoundDevice(SPEC, kill_at=5)  # a b c a, then killed while measuring b's second round
    second = RoundDevice(SPEC)
    store, sched, _ = make(tmp_path, [first, second])
    ws = [workload(n, n.encode()) for n in "abc"]
    ids = submit(sched, ws, rounds=2)
    with pytest.raises(Killed):  # the "kill" ends the worker and the run
        sched.run([SPEC], job_ids=ids, workloads={w.hash: w for w in ws})
    assert first.calls == ["a", "b", "c", "a", "b"]
    assert len(store.measurements()) == 1  # a: both rounds done
    assert [j.status for j in store.jobs()] == ["done", "running", "queued"]

    assert store.requeue_stale(stale_after_s=0) == sorted(ids)[1:2]
    again = Scheduler(store, device_factory=lambda spec: second, backoff_s=0.01)
    report = again.run([SPEC], job_ids=ids, workloads={w.hash: w for w in ws})
    assert report.ok and second.calls == ["b", "c"]  # only the rounds that were left
    b = next(m for m in store.measurements() if m.workload == ws[1].hash)
    assert len(b.samples_ms) == 12 and len(b.provenance["rounds"]) == 2


def test_a_run_killed_after_the_last_round_stores_the_record_without_measuring_again(tmp_path, monkeypatch):
    first, second = RoundDevice(SPEC), RoundDevice(SPEC)
    store, sched, _ = make(tmp_path, [first])
    w = workload("a", b"a")
    ids = submit(sched, [w], rounds=2)
    real_complete = SqliteStore.complete

    def killed(self, job, m):
        raise Killed

    monkeypatch.setattr(SqliteStore, "complete", killed)  # killed between the last round and the record
    with pytest.raises(Killed):
        sched.run([SPEC], job_ids=ids, workloads={w.hash: w})
    assert first.calls == ["a", "a"] and store.jobs()[0].rounds_done == 2 and not store.measurements()

    monkeypatch.setattr(SqliteStore, "complete", real_complete)
    assert store.requeue_stale(stale_after_s=0) == sorted(ids)
    again = Scheduler(store, device_factory=lambda spec: second, backoff_s=0.01)
    report = again.run([SPEC], job_ids=ids, workloads={w.hash: w})
    assert report.ok and second.calls == []  # both rounds were kept: nothing to measure
    (m,) = store.measurements()
    assert len(m.provenance["rounds"]) == 2 and [r["measured_at"] for r in m.provenance["rounds"]] == ["t1", "t2"]


def test_a_failed_round_retries_without_losing_the_ones_before(tmp_path):
    dev = RoundDevice(SPEC, {"a": ["ok", "timeout", "ok"]})
    store, sched, events = make(tmp_path, [dev])
    ws = [workload("a", b"a"), workload("b", b"b")]
    ids = submit(sched, ws, rounds=2)
    report = sched.run([SPEC], job_ids=ids, workloads={w.hash: w for w in ws})
    assert report.ok and dev.calls == ["a", "b", "a", "b", "a"]
    assert "retry" in [e.kind for e in events]
    a = next(m for m in store.measurements() if m.workload == ws[0].hash)
    assert [r["measured_at"] for r in a.provenance["rounds"]] == ["t1", "t5"]


def test_store_keeps_rounds_in_the_job_until_the_last(tmp_path):
    store = SqliteStore(tmp_path / "k.db")
    w = workload()
    store.put_device(SPEC)
    store.put_workload(w)
    job = store.enqueue(SPEC.name, w.hash, Settings(rounds=2))
    claimed, _ = store.claim(SPEC.name, "me")
    kept = store.add_round(claimed, _m([1.0, 2.0, 3.0]))
    assert len(kept) == 1 and kept[0].samples_ms == (1.0, 2.0, 3.0)
    back = store.get_job(job.id)
    assert back.status == "queued" and back.rounds_done == 1 and back.attempts == 0 and back.owner is None
    again = SqliteStore(tmp_path / "k.db")  # another process sees the same rounds
    claimed, _ = again.claim(SPEC.name, "me")
    kept = again.add_round(claimed, _m([4.0, 5.0, 6.0]))
    assert [k.samples_ms for k in kept] == [(1.0, 2.0, 3.0), (4.0, 5.0, 6.0)]
    assert again.get_job(job.id).status == "running"  # the caller completes it with the pooled record
    row = sqlite3.connect(tmp_path / "k.db").execute("SELECT rounds_json FROM jobs").fetchone()
    assert len(json.loads(row[0])) == 2
