"""`devices check` shows each device's state, and a device lease holds across processes: a
job measuring in one process makes the device ``busy`` for every other one."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from farm.devices.base import STATES, Health

from ..conftest import FAST, run_cli

HOLD = """
import sys, time
from farm.store.sqlite import SqliteStore, process_owner
store = SqliteStore(sys.argv[1])
from farm.registry.spec import DeviceSpec
store.put_device(DeviceSpec(name="host-cpu", url="local://cpu"))
assert store.acquire_device("host-cpu", process_owner()) is None
print("held", flush=True)
sys.stdin.readline()
"""


def test_state_follows_status_unless_the_kind_says_more():
    assert Health("d", "ok").connection == "online"
    assert Health("d", "unreachable").connection == "offline"
    assert Health("d", "busy").connection == "busy"
    assert Health("d", "unreachable", state="unauthorized").to_json()["state"] == "unauthorized"
    assert set(STATES) >= {"online", "offline", "unauthorized", "busy"}


def test_check_shows_busy_while_another_process_holds_the_device(tmp_path, registry_file, onnx_file):
    db = tmp_path / "farm.db"
    args = ("--registry", str(registry_file), "--db", str(db))
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        c = run_cli(*args, "devices", "check", "host-cpu", "--json")
        h = json.loads(c.stdout)
        assert c.returncode == 1 and h["state"] == "busy" and h["status"] == "busy"
        assert f":{holder.pid}" in h["detail"] and "not contacted" in h["detail"]
        table = run_cli(*args, "devices", "check")
        assert "busy" in table.stdout and "state" in table.stdout
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    # The holder is gone: its lease no longer counts, the device is online and measures.
    c = run_cli(*args, "devices", "check", "host-cpu", "--json")
    assert c.returncode == 0 and json.loads(c.stdout)["state"] == "online"
    p = run_cli(*args, "profile", str(onnx_file()), "--device", "host-cpu", "--json", *FAST)
    assert p.returncode == 0, p.stderr


@pytest.mark.slow
def test_two_processes_never_measure_on_one_device_at_once(tmp_path, registry_file, onnx_file):
    """Two `hwfarm profile` processes on one dataset and device, each with its own model: the
    second waits for the first one's lease, then measures."""
    db = tmp_path / "farm.db"
    models = [onnx_file("a", 64), onnx_file("b", 32)]

    def argv(model):
        return [sys.executable, "-m", "farm.cli", "--registry", str(registry_file), "--db", str(db), "profile",
                str(model), "--device", "host-cpu", "--json", "--warmup", "2", "--warmup-time", "0",
                "--min-time", "1", "--runs", "100000", "--min-runs", "5", "--max-time", "1.5"]

    procs = [subprocess.Popen(argv(m), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for m in models]
    outs = [p.communicate(timeout=240) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    assert all(json.loads(out)["latency_ms"] > 0 for out, _ in outs)
    # One of them found the device held by the other process and waited for its lease.
    waited = [err for _, err in outs if "is busy (held by" in err]
    assert len(waited) == 1 and any(f":{p.pid}" in waited[0] for p in procs)


@pytest.mark.slow
def test_a_joined_job_run_by_another_process_is_reported_measured(tmp_path, registry_file, onnx_file):
    """Both processes ask for the same measurement: the second joins the first one's job and
    reports its result once it is done, instead of 'not run'."""
    db = tmp_path / "farm.db"
    model = onnx_file()
    argv = [sys.executable, "-m", "farm.cli", "--registry", str(registry_file), "--db", str(db), "profile", str(model),
            "--device", "host-cpu", "--json", "--warmup", "2", "--warmup-time", "0", "--min-time", "1",
            "--runs", "100000", "--min-runs", "5", "--max-time", "1.5"]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=240) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    a, b = (json.loads(out) for out, _ in outs)
    assert a["latency_ms"] == b["latency_ms"] and a["workload"] == b["workload"]
