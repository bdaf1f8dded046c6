"""The dataset: one SQLite file (WAL mode) holding devices, workloads, measurements and jobs.

Contract:
- Thread-safe: one connection guarded by a lock; several processes may share the file
  (WAL + busy timeout); multi-statement changes run in ``BEGIN IMMEDIATE`` transactions, so
  a crash leaves either all of a change or none of it.
- Returned records are frozen dataclasses; nothing handed out aliases internal state.
- ``PRAGMA user_version`` is the schema version; :data:`MIGRATIONS` upgrades older files in
  place, and a file written by a newer hwfarm is refused rather than damaged.
- ``":memory:"`` gives a private in-memory store (tests).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from farm.agent.measure import LatencyStats
from farm.errors import StoreError
from farm.estimate import low_level
from farm.ir.graph import Graph
from farm.measurement import Measurement, Settings
from farm.registry.spec import DeviceSpec
from farm.store.base import FusionRecord, Job, WorkloadRecord
from farm.workload import Workload

__all__ = ["SqliteStore", "Job", "WorkloadRecord", "FusionRecord", "SCHEMA_VERSION", "MIGRATIONS", "open_store", "process_owner"]

_V1 = """
CREATE TABLE devices (
    name TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    kind TEXT NOT NULL,
    spec_json TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    lease_owner TEXT,
    lease_until REAL
);
CREATE TABLE workloads (
    hash TEXT PRIMARY KEY,
    format TEXT NOT NULL,
    name TEXT NOT NULL,
    source_path TEXT,
    size_bytes INTEGER NOT NULL,
    macs INTEGER NOT NULL,
    params INTEGER NOT NULL,
    graph_json TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE measurements (
    id INTEGER PRIMARY KEY,
    device TEXT NOT NULL REFERENCES devices(name),
    workload TEXT NOT NULL REFERENCES workloads(hash),
    settings_hash TEXT NOT NULL,
    settings_json TEXT NOT NULL,
    median_ms REAL NOT NULL,
    mean_ms REAL NOT NULL,
    p10_ms REAL NOT NULL,
    p90_ms REAL NOT NULL,
    std_ms REAL NOT NULL,
    cv REAL NOT NULL,
    n INTEGER NOT NULL,
    n_outliers INTEGER NOT NULL,
    ci_low_ms REAL NOT NULL,
    ci_high_ms REAL NOT NULL,
    energy_mj REAL,
    peak_memory_kb REAL,
    stop_reason TEXT NOT NULL,
    samples_json TEXT NOT NULL,
    outliers_json TEXT NOT NULL,
    warmup_json TEXT NOT NULL,
    provenance_json TEXT NOT NULL,
    simulated INTEGER NOT NULL DEFAULT 0,
    job_id INTEGER,
    created_at TEXT NOT NULL
);
CREATE INDEX measurements_key ON measurements(device, workload, settings_hash);
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY,
    device TEXT NOT NULL,
    workload TEXT NOT NULL REFERENCES workloads(hash),
    settings_hash TEXT NOT NULL,
    settings_json TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    not_before REAL NOT NULL DEFAULT 0,
    owner TEXT,
    heartbeat_at REAL,
    error TEXT,
    measurement_id INTEGER REFERENCES measurements(id),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE UNIQUE INDEX jobs_open ON jobs(device, workload, settings_hash) WHERE status IN ('queued', 'running');
CREATE INDEX jobs_status ON jobs(device, status);
"""

# v2: per-kernel breakdown (simulators and profilers that report one).
_V2 = "ALTER TABLE measurements ADD COLUMN breakdown_json TEXT NOT NULL DEFAULT '[]'"

# v3: fusion rules detected on a device by the farm (predictors.fusion), one row per candidate.
_V3 = """
CREATE TABLE fusion_rules (
    device TEXT NOT NULL REFERENCES devices(name),
    candidate TEXT NOT NULL,
    ops_json TEXT NOT NULL,
    fused INTEGER NOT NULL,
    evidence_json TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (device, candidate)
)
"""

# v4: a job measured in rounds keeps the rounds it has finished (JSON, one object each) until
# its last one; the queue serves the jobs with the fewest rounds done first.
_V4 = """
ALTER TABLE jobs ADD COLUMN rounds_done INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN rounds_json TEXT NOT NULL DEFAULT '[]'
"""

# v5: model bytes by content hash, so that a job can run on a host without the coordinator's disk.
_V5 = "CREATE TABLE models (hash TEXT PRIMARY KEY, data BLOB NOT NULL)"

# MIGRATIONS[i] upgrades a file from user_version i to i + 1.
MIGRATIONS: list[str] = [_V1, _V2, _V3, _V4, _V5]
SCHEMA_VERSION = len(MIGRATIONS)


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def process_owner() -> str:
    """``host:pid`` — who holds a job or a device lease."""
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_alive(owner: str | None) -> bool:
    """False only when we can tell: the owner ran on this host and its pid is gone."""
    if not owner:
        return False
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SqliteStore:
    """The :class:`~farm.store.base.Store` on one SQLite file (or ``":memory:"``)."""

    def __init__(self, path: str | os.PathLike[str] = ":memory:") -> None:
        self.path = str(path)
        self._lock = threading.RLock()
        if self.path != ":memory:":
            parent = Path(self.path).parent
            if not parent.is_dir():
                raise StoreError(f"{self.path}: directory {parent} does not exist")
        try:
            self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA busy_timeout = 30000")
            if self.path != ":memory:":
                self._wal()
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except sqlite3.DatabaseError as err:
            raise StoreError(f"{self.path}: not a usable hwfarm dataset: {err}") from None

    # ------------------------------------------------------------------ plumbing

    def _wal(self) -> None:
        """WAL mode. Switching needs the database to itself, and SQLite answers "database is
        locked" at once (no busy handler) while another process is creating or migrating the
        same new file: wait for it, up to the busy timeout. An existing WAL file is left as is."""
        import time

        deadline = time.monotonic() + 30.0
        while True:
            try:
                if str(self._db.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                    self._db.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _migrate(self) -> None:
        with self._lock:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(f"{self.path}: written by a newer hwfarm (schema {version}, "
                                 f"this one reads up to {SCHEMA_VERSION}); upgrade hwfarm")
            for v in range(version, SCHEMA_VERSION):
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    # Re-check under the write lock: another process may have migrated meanwhile.
                    if self._db.execute("PRAGMA user_version").fetchone()[0] != v:
                        self._db.execute("COMMIT")
                        continue
                    for stmt in MIGRATIONS[v].split(";"):
                        if stmt.strip():
                            self._db.execute(stmt)
                    self._db.execute(f"PRAGMA user_version = {v + 1}")
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise

    @property
    def schema_version(self) -> int:
        with self._lock:
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------ devices, workloads

    def put_device(self, spec: DeviceSpec) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO devices(name, url, kind, spec_json, updated_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET url=excluded.url, kind=excluded.kind, "
                "spec_json=excluded.spec_json, updated_at=excluded.updated_at",
                (spec.name, spec.url, spec.kind, json.dumps(spec.public_dict()), _now_iso()),
            )

    def put_workload(self, w: Workload) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO workloads(hash, format, name, source_path, size_bytes, macs, params, graph_json, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(hash) DO UPDATE SET source_path=excluded.source_path",
                (w.hash, w.format, w.name, w.path, len(w.data), w.graph.macs, w.graph.params,
                 json.dumps(w.graph.to_dict()), _now_iso()),
            )
            if w.data:
                db.execute("INSERT OR IGNORE INTO models(hash, data) VALUES (?, ?)", (w.hash, w.data))

    def model_bytes(self, hash_: str) -> bytes | None:
        """The model file's bytes of a workload (None for workloads stored before v5, which
        kept only the file's path)."""
        rows = self._query("SELECT data FROM models WHERE hash = ?", (hash_,))
        return bytes(rows[0]["data"]) if rows else None

    def get_workload(self, hash_: str) -> WorkloadRecord | None:
        rows = self._query("SELECT * FROM workloads WHERE hash = ?", (hash_,))
        if not rows:
            return None
        r = rows[0]
        return WorkloadRecord(r["hash"], r["format"], r["name"], r["source_path"], r["size_bytes"],
                              r["macs"], r["params"], Graph.from_dict(json.loads(r["graph_json"])))

    def device_names(self) -> list[str]:
        return [r["name"] for r in self._query("SELECT name FROM devices ORDER BY name")]

    # ------------------------------------------------------------------ measurements

    def _insert_measurement(self, db: sqlite3.Connection, m: Measurement, job_id: int | None) -> int:
        s = m.stats
        cur = db.execute(
            "INSERT INTO measurements(device, workload, settings_hash, settings_json, median_ms, mean_ms, p10_ms, "
            "p90_ms, std_ms, cv, n, n_outliers, ci_low_ms, ci_high_ms, energy_mj, peak_memory_kb, stop_reason, "
            "samples_json, outliers_json, warmup_json, provenance_json, simulated, job_id, created_at, breakdown_json) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (m.device, m.workload, m.settings.hash, json.dumps(m.settings.to_dict()), s.median_ms, s.mean_ms,
             s.p10_ms, s.p90_ms, s.std_ms, s.cv, s.n, s.n_outliers, s.ci_low_ms, s.ci_high_ms, m.energy_mj,
             m.peak_memory_kb, m.stop_reason, json.dumps(list(m.samples_ms)), json.dumps(list(m.outliers)),
             json.dumps(list(m.warmup_ms)), json.dumps(m.provenance), int(bool(m.provenance.get("simulated"))),
             job_id, m.created_at or _now_iso(), json.dumps(list(m.breakdown))),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def add_measurement(self, m: Measurement) -> Measurement:
        with self._tx() as db:
            mid = self._insert_measurement(db, m, None)
        return self.get_measurement(mid)

    @staticmethod
    def _measurement(r: sqlite3.Row) -> Measurement:
        return Measurement(
            device=r["device"], workload=r["workload"], settings=Settings.from_dict(json.loads(r["settings_json"])),
            stats=LatencyStats(r["median_ms"], r["mean_ms"], r["p10_ms"], r["p90_ms"], r["std_ms"], r["cv"],
                               r["n"], r["n_outliers"], r["ci_low_ms"], r["ci_high_ms"]),
            samples_ms=tuple(json.loads(r["samples_json"])), outliers=tuple(json.loads(r["outliers_json"])),
            warmup_ms=tuple(json.loads(r["warmup_json"])), stop_reason=r["stop_reason"],
            provenance=json.loads(r["provenance_json"]), energy_mj=r["energy_mj"],
            peak_memory_kb=r["peak_memory_kb"], breakdown=tuple(json.loads(r["breakdown_json"])),
            created_at=r["created_at"], id=r["id"],
        )

    def get_measurement(self, mid: int) -> Measurement:
        rows = self._query("SELECT * FROM measurements WHERE id = ?", (mid,))
        if not rows:
            raise KeyError(mid)
        return self._measurement(rows[0])

    def find_measurement(self, device: str, workload: str, settings_hash: str) -> Measurement | None:
        """The newest measurement for the key, or None."""
        rows = self._query("SELECT * FROM measurements WHERE device = ? AND workload = ? AND settings_hash = ? "
                           "ORDER BY id DESC LIMIT 1", (device, workload, settings_hash))
        return self._measurement(rows[0]) if rows else None

    def measurements(self, *, device: str | None = None, workload: str | None = None) -> list[Measurement]:
        sql, args = "SELECT * FROM measurements WHERE 1=1", []
        if device:
            sql += " AND device = ?"
            args.append(device)
        if workload:
            sql += " AND (workload = ? OR workload LIKE ?)"
            args += [workload, workload + "%"]
        return [self._measurement(r) for r in self._query(sql + " ORDER BY id", tuple(args))]

    def dataset_rows(self, *, device: str | None = None) -> list[dict[str, Any]]:
        """Flat rows (one per measurement) for show/export: stats, workload facts, provenance."""
        sql = ("SELECT m.*, w.name AS model, w.format, w.source_path, w.macs, w.params FROM measurements m "
               "JOIN workloads w ON w.hash = m.workload")
        args: tuple[Any, ...] = ()
        if device:
            sql += " WHERE m.device = ?"
            args = (device,)
        rows = []
        for r in self._query(sql + " ORDER BY m.id", args):
            prov = json.loads(r["provenance_json"])
            settings = json.loads(r["settings_json"])
            rows.append({
                "id": r["id"], "device": r["device"], "model": r["model"], "workload": r["workload"],
                "format": r["format"], "source_path": r["source_path"], "macs": r["macs"], "params": r["params"],
                "runtime": settings["runtime"], "runtime_version": prov.get("runtime_version"),
                "threads": settings["threads"], "settings_hash": r["settings_hash"],
                "median_ms": r["median_ms"], "mean_ms": r["mean_ms"], "p10_ms": r["p10_ms"], "p90_ms": r["p90_ms"],
                "std_ms": r["std_ms"], "cv": r["cv"], "n": r["n"], "n_outliers": r["n_outliers"],
                "ci_low_ms": r["ci_low_ms"], "ci_high_ms": r["ci_high_ms"], "energy_mj": r["energy_mj"],
                "stop_reason": r["stop_reason"], "simulated": bool(r["simulated"]),
                # measured in a slow state throughout (farm.estimate); records from before the
                # reference workload existed say nothing either way: False
                "unstable": bool(prov.get("unstable", False)),
                "cpu_model": prov.get("cpu_model"), "hostname": prov.get("hostname"),
                "hwfarm_version": prov.get("hwfarm_version"), "created_at": r["created_at"],
                "samples_ms": r["samples_json"],
            })
        return rows

    # ------------------------------------------------------------------ jobs

    @staticmethod
    def _job(r: sqlite3.Row) -> Job:
        return Job(r["id"], r["device"], r["workload"], Settings.from_dict(json.loads(r["settings_json"])),
                   r["status"], r["attempts"], r["max_attempts"], r["error"], r["measurement_id"], r["owner"], r["rounds_done"])

    def enqueue(self, device: str, workload: str, settings: Settings, *, max_attempts: int = 3) -> Job:
        """Queue a job, or return the open (queued/running) job with the same key."""
        now = _now_iso()
        with self._tx() as db:
            row = db.execute("SELECT * FROM jobs WHERE device = ? AND workload = ? AND settings_hash = ? "
                             "AND status IN ('queued', 'running')", (device, workload, settings.hash)).fetchone()
            if row is None:
                cur = db.execute(
                    "INSERT INTO jobs(device, workload, settings_hash, settings_json, status, max_attempts, "
                    "created_at, updated_at) VALUES (?, ?, ?, ?, 'queued', ?, ?, ?)",
                    (device, workload, settings.hash, json.dumps(settings.to_dict()), max_attempts, now, now))
                row = db.execute("SELECT * FROM jobs WHERE id = ?", (cur.lastrowid,)).fetchone()
            return self._job(row)

    def get_job(self, job_id: int) -> Job:
        rows = self._query("SELECT * FROM jobs WHERE id = ?", (job_id,))
        if not rows:
            raise KeyError(job_id)
        return self._job(rows[0])

    def jobs(self, *, status: str | None = None, device: str | None = None) -> list[Job]:
        sql, args = "SELECT * FROM jobs WHERE 1=1", []
        if status:
            sql += " AND status = ?"
            args.append(status)
        if device:
            sql += " AND device = ?"
            args.append(device)
        return [self._job(r) for r in self._query(sql + " ORDER BY id", tuple(args))]

    def claim(self, device: str, owner: str, *, ids: set[int] | None = None) -> tuple[Job | None, float | None]:
        """Atomically take the next runnable queued job for ``device``.

        Returns (job, None), or (None, seconds until a backed-off job becomes runnable), or
        (None, None) when nothing is queued."""
        now = time.time()
        with self._tx() as db:
            # Jobs measured in rounds: every job's next round before anyone's round after it.
            rows = db.execute("SELECT * FROM jobs WHERE device = ? AND status = 'queued' ORDER BY rounds_done, id",
                              (device,)).fetchall()
            rows = [r for r in rows if ids is None or r["id"] in ids]
            if not rows:
                return None, None
            ready = [r for r in rows if r["not_before"] <= now]
            if not ready:
                return None, min(r["not_before"] for r in rows) - now
            r = ready[0]
            db.execute("UPDATE jobs SET status = 'running', owner = ?, heartbeat_at = ?, attempts = attempts + 1, "
                       "updated_at = ? WHERE id = ?", (owner, now, _now_iso(), r["id"]))
            return self._job(db.execute("SELECT * FROM jobs WHERE id = ?", (r["id"],)).fetchone()), None

    def heartbeat(self, job_ids: list[int], owner: str) -> None:
        if not job_ids:
            return
        with self._tx() as db:
            db.executemany("UPDATE jobs SET heartbeat_at = ? WHERE id = ? AND owner = ? AND status = 'running'",
                           [(time.time(), j, owner) for j in job_ids])

    def complete(self, job: Job, m: Measurement) -> Measurement:
        """Store the measurement and mark the job done, in one transaction."""
        with self._tx() as db:
            mid = self._insert_measurement(db, m, job.id)
            db.execute("UPDATE jobs SET status = 'done', measurement_id = ?, error = NULL, rounds_json = '[]', "
                       "updated_at = ? WHERE id = ?", (mid, _now_iso(), job.id))
        return self.get_measurement(mid)

    def add_round(self, job: Job, m: Measurement, *, last: bool | None = None,
                  retry_in_s: float = 0.0) -> list[Measurement]:
        """Keep one finished round of a job measured in rounds; returns every round kept so
        far. Unless it was the ``last`` (default: the job's ``settings.rounds`` are done) the
        job goes back in the queue, behind the jobs with fewer rounds done and not before
        ``retry_in_s`` from now, and the attempt it used is not counted (it succeeded). The
        rounds live in the job row, not among the measurements: the dataset only ever holds
        whole records."""
        with self._tx() as db:
            row = db.execute("SELECT rounds_json FROM jobs WHERE id = ?", (job.id,)).fetchone()
            kept = json.loads(row["rounds_json"]) + [_round_json(m)]
            left = len(kept) < job.settings.rounds if last is None else not last
            db.execute("UPDATE jobs SET rounds_json = ?, rounds_done = ?, status = ?, owner = ?, error = NULL, "
                       "attempts = MAX(attempts - ?, 0), not_before = ?, updated_at = ? WHERE id = ?",
                       (json.dumps(kept), len(kept), "queued" if left else "running", None if left else job.owner,
                        1 if left else 0, time.time() + retry_in_s if left and retry_in_s > 0 else 0,
                        _now_iso(), job.id))
        return [_round_from_json(job, r) for r in kept]

    def stable_latencies(self, device: str, workload: str, settings_hash: str, *, recent: int = 10) -> list[float]:
        """The latencies (``median_ms``) of the ``recent`` newest records for this key that are
        not marked unstable, newest first: what the quiet estimator compares a new
        measurement of the same model with (``farm.estimate``)."""
        rows = self._query(
            "SELECT median_ms FROM measurements WHERE device = ? AND workload = ? AND settings_hash = ? "
            "AND COALESCE(json_extract(provenance_json, '$.unstable'), 0) = 0 ORDER BY id DESC LIMIT ?",
            (device, workload, settings_hash, recent))
        return [float(r["median_ms"]) for r in rows]

    def reference_floor(self, device: str, *, recent: int = 50) -> float | None:
        """The low level (``farm.estimate.low_level``: a lower quartile) of the typical
        reference readings (``provenance.reference.level_us``) of the device's ``recent``
        latest records that have one: its quiet state's level, as far as the dataset knows.
        Only recent records count, so a device whose machine changed for good gets a new
        floor after ``recent`` records."""
        with self._tx() as db:
            rows = db.execute(
                "SELECT json_extract(provenance_json, '$.reference.level_us') AS v FROM measurements "
                "WHERE device = ? AND v IS NOT NULL ORDER BY id DESC LIMIT ?", (device, recent)).fetchall()
        vals = [float(r["v"]) for r in rows if isinstance(r["v"], (int, float)) and r["v"] > 0]
        return low_level(vals) if vals else None

    def rounds(self, job: Job) -> list[Measurement]:
        """The rounds kept so far for a job measured in rounds."""
        with self._tx() as db:
            row = db.execute("SELECT rounds_json FROM jobs WHERE id = ?", (job.id,)).fetchone()
        return [_round_from_json(job, r) for r in json.loads(row["rounds_json"])] if row else []

    def fail(self, job: Job, error: str, *, retry_in_s: float | None) -> Job:
        """Record a failure; requeue after ``retry_in_s`` seconds or mark the job failed (None)."""
        with self._tx() as db:
            if retry_in_s is None:
                db.execute("UPDATE jobs SET status = 'failed', error = ?, owner = NULL, updated_at = ? WHERE id = ?",
                           (error, _now_iso(), job.id))
            else:
                db.execute("UPDATE jobs SET status = 'queued', error = ?, owner = NULL, not_before = ?, "
                           "updated_at = ? WHERE id = ?", (error, time.time() + retry_in_s, _now_iso(), job.id))
        return self.get_job(job.id)

    def requeue_stale(self, *, stale_after_s: float = 300.0) -> list[int]:
        """Put back jobs left ``running`` by a process that died (same host: its pid is gone;
        elsewhere: no heartbeat for ``stale_after_s``). The attempt it used is not counted."""
        now = time.time()
        with self._tx() as db:
            rows = db.execute("SELECT id, owner, heartbeat_at FROM jobs WHERE status = 'running'").fetchall()
            stale = [r["id"] for r in rows
                     if not owner_alive(r["owner"]) or (r["heartbeat_at"] or 0) < now - stale_after_s]
            for jid in stale:
                db.execute("UPDATE jobs SET status = 'queued', owner = NULL, attempts = MAX(attempts - 1, 0), "
                           "error = 'requeued: its process died', updated_at = ? WHERE id = ?", (_now_iso(), jid))
        return stale

    # ------------------------------------------------------------------ fusion rules

    def put_fusion_rules(self, device: str, records: list[FusionRecord]) -> None:
        """Replace the device's detected fusion rules with ``records``, in one transaction."""
        with self._tx() as db:
            db.execute("DELETE FROM fusion_rules WHERE device = ?", (device,))
            db.executemany(
                "INSERT INTO fusion_rules(device, candidate, ops_json, fused, evidence_json, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(device, r.candidate, json.dumps(list(r.ops)), int(r.fused), json.dumps(r.evidence),
                  r.created_at or _now_iso()) for r in records])

    def fusion_rules(self, device: str) -> list[FusionRecord]:
        """The candidates tested on ``device`` (empty if fusion was never detected there)."""
        rows = self._query("SELECT * FROM fusion_rules WHERE device = ? ORDER BY rowid", (device,))
        return [FusionRecord(r["device"], r["candidate"], tuple(json.loads(r["ops_json"])), bool(r["fused"]),
                             json.loads(r["evidence_json"]), r["created_at"]) for r in rows]

    # ------------------------------------------------------------------ device leases

    def acquire_device(self, name: str, owner: str, *, ttl_s: float = 60.0) -> str | None:
        """Take the exclusive lease on a device. Returns None on success, else the live holder."""
        now = time.time()
        with self._tx() as db:
            row = db.execute("SELECT lease_owner, lease_until FROM devices WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise KeyError(name)
            holder, until = row["lease_owner"], row["lease_until"] or 0
            if holder and holder != owner and until > now and owner_alive(holder):
                return str(holder)
            db.execute("UPDATE devices SET lease_owner = ?, lease_until = ? WHERE name = ?", (owner, now + ttl_s, name))
        return None

    def device_holder(self, name: str) -> str | None:
        """The live process holding the device's lease (``host:pid``), or None."""
        rows = self._query("SELECT lease_owner, lease_until FROM devices WHERE name = ?", (name,))
        if not rows:
            return None
        holder, until = rows[0]["lease_owner"], rows[0]["lease_until"] or 0
        return str(holder) if holder and until > time.time() and owner_alive(holder) else None

    def renew_device(self, name: str, owner: str, *, ttl_s: float = 60.0) -> None:
        with self._tx() as db:
            db.execute("UPDATE devices SET lease_until = ? WHERE name = ? AND lease_owner = ?",
                       (time.time() + ttl_s, name, owner))

    def release_device(self, name: str, owner: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE devices SET lease_owner = NULL, lease_until = NULL WHERE name = ? AND lease_owner = ?",
                       (name, owner))


def open_store(path: str | os.PathLike[str]) -> SqliteStore:
    return SqliteStore(path)


def _round_json(m: Measurement) -> dict[str, Any]:
    """One round of a job measured in rounds, as kept in its job row (settings are the job's)."""
    return {"stats": m.stats.to_dict(), "samples_ms": list(m.samples_ms), "outliers": list(m.outliers),
            "warmup_ms": list(m.warmup_ms), "stop_reason": m.stop_reason, "provenance": m.provenance,
            "energy_mj": m.energy_mj, "peak_memory_kb": m.peak_memory_kb, "breakdown": list(m.breakdown),
            "created_at": m.created_at}


def _round_from_json(job: Job, r: dict[str, Any]) -> Measurement:
    return Measurement(device=job.device, workload=job.workload, settings=job.settings,
                       stats=LatencyStats(**r["stats"]), samples_ms=tuple(r["samples_ms"]),
                       outliers=tuple(r["outliers"]), warmup_ms=tuple(r["warmup_ms"]), stop_reason=r["stop_reason"],
                       provenance=r["provenance"], energy_mj=r["energy_mj"], peak_memory_kb=r["peak_memory_kb"],
                       breakdown=tuple(r["breakdown"]), created_at=r["created_at"])
