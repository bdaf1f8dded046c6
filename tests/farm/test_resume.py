"""kill -9 in the middle of a run, then the same command again: nothing lost, nothing twice."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import onnx

from ..conftest import ROOT, gemm_model


def _running(db) -> int:
    try:
        return sqlite3.connect(db, timeout=5).execute("SELECT COUNT(*) FROM jobs WHERE status = 'running'").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def _done(db) -> list[tuple[int, str]]:
    if not db.exists():
        return []
    try:
        con = sqlite3.connect(db, timeout=5)
        return con.execute("SELECT id, workload FROM measurements ORDER BY id").fetchall()
    except sqlite3.OperationalError:
        return []


def test_kill_9_then_rerun_finishes_remaining_jobs(tmp_path, registry_file):
    models = []
    for i in range(4):
        p = tmp_path / f"m{i}.onnx"
        onnx.save(gemm_model(16 + i), p)
        models.append(str(p))
    db = tmp_path / "hwfarm.db"
    # Each model takes ~0.8 s (time-bounded, never converges early), so the kill lands mid-run.
    cmd = [sys.executable, "-m", "farm.cli", "--registry", str(registry_file), "--db", str(db), "profile",
           *models, "--device", "host-cpu", "--estimator", "pooled", "--warmup", "1", "--runs", "10000000", "--target-ci", "0",
           "--max-time", "0.8", "--json"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    # Kill while one model is finished and the next one is being measured.
    while not (len(_done(db)) >= 1 and _running(db) == 1) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _done(db)
    assert 1 <= len(before) < 4, "the kill should land after the first model and before the last"
    con = sqlite3.connect(db)
    assert con.execute("SELECT COUNT(*) FROM jobs WHERE status = 'running'").fetchone()[0] == 1

    rerun = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "re-queued 1 job(s)" in rerun.stderr
    after = _done(db)
    assert len(after) == 4
    assert after[: len(before)] == before  # finished ones kept, untouched
    assert len({w for _, w in after}) == 4  # one measurement per model, none duplicated
    outs = [json.loads(line) for line in rerun.stdout.splitlines()]
    assert [o["source"] for o in outs] == ["cached"] * len(before) + ["measured"] * (4 - len(before))
    assert con.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall() == [("done", 4)]
