"""Conformance suite for :class:`farm.store.base.Store` and the contract its docstring states.

``make_store()`` returns a fresh, empty store (each call a new one: a new file, a new
database, ``":memory:"``). Each check closes the stores it opens.

    from farm.testing.store import check_store
    check_store(lambda: MyStore(url_of_a_fresh_database()))

Owners are ``host:pid`` strings (:func:`farm.store.process_owner`); the checks use owners on
other hosts (always alive: only a heartbeat tells) and a process of this host that has exited.
"""

from __future__ import annotations

import dataclasses
import socket
import subprocess
import sys
import threading
from typing import Any, Callable

from farm.agent.measure import Policy, summarize
from farm.measurement import Measurement, Settings
from farm.registry.spec import DeviceSpec
from farm.store.base import JOB_STATES, FusionRecord, Store
from farm.testing._models import gemm_model
from farm.testing._util import expect_raises
from farm.workload import Workload, workload_from_bytes

__all__ = ["STORE_CHECKS", "check_store", "check_satisfies_the_protocol", "check_devices_are_upserted_by_name",
           "check_workloads_and_model_bytes_by_content_hash",
           "check_measurements_round_trip", "check_records_are_immutable", "check_job_lifecycle",
           "check_claim_hands_each_job_to_exactly_one_owner", "check_fail_requeues_or_gives_up",
           "check_requeue_stale_returns_jobs_of_dead_owners", "check_rounds_requeue_until_done",
           "check_rounds_end_when_the_caller_says", "check_reference_floor_is_the_lowest_recent_reading",
           "check_stable_latencies_skip_unstable_records",
           "check_fusion_rules_are_replaced_per_device", "check_lease_has_one_holder",
           "check_concurrent_writes_are_all_kept"]

MakeStore = Callable[[], Store]

SPEC = DeviceSpec(name="dev-a", url="local://cpu")
OTHER = DeviceSpec(name="dev-b", url="sim://raspi4?seed=0")
# Owners on hosts that are not this one: alive unless their heartbeat stops.
REMOTE_A, REMOTE_B = "lab-host-a.invalid:101", "lab-host-b.invalid:202"
FAST = Settings(policy=Policy(warmup=0, min_runs=3, max_runs=5))


def _workload(hidden: int = 8) -> Workload:
    data = gemm_model(hidden).SerializeToString()
    return workload_from_bytes(data, fmt="onnx", name=f"gemm{hidden}")


def _measurement(device: str, w: Workload, settings: Settings = FAST, *, median_ms: float = 2.0,
                 reference_level_us: float | None = None) -> Measurement:
    samples = [median_ms * f for f in (0.98, 1.0, 1.02, 0.99, 1.01)]
    ref = {"reference": {"level_us": reference_level_us}} if reference_level_us is not None else {}
    return Measurement(device=device, workload=w.hash, settings=settings, stats=summarize(samples),
                       samples_ms=tuple(samples), outliers=(), warmup_ms=(median_ms * 1.5,), stop_reason="max_runs",
                       provenance={"simulated": False, "device": device, "runtime": settings.runtime} | ref,
                       energy_mj=0.25, created_at="2026-01-01T00:00:00Z")


def _dead_owner() -> str:
    """``host:pid`` of a process of this host that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return f"{socket.gethostname()}:{proc.pid}"


def _setter(obj: Any, name: str) -> Callable[[], None]:
    return lambda: setattr(obj, name, None)


def _seeded(make_store: MakeStore) -> tuple[Store, Workload]:
    store = make_store()
    store.put_device(SPEC)
    store.put_device(OTHER)
    w = _workload()
    store.put_workload(w)
    return store, w


def check_satisfies_the_protocol(make_store: MakeStore) -> None:
    store = make_store()
    try:
        assert isinstance(store, Store), f"{type(store).__name__} does not satisfy the Store protocol"
        assert isinstance(store.path, str) and store.path, f"store.path is {store.path!r}"
        assert store.device_names() == [] and store.jobs() == [] and store.measurements() == [], \
            "a fresh store is not empty"
    finally:
        store.close()


def check_devices_are_upserted_by_name(make_store: MakeStore) -> None:
    store = make_store()
    try:
        store.put_device(OTHER)
        store.put_device(SPEC)
        store.put_device(SPEC.model_copy(update={"url": "local://cpu?moved=1"}))  # same name, new entry
        assert store.device_names() == ["dev-a", "dev-b"], f"device_names() is {store.device_names()}"
    finally:
        store.close()


def check_workloads_and_model_bytes_by_content_hash(make_store: MakeStore) -> None:
    store = make_store()
    try:
        w = _workload(8)
        assert store.get_workload(w.hash) is None and store.model_bytes(w.hash) is None, "unknown hash is not None"
        store.put_workload(w)
        store.put_workload(w)  # idempotent
        rec = store.get_workload(w.hash)
        assert rec is not None, "put_workload then get_workload gave None"
        got = (rec.hash, rec.format, rec.name, rec.size_bytes, rec.macs, rec.params)
        want = (w.hash, w.format, w.name, len(w.data), w.graph.macs, w.graph.params)
        assert got == want, f"workload record {got} != {want}"
        assert rec.graph.to_dict() == w.graph.to_dict(), "the stored graph differs from the workload's"
        assert store.model_bytes(w.hash) == w.data, "model_bytes() are not the workload's bytes"
        other = _workload(16)
        store.put_workload(other)
        assert store.model_bytes(other.hash) == other.data and store.model_bytes(w.hash) == w.data, \
            "two workloads' bytes are mixed up"
    finally:
        store.close()


def check_measurements_round_trip(make_store: MakeStore) -> None:
    store, w = _seeded(make_store)
    try:
        m = _measurement("dev-a", w)
        first = store.add_measurement(m)
        assert first.id is not None, "add_measurement() returned a record without id"
        assert dataclasses.replace(first, id=None) == m, "the stored measurement differs from the one added"
        assert store.get_measurement(first.id) == first, "get_measurement(id) differs from add_measurement()'s"
        newer = store.add_measurement(_measurement("dev-a", w, median_ms=3.0))
        assert newer.id is not None and newer.id != first.id, "two measurements got one id"
        found = store.find_measurement("dev-a", w.hash, FAST.hash)
        assert found == newer, "find_measurement() does not return the newest for its key"
        assert store.find_measurement("dev-b", w.hash, FAST.hash) is None, "find_measurement() on another device"
        store.add_measurement(_measurement("dev-b", w))
        assert [x.id for x in store.measurements(device="dev-a")] == [first.id, newer.id], \
            "measurements(device=) is not that device's records in order"
        assert len(store.measurements()) == 3 and len(store.measurements(workload=w.hash)) == 3
        rows = store.dataset_rows(device="dev-a")
        assert [r["median_ms"] for r in rows] == [first.stats.median_ms, newer.stats.median_ms], \
            "dataset_rows(device=) does not hold one row per measurement"
        assert all(r["device"] == "dev-a" and r["workload"] == w.hash for r in rows)
    finally:
        store.close()


def check_records_are_immutable(make_store: MakeStore) -> None:
    store, w = _seeded(make_store)
    try:
        job = store.enqueue("dev-a", w.hash, FAST)
        claimed, _ = store.claim("dev-a", REMOTE_A)
        assert claimed is not None
        stored = store.add_measurement(_measurement("dev-a", w))
        rec = store.get_workload(w.hash)
        store.put_fusion_rules("dev-a", [FusionRecord("dev-a", "conv+relu", ("Conv", "Relu"), True, {"r": 0.9}, "")])
        records: list[Any] = [job, claimed, stored, rec, store.fusion_rules("dev-a")[0]]
        for r in records:
            field = dataclasses.fields(r)[0].name
            expect_raises(dataclasses.FrozenInstanceError, _setter(r, field),
                          f"setting {type(r).__name__}.{field}")
        stored.provenance["simulated"] = "changed by the caller"
        assert stored.id is not None
        assert store.get_measurement(stored.id).provenance["simulated"] is False, \
            "a returned measurement's provenance aliases the store's"
        store.fail(claimed, "boom", retry_in_s=None)
        assert claimed.status == "running" and job.status == "queued", "changing the store changed a returned Job"
    finally:
        store.close()


def check_job_lifecycle(make_store: MakeStore) -> None:
    """queued → running (claim) → done (complete), the measurement stored with the job."""
    store, w = _seeded(make_store)
    try:
        job = store.enqueue("dev-a", w.hash, FAST, max_attempts=4)
        assert (job.status, job.attempts, job.max_attempts, job.owner) == ("queued", 0, 4, None), f"enqueued {job}"
        assert store.enqueue("dev-a", w.hash, FAST).id == job.id, "enqueue of an open job's key made a second job"
        assert store.claim("dev-b", REMOTE_A) == (None, None), "claim on a device with no queued job"
        claimed, wait = store.claim("dev-a", REMOTE_A)
        assert claimed is not None and wait is None, f"claim gave {claimed}, {wait}"
        assert (claimed.id, claimed.status, claimed.owner, claimed.attempts) == (job.id, "running", REMOTE_A, 1), \
            f"claimed {claimed}"
        assert store.claim("dev-a", REMOTE_B) == (None, None), "a running job was claimed again"
        store.heartbeat([claimed.id], REMOTE_A)
        m = store.complete(claimed, _measurement("dev-a", w))
        done = store.get_job(job.id)
        assert done.status == "done" and done.measurement_id == m.id, f"completed job is {done}"
        assert m.id is not None and store.get_measurement(m.id).workload == w.hash
        assert [j.id for j in store.jobs(status="done")] == [job.id] and store.jobs(status="queued") == []
        assert [j.id for j in store.jobs(device="dev-a")] == [job.id] and store.jobs(device="dev-b") == []
        assert all(j.status in JOB_STATES for j in store.jobs())
        again = store.enqueue("dev-a", w.hash, FAST)
        assert again.id != job.id and again.status == "queued", "a finished job's key cannot be queued again"
    finally:
        store.close()


def check_claim_hands_each_job_to_exactly_one_owner(make_store: MakeStore) -> None:
    store, w = _seeded(make_store)
    try:
        ids = {store.enqueue("dev-a", w.hash, Settings(threads=t, policy=FAST.policy)).id for t in range(1, 13)}
        claims: dict[str, list[int]] = {}
        wrong: list[str] = []
        start = threading.Barrier(4)

        def worker(owner: str) -> None:
            start.wait()
            got = claims.setdefault(owner, [])
            while True:
                job, _ = store.claim("dev-a", owner)
                if job is None:
                    return
                if job.owner != owner:
                    wrong.append(f"{owner} claimed job {job.id} owned by {job.owner}")
                got.append(job.id)

        threads = [threading.Thread(target=worker, args=(f"lab-host-{i}.invalid:{i}",)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not wrong, wrong[0]
        every = [jid for got in claims.values() for jid in got]
        assert sorted(every) == sorted(ids), f"claimed {sorted(every)}, queued {sorted(ids)}"
        only = store.claim("dev-a", REMOTE_A, ids={min(ids)})
        assert only == (None, None), "claim(ids=) handed out a job that is already running"
    finally:
        store.close()


def check_fail_requeues_or_gives_up(make_store: MakeStore) -> None:
    store, w = _seeded(make_store)
    try:
        job = store.enqueue("dev-a", w.hash, FAST, max_attempts=3)
        first, _ = store.claim("dev-a", REMOTE_A)
        assert first is not None
        retried = store.fail(first, "device hiccup", retry_in_s=0)
        assert (retried.status, retried.error, retried.owner) == ("queued", "device hiccup", None), f"{retried}"
        second, _ = store.claim("dev-a", REMOTE_A)
        assert second is not None and second.attempts == 2, f"second claim {second}"
        later = store.fail(second, "again", retry_in_s=3600)
        assert later.status == "queued"
        none, wait = store.claim("dev-a", REMOTE_A)
        assert none is None and wait is not None and 0 < wait <= 3600, \
            f"a job backed off for an hour: claim gave {none}, wait {wait}"
        assert store.claim("dev-a", REMOTE_A, ids={job.id + 1000}) == (None, None), "claim(ids=) ignored ids"
        store2, w2 = _seeded(make_store)
        try:
            j = store2.enqueue("dev-a", w2.hash, FAST, max_attempts=1)
            c, _ = store2.claim("dev-a", REMOTE_A)
            assert c is not None
            gone = store2.fail(c, "model rejected", retry_in_s=None)
            assert (gone.id, gone.status, gone.error) == (j.id, "failed", "model rejected"), f"{gone}"
            assert store2.claim("dev-a", REMOTE_A) == (None, None), "a failed job was claimed"
        finally:
            store2.close()
    finally:
        store.close()


def check_requeue_stale_returns_jobs_of_dead_owners(make_store: MakeStore) -> None:
    store, w = _seeded(make_store)
    try:
        dead = store.enqueue("dev-a", w.hash, FAST)
        live = store.enqueue("dev-b", w.hash, FAST)
        a, _ = store.claim("dev-a", _dead_owner())
        b, _ = store.claim("dev-b", REMOTE_B)
        assert a is not None and b is not None
        store.heartbeat([b.id], REMOTE_B)
        assert store.requeue_stale(stale_after_s=300) == [dead.id], "requeue_stale() missed a dead owner's job"
        back = store.get_job(dead.id)
        assert (back.status, back.owner, back.attempts) == ("queued", None, 0), \
            f"a requeued job is {back} (its attempt must not count)"
        assert store.get_job(live.id).status == "running", "a live owner's job was requeued"
        again, _ = store.claim("dev-a", REMOTE_A)
        assert again is not None and again.id == dead.id
    finally:
        store.close()


def check_rounds_requeue_until_done(make_store: MakeStore) -> None:
    store, w = _seeded(make_store)
    try:
        settings = Settings(policy=FAST.policy, rounds=2)
        job = store.enqueue("dev-a", w.hash, settings)
        first, _ = store.claim("dev-a", REMOTE_A)
        assert first is not None
        kept = store.add_round(first, _measurement("dev-a", w, settings, median_ms=2.0))
        assert len(kept) == 1 and kept[0].stats.median_ms == 2.0, f"rounds kept after one: {kept}"
        queued = store.get_job(job.id)
        assert (queued.status, queued.rounds_done, queued.attempts) == ("queued", 1, 0), f"after round 1: {queued}"
        second, _ = store.claim("dev-a", REMOTE_A)
        assert second is not None and second.id == job.id
        kept = store.add_round(second, _measurement("dev-a", w, settings, median_ms=3.0))
        assert [r.stats.median_ms for r in kept] == [2.0, 3.0], f"rounds kept after two: {kept}"
        assert store.get_job(job.id).status == "running", "the last round must leave the job to complete()"
        assert [r.stats.median_ms for r in store.rounds(second)] == [2.0, 3.0]
        store.complete(second, _measurement("dev-a", w, settings, median_ms=2.5))
        assert store.get_job(job.id).status == "done"
    finally:
        store.close()


def check_rounds_end_when_the_caller_says(make_store: MakeStore) -> None:
    """``add_round(last=...)`` overrides ``settings.rounds`` (an estimator that adds rounds
    until it is satisfied); ``retry_in_s`` holds the next round back."""
    store, w = _seeded(make_store)
    try:
        settings = Settings(policy=FAST.policy, rounds=1, max_rounds=4, estimator="quiet")
        job = store.enqueue("dev-a", w.hash, settings)
        first, _ = store.claim("dev-a", REMOTE_A)
        assert first is not None
        store.add_round(first, _measurement("dev-a", w, settings), last=False, retry_in_s=30.0)
        held = store.get_job(job.id)
        assert (held.status, held.rounds_done) == ("queued", 1), f"a round that was not the last: {held}"
        claimed, wait_s = store.claim("dev-a", REMOTE_A)
        assert claimed is None and wait_s is not None and wait_s > 1.0, \
            f"retry_in_s=30 must hold the next round back (claimed {claimed}, wait {wait_s})"
        other = store.enqueue("dev-a", w.hash, Settings(policy=FAST.policy, rounds=3))
        second, _ = store.claim("dev-a", REMOTE_A)
        assert second is not None and second.id == other.id
        store.add_round(second, _measurement("dev-a", w, second.settings), last=True)
        assert store.get_job(other.id).status == "running", "last=True ends the rounds even with rounds=3"
    finally:
        store.close()


def check_reference_floor_is_the_lowest_recent_reading(make_store: MakeStore) -> None:
    store, w = _seeded(make_store)
    try:
        assert store.reference_floor("dev-a") is None, "no record has a reading yet"
        store.add_measurement(_measurement("dev-a", w))  # no reading: ignored
        for us in (21.0, 19.5, 24.0):
            store.add_measurement(_measurement("dev-a", w, reference_level_us=us))
        store.add_measurement(_measurement("dev-b", w, reference_level_us=5.0))  # another device's
        assert store.reference_floor("dev-a") == 19.5, store.reference_floor("dev-a")
        for us in (22.0, 23.0, 20.0, 25.0, 9.0):  # one lucky reading among eight: not the floor
            store.add_measurement(_measurement("dev-a", w, reference_level_us=us))
        assert store.reference_floor("dev-a") == 20.0, f"the lower quartile of 8, got {store.reference_floor('dev-a')}"
        assert store.reference_floor("dev-a", recent=1) == 9.0, "only the most recent records count"
    finally:
        store.close()


def check_stable_latencies_skip_unstable_records(make_store: MakeStore) -> None:
    store, w = _seeded(make_store)
    try:
        key = ("dev-a", w.hash, FAST.hash)
        assert store.stable_latencies(*key) == []
        for ms, unstable in ((2.0, False), (3.0, True), (2.2, False)):
            m = _measurement("dev-a", w, median_ms=ms)
            store.add_measurement(dataclasses.replace(m, provenance=m.provenance | {"unstable": unstable}))
        store.add_measurement(_measurement("dev-a", w, Settings(threads=2), median_ms=9.0))  # another key
        got = store.stable_latencies(*key)
        assert got == [2.2, 2.0], f"newest first, unstable left out: {got}"
        assert len(store.stable_latencies(*key, recent=1)) == 1
    finally:
        store.close()


def check_fusion_rules_are_replaced_per_device(make_store: MakeStore) -> None:
    store = make_store()
    try:
        store.put_device(SPEC)
        store.put_device(OTHER)
        r1 = FusionRecord("dev-a", "conv+relu", ("Conv", "Relu"), True, {"ratio": 0.95}, "2026-01-01T00:00:00Z")
        r2 = FusionRecord("dev-a", "matmul+add", ("MatMul", "Add"), False, {"ratio": 1.4}, "2026-01-01T00:00:00Z")
        assert store.fusion_rules("dev-a") == [], "fusion rules of a device never detected"
        store.put_fusion_rules("dev-a", [r1, r2])
        store.put_fusion_rules("dev-a", [r1, r2])  # idempotent
        assert store.fusion_rules("dev-a") == [r1, r2], f"fusion_rules() is {store.fusion_rules('dev-a')}"
        store.put_fusion_rules("dev-a", [r2])
        assert store.fusion_rules("dev-a") == [r2], "put_fusion_rules() did not replace the device's rules"
        assert store.fusion_rules("dev-b") == [], "another device's rules leaked"
    finally:
        store.close()


def check_lease_has_one_holder(make_store: MakeStore) -> None:
    store = make_store()
    try:
        store.put_device(SPEC)
        assert store.device_holder("dev-a") is None
        assert store.acquire_device("dev-a", REMOTE_A) is None, "the free device was not leased"
        assert store.acquire_device("dev-a", REMOTE_A) is None, "the holder could not take its own lease again"
        assert store.acquire_device("dev-a", REMOTE_B) == REMOTE_A, "a second owner took a held device"
        assert store.device_holder("dev-a") == REMOTE_A
        store.renew_device("dev-a", REMOTE_B)
        store.release_device("dev-a", REMOTE_B)  # not the holder: no effect
        assert store.device_holder("dev-a") == REMOTE_A, "a non-holder's renew/release changed the lease"
        store.renew_device("dev-a", REMOTE_A, ttl_s=60)
        store.release_device("dev-a", REMOTE_A)
        assert store.device_holder("dev-a") is None, "release_device() by the holder left it held"
        assert store.acquire_device("dev-a", REMOTE_B, ttl_s=0) is None
        assert store.device_holder("dev-a") is None, "a lease with ttl_s=0 has not expired"
        assert store.acquire_device("dev-a", REMOTE_A) is None, "an expired lease blocked another owner"
        store.release_device("dev-a", REMOTE_A)
        # owners racing for the free device: exactly one wins
        results: dict[str, str | None] = {}
        start = threading.Barrier(6)

        def race(owner: str) -> None:
            start.wait()
            results[owner] = store.acquire_device("dev-a", owner, ttl_s=60)

        owners = [f"lab-host-{i}.invalid:{i}" for i in range(6)]
        threads = [threading.Thread(target=race, args=(o,)) for o in owners]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [o for o, holder in results.items() if holder is None]
        assert len(winners) == 1, f"{len(winners)} owners hold the device at once: {winners}"
        assert all(holder == winners[0] for o, holder in results.items() if o != winners[0])
    finally:
        store.close()


def check_concurrent_writes_are_all_kept(make_store: MakeStore) -> None:
    store, w = _seeded(make_store)
    try:
        start = threading.Barrier(4)
        errors: list[BaseException] = []

        def writer(i: int) -> None:
            try:
                start.wait()
                for k in range(5):
                    store.put_workload(w)
                    store.add_measurement(_measurement("dev-a" if i % 2 else "dev-b", w, median_ms=1.0 + i + k / 10))
            except BaseException as err:
                errors.append(err)

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, f"concurrent writes raised {errors[0]!r}"
        got = store.measurements()
        assert len(got) == 20 and len({m.id for m in got}) == 20, f"{len(got)} of 20 concurrent measurements kept"
    finally:
        store.close()


STORE_CHECKS: tuple[Callable[[MakeStore], None], ...] = (
    check_satisfies_the_protocol,
    check_devices_are_upserted_by_name,
    check_workloads_and_model_bytes_by_content_hash,
    check_measurements_round_trip,
    check_records_are_immutable,
    check_job_lifecycle,
    check_claim_hands_each_job_to_exactly_one_owner,
    check_fail_requeues_or_gives_up,
    check_requeue_stale_returns_jobs_of_dead_owners,
    check_rounds_requeue_until_done,
    check_rounds_end_when_the_caller_says,
    check_reference_floor_is_the_lowest_recent_reading,
    check_stable_latencies_skip_unstable_records,
    check_fusion_rules_are_replaced_per_device,
    check_lease_has_one_holder,
    check_concurrent_writes_are_all_kept,
)


def check_store(make_store: MakeStore) -> None:
    """Run every check of :data:`STORE_CHECKS`; the first failure raises AssertionError."""
    for check in STORE_CHECKS:
        check(make_store)
