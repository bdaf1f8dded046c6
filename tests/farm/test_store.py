"""SqliteStore: schema and migrations, atomic job transitions, idempotent keys, leases."""

from __future__ import annotations

import sqlite3
from dataclasses import replace

import pytest

from farm.errors import StoreError
from farm.measurement import Settings
from farm.registry.spec import DeviceSpec
from farm.store.sqlite import SCHEMA_VERSION, SqliteStore

from .fakes import ScriptedDevice, workload

SPEC = DeviceSpec(name="dev", url="local://cpu")


@pytest.fixture
def store(tmp_path):
    s = SqliteStore(tmp_path / "t.db")
    s.put_device(SPEC)
    yield s
    s.close()


def _measure(store, w, settings=Settings()):
    store.put_workload(w)
    return ScriptedDevice(SPEC).run(w, settings)


def test_new_file_is_wal_and_current_schema(tmp_path):
    s = SqliteStore(tmp_path / "a.db")
    assert s.schema_version == SCHEMA_VERSION
    mode = sqlite3.connect(tmp_path / "a.db").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_newer_schema_is_refused_not_damaged(tmp_path):
    path = tmp_path / "future.db"
    SqliteStore(path).close()
    con = sqlite3.connect(path)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.commit()
    con.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="newer hwfarm"):
        SqliteStore(path)
    assert path.read_bytes() == before


def test_garbage_file_is_a_clear_error(tmp_path):
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StoreError, match="not a usable hwfarm dataset"):
        SqliteStore(path)


def test_migration_from_empty_file_applies_all_steps(tmp_path, monkeypatch):
    import farm.store.sqlite as st

    path = tmp_path / "m.db"
    SqliteStore(path).close()
    monkeypatch.setattr(st, "MIGRATIONS", st.MIGRATIONS + ["ALTER TABLE workloads ADD COLUMN label TEXT"])
    monkeypatch.setattr(st, "SCHEMA_VERSION", len(st.MIGRATIONS))
    s = st.SqliteStore(path)
    assert s.schema_version == SCHEMA_VERSION + 1
    cols = [r[1] for r in sqlite3.connect(path).execute("PRAGMA table_info(workloads)")]
    assert "label" in cols


def test_measurement_round_trip_keeps_raw_samples(store):
    w = workload()
    m = store.add_measurement(_measure(store, w))
    back = store.find_measurement("dev", w.hash, Settings().hash)
    assert back == m
    assert back.samples_ms == (1.0, 1.1, 0.9, 1.0, 1.05, 0.95)
    assert store.find_measurement("dev", w.hash, Settings(threads=2).hash) is None


def test_settings_hash_changes_with_anything_that_matters():
    base = Settings()
    assert base.hash == Settings().hash
    assert len({base.hash, Settings(threads=2).hash, Settings(affinity=(0,)).hash,
                Settings(runtime="litert").hash}) == 4


def test_enqueue_is_idempotent_for_open_jobs(store):
    w = workload()
    store.put_workload(w)
    a = store.enqueue("dev", w.hash, Settings())
    b = store.enqueue("dev", w.hash, Settings())
    assert a.id == b.id
    job, _ = store.claim("dev", "me:1")
    store.complete(job, _measure(store, w))
    c = store.enqueue("dev", w.hash, Settings())  # done → a new job may be queued (forced re-measure)
    assert c.id != a.id


def test_claim_complete_is_atomic(store):
    w = workload()
    store.put_workload(w)
    store.enqueue("dev", w.hash, Settings())
    job, _ = store.claim("dev", "me:1")
    assert job.status == "running" and job.attempts == 1
    assert store.claim("dev", "me:1") == (None, None)
    m = store.complete(job, _measure(store, w))
    j = store.get_job(job.id)
    assert j.status == "done" and j.measurement_id == m.id


def test_backoff_delays_the_retry(store):
    w = workload()
    store.put_workload(w)
    store.enqueue("dev", w.hash, Settings())
    job, _ = store.claim("dev", "me:1")
    store.fail(job, "flaky", retry_in_s=30)
    job2, wait = store.claim("dev", "me:1")
    assert job2 is None and 25 < wait <= 30


def test_requeue_stale_only_touches_dead_owners(store):
    w1, w2 = workload("a", b"a"), workload("b", b"b")
    for w in (w1, w2):
        store.put_workload(w)
        store.enqueue("dev", w.hash, Settings())
    import os
    import socket

    dead, _ = store.claim("dev", f"{socket.gethostname()}:999999999")
    alive, _ = store.claim("dev", f"{socket.gethostname()}:{os.getpid()}")
    assert store.requeue_stale() == [dead.id]
    back = store.get_job(dead.id)
    assert back.status == "queued" and back.attempts == 0
    assert store.get_job(alive.id).status == "running"


def test_device_lease_is_exclusive_but_not_held_by_the_dead(store):
    import os
    import socket

    me = f"{socket.gethostname()}:{os.getpid()}"
    assert store.acquire_device("dev", me) is None
    other_live = f"{socket.gethostname()}:{os.getppid()}"
    assert store.acquire_device("dev", other_live) == me
    store.release_device("dev", me)
    assert store.acquire_device("dev", other_live) is None
    dead = f"{socket.gethostname()}:999999999"
    store.release_device("dev", other_live)
    assert store.acquire_device("dev", dead) is None
    assert store.acquire_device("dev", me) is None  # the dead holder does not block


def test_dataset_rows_are_flat(store):
    w = workload()
    store.add_measurement(_measure(store, w))
    (row,) = store.dataset_rows()
    assert row["device"] == "dev" and row["model"] == "w" and row["macs"] == 32
    assert row["median_ms"] == pytest.approx(1.0, abs=0.05) and row["simulated"] is False


def test_in_memory_store_works():
    s = SqliteStore(":memory:")
    s.put_device(SPEC)
    w = workload()
    assert s.add_measurement(_measure(s, w)).id == 1


def test_v1_file_upgrades_in_place_keeping_its_rows(tmp_path, monkeypatch):
    import farm.store.sqlite as st

    path = tmp_path / "old.db"
    monkeypatch.setattr(st, "MIGRATIONS", st.MIGRATIONS[:1])
    monkeypatch.setattr(st, "SCHEMA_VERSION", 1)
    old = st.SqliteStore(path)
    old.put_device(SPEC)
    con = old._db
    w = workload()
    old.put_workload(replace(w, data=b""))  # a v1 file keeps no model bytes
    con.execute("INSERT INTO measurements(device, workload, settings_hash, settings_json, median_ms, mean_ms, p10_ms, "
                "p90_ms, std_ms, cv, n, n_outliers, ci_low_ms, ci_high_ms, stop_reason, samples_json, outliers_json, "
                "warmup_json, provenance_json, created_at) VALUES ('dev', ?, ?, ?, 1, 1, 1, 1, 0, 0, 3, 0, 1, 1, "
                "'converged', '[1,1,1]', '[]', '[]', '{}', 'then')", (w.hash, Settings().hash,
                                                                     __import__("json").dumps(Settings().to_dict())))
    old.close()
    monkeypatch.undo()
    new = SqliteStore(path)
    assert new.schema_version == SCHEMA_VERSION == 5
    assert new.model_bytes(w.hash) is None  # stored before v5: the file's path only
    (m,) = new.measurements()
    assert m.breakdown == () and m.samples_ms == (1, 1, 1) and m.created_at == "then"
