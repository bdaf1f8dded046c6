"""An SSH board that disconnects mid-job: the job is retried over a new connection; a board
that is away for longer than the retries is waited for (the outage window); a board that
stays away fails the job with the reason; nothing measured is lost."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable

import onnx
import pytest

from farm.agent.measure import Policy
from farm.measurement import Settings
from farm.registry.spec import DeviceSpec
from farm.scheduler.core import Scheduler
from farm.store.sqlite import SqliteStore
from farm.workload import load_workload

from .. import sshd as sshd_mod
from ..conftest import matmul_model

# Long enough that the connection is cut while the timed runs are going on.
SLOW = Policy(warmup=2, warmup_s=0, min_runs=5, min_time_s=4.0, max_runs=10**6, max_time_s=5.0, target_ci=0)

pytestmark = pytest.mark.skipif(not sshd_mod.available(), reason="openssh-server is not installed")


@pytest.fixture
def board(tmp_path):
    pytest.importorskip("paramiko")
    server = sshd_mod.start(tmp_path / "sshd")
    kh = tmp_path / "known_hosts"
    kh.write_text(server.known_hosts_line())
    spec = DeviceSpec(name="board", url=server.url(), key_file=str(server.client_key), known_hosts=str(kh),
                      python=sys.executable, timeout_s=60)
    yield server, spec
    sshd_mod.stop(server)


def _when_running(store: SqliteStore, action, delay_s: float = 1.5) -> threading.Thread:
    """Run ``action`` once a job has been running for ``delay_s`` (inside its timed runs)."""
    def watch() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not store.jobs(status="running"):
            time.sleep(0.05)
        time.sleep(delay_s)
        action()

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


def _workload(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(matmul_model(64), path)
    return load_workload(path)


def test_connection_cut_mid_job_is_retried_over_a_new_connection(board, tmp_path):
    server, spec = board
    store = SqliteStore(tmp_path / "h.db")
    events = []
    sched = Scheduler(store, backoff_s=0.2, on_event=events.append)
    w = _workload(tmp_path)
    sub = sched.submit(spec, w, Settings(policy=SLOW))
    cut = []
    t = _when_running(store, lambda: cut.append(sshd_mod.drop_connections(server)))
    report = sched.run([spec], workloads={w.hash: w})
    t.join()
    assert cut and cut[0] >= 1
    assert sub.job is not None and sub.job.id in report.done, report.failed
    job = store.get_job(sub.job.id)
    assert job.status == "done" and job.attempts == 2
    assert any(e.kind == "retry" and "device 'board'" in e.message for e in events)
    assert len(store.measurements()) == 1


def _away(server, seconds: float) -> Callable[[], None]:
    """The board goes away for ``seconds`` and comes back (a reboot)."""
    def action() -> None:
        sshd_mod.drop_connections(server)  # first: once the listener is gone its sessions have no parent
        sshd_mod.stop(server)
        time.sleep(seconds)
        sshd_mod.restart(server)

    return action


def test_board_away_longer_than_its_retries_is_waited_for(board, tmp_path):
    # sshd stopped for 2 s mid-job: with 0.1 s backoffs the job's two attempts are spent in
    # the first 0.2 s, but nothing ran on the board since, so it is down, not the job bad:
    # the job retries within the outage window and finishes once sshd is back.
    server, spec = board
    store = SqliteStore(tmp_path / "h.db")
    sched = Scheduler(store, backoff_s=0.1, max_attempts=2, outage_s=60)
    w = _workload(tmp_path)
    sub = sched.submit(spec, w, Settings(policy=SLOW))
    t = _when_running(store, _away(server, 2.0))
    report = sched.run([spec], workloads={w.hash: w})
    t.join()
    assert sub.job is not None and sub.job.id in report.done, report.failed
    assert store.get_job(sub.job.id).attempts > 2
    assert len(store.measurements()) == 1


@pytest.mark.slow
def test_board_restarted_mid_job_then_gone_for_good(board, tmp_path):
    server, spec = board
    store = SqliteStore(tmp_path / "h.db")
    sched = Scheduler(store, backoff_s=0.5, outage_s=0)  # gone for good: no outage window to wait out
    w = _workload(tmp_path)
    sub = sched.submit(spec, w, Settings(policy=SLOW))
    t = _when_running(store, _away(server, 0.3))  # the board goes away and comes back a little later
    report = sched.run([spec], workloads={w.hash: w})
    t.join()
    assert sub.job is not None and sub.job.id in report.done, report.failed
    assert 2 <= store.get_job(sub.job.id).attempts <= 3
    first = store.measurements()
    assert len(first) == 1

    def vanish() -> None:  # now it goes away for good
        sshd_mod.drop_connections(server)
        sshd_mod.stop(server)

    sub = sched.submit(spec, w, Settings(policy=SLOW), force=True)
    t = _when_running(store, vanish)
    report = sched.run([spec], workloads={w.hash: w})
    t.join()
    assert sub.job is not None and sub.job.id in report.failed
    job = store.get_job(sub.job.id)
    assert job.status == "failed" and job.attempts == job.max_attempts == 3
    assert "cannot reach" in (job.error or "") and report.failed[sub.job.id].message == job.error
    assert [m.id for m in store.measurements()] == [m.id for m in first]  # what was measured is still there
    assert os.path.exists(tmp_path / "h.db")
