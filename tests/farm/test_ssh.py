"""SSH boards against a real OpenSSH server on 127.0.0.1: the agent pushed over SFTP,
host keys verified, deadlines enforced on the remote process, hostile file names inert."""

from __future__ import annotations

import json
import os
from pathlib import Path

import onnx
import pytest

from farm.agent.measure import Policy
from farm.devices import open_device
from farm.errors import DeviceError, DeviceTimeout
from farm.measurement import Settings
from farm.registry.spec import DeviceSpec
from farm.workload import load_workload

from ..conftest import FAST, REGISTRY, gemm_model, matmul_model, run_cli, ssh_spec_text

QUICK = Policy(warmup=2, warmup_s=0, min_runs=5, min_time_s=0, max_runs=30, max_time_s=2.0)


@pytest.fixture
def known_hosts(tmp_path, sshd) -> Path:
    path = tmp_path / "known_hosts"
    path.write_text(sshd.known_hosts_line())
    return path


def _spec(sshd, known_hosts: Path, **kw) -> DeviceSpec:
    return DeviceSpec(name="board", url=sshd.url(), key_file=str(sshd.client_key), known_hosts=str(known_hosts),
                      python=os.environ.get("HWFARM_TEST_PYTHON", __import__("sys").executable), **kw)


def test_check_reports_the_board(sshd, known_hosts):
    dev = open_device(_spec(sshd, known_hosts))
    try:
        h = dev.check()
        assert h.ok, h.detail
        assert h.facts["runtimes"]["onnxruntime"] and h.facts["python"] and h.facts["cpu_count"] >= 1
        assert "mem_available_mb" in h.facts and "temperature_c" in h.facts
    finally:
        dev.close()


def test_profile_over_ssh_matches_local_run(sshd, known_hosts, tmp_path):
    reg = tmp_path / "devices.yaml"
    reg.write_text(REGISTRY + ssh_spec_text(sshd, known_hosts))
    model = tmp_path / "mm.onnx"
    onnx.save(matmul_model(128), model)
    args = ["--registry", str(reg), "--db", str(tmp_path / "h.db"), "profile", str(model), "--json", *FAST]
    remote = run_cli(*args, "--device", "board")
    assert remote.returncode == 0, remote.stderr
    local = run_cli(*args, "--device", "host-cpu")
    r, lo = json.loads(remote.stdout), json.loads(local.stdout)
    assert r["device"] == "board" and r["provenance"]["device_url"] == sshd.url()
    assert r["workload"] == lo["workload"]
    # Same machine behind both: the medians agree within a factor 4 (two processes on shared,
    # loaded cores). Timing the SSH round trip instead of the model would be >10x off.
    assert 0.25 < r["latency_ms"] / lo["latency_ms"] < 4.0
    # The model was cached on the board by content hash, the agent by its digest.
    cache = Path.home() / ".cache" / "hwfarm"
    assert (cache / "models" / f"{r['workload']}.onnx").exists()
    assert any(p.name.startswith("agent-") for p in cache.iterdir())


def test_unknown_host_key_is_refused(sshd, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    dev = open_device(_spec(sshd, empty))
    h = dev.check()
    assert h.status == "unreachable" and "is not in" in h.detail and "trust_on_first_use" in h.detail
    assert h.to_json()["state"] == "unauthorized"
    dev.close()
    reg = tmp_path / "devices.yaml"
    reg.write_text(REGISTRY + ssh_spec_text(sshd, empty))
    p = run_cli("--registry", str(reg), "devices", "check", "board")
    assert p.returncode == 1 and "unreachable" in p.stdout
    assert empty.read_text() == ""


def test_trust_on_first_use_records_the_key_and_then_pins_it(sshd, tmp_path):
    kh = tmp_path / "kh"
    dev = open_device(_spec(sshd, kh, trust_on_first_use=True))
    assert dev.check().ok
    dev.close()
    assert sshd.host_pub.split()[1] in kh.read_text()
    # A different key for the same host later is a changed key: refused even with TOFU.
    other = "AAAAC3NzaC1lZDI1NTE5AAAAIDx2xN0p9G0bmV0hG4zJ9Vq7u3w0Vx1o0m1q0f3tQ5pF"
    kh.write_text(f"[127.0.0.1]:{sshd.port} ssh-ed25519 {other}\n")
    dev = open_device(_spec(sshd, kh, trust_on_first_use=True))
    h = dev.check()
    dev.close()
    assert h.status == "unreachable" and "does not match" in h.detail


def test_deadline_kills_the_remote_process(sshd, known_hosts, tmp_path):
    # the deadline covers the takeover run too: a fresh agent's start and a short measurement
    # under a loaded CI core (2 s, with a 2 s measuring budget, raced and sometimes lost)
    dev = open_device(_spec(sshd, known_hosts, timeout_s=5.0))
    try:
        path = tmp_path / "m.onnx"
        onnx.save(matmul_model(128), path)
        w = load_workload(path)
        with pytest.raises(DeviceTimeout, match="killed"):
            dev.run(w, Settings(policy=Policy(warmup=0, max_runs=10**7, max_time_s=600, target_ci=0)))
        pid = dev.transport.agent_pids[-1]
        assert _gone(pid)  # loopback: the "board" is this machine, so we can look
        short = Policy(warmup=1, warmup_s=0, min_runs=3, min_time_s=0, max_runs=5, max_time_s=0.2)
        assert dev.run(w, Settings(policy=short)).stats.n > 0  # a fresh agent takes over
    finally:
        dev.close()


def test_shell_metacharacters_in_model_names_are_inert(sshd, known_hosts, tmp_path):
    evil_dir = tmp_path / "x; touch PWNED1 #"
    evil_dir.mkdir()
    model = evil_dir / "m $(touch PWNED2) `touch PWNED3`; rm -rf ~ '\".onnx"
    onnx.save(gemm_model(8), model)
    reg = tmp_path / "devices.yaml"
    reg.write_text(REGISTRY + ssh_spec_text(sshd, known_hosts))
    p = run_cli("--registry", str(reg), "--db", str(tmp_path / "h.db"), "profile", str(model), "--device", "board",
                "--json", *FAST, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["model"] == str(model)
    for where in (tmp_path, Path.home(), Path("/tmp")):
        assert not any((where / f"PWNED{i}").exists() for i in (1, 2, 3))


def test_unreachable_board_is_a_device_error(tmp_path):
    pytest.importorskip("paramiko")
    spec = DeviceSpec(name="gone", url="ssh://pi@127.0.0.1:1", known_hosts=str(tmp_path / "kh"))
    dev = open_device(spec)
    h = dev.check()
    assert h.status == "unreachable" and "cannot reach pi@127.0.0.1:1" in h.detail and h.connection == "offline"
    with pytest.raises(DeviceError):
        dev.run(load_workload(_write(tmp_path)), Settings(policy=QUICK))


def _write(tmp_path: Path) -> Path:
    p = tmp_path / "g.onnx"
    onnx.save(gemm_model(8), p)
    return p


def _gone(pid: int, wait_s: float = 10.0) -> bool:
    """True once the process is gone or a zombie (killed, waiting for sshd to reap it)."""
    import time

    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def test_megabytes_of_output_do_not_deadlock(sshd, known_hosts):
    """The exec loop drains stdout and stderr while it waits: 3 MB on each is read whole
    (waiting for the exit status first would stall once the channel window fills)."""
    dev = open_device(_spec(sshd, known_hosts))
    try:
        rc, out, err = dev.transport.run("head -c 3000000 /dev/zero | tr '\\0' x; "
                                         "head -c 3000000 /dev/zero | tr '\\0' y >&2; exit 3", timeout_s=60)
    finally:
        dev.close()
    assert rc == 3 and len(out) == 3_000_000 == len(err) and set(out) == {"x"} and set(err) == {"y"}


def test_passphrase_from_the_environment_variable_named_by_key_env(sshd, known_hosts, tmp_path, monkeypatch):
    import subprocess

    key = tmp_path / "locked_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "s3cret", "-f", str(key)], check=True)
    with open(sshd.root / "authorized_keys", "a") as f:
        f.write((tmp_path / "locked_ed25519.pub").read_text())
    spec = _spec(sshd, known_hosts).model_copy(update={"key_file": str(key), "key_env": "HWFARM_TEST_KEY_PASS"})
    monkeypatch.delenv("HWFARM_TEST_KEY_PASS", raising=False)
    dev = open_device(spec)
    h = dev.check()
    dev.close()
    assert h.status == "unreachable" and "HWFARM_TEST_KEY_PASS (key_env) is not set" in h.detail
    monkeypatch.setenv("HWFARM_TEST_KEY_PASS", "s3cret")
    dev = open_device(spec)
    try:
        assert dev.check().ok
    finally:
        dev.close()


def test_cached_model_is_not_pushed_again(sshd, known_hosts, tmp_path):
    path = _write(tmp_path)
    w = load_workload(path)
    dev = open_device(_spec(sshd, known_hosts))
    try:
        dev.run(w, Settings(policy=QUICK))
        cached = Path.home() / ".cache" / "hwfarm" / "models" / f"{w.hash}.onnx"
        assert cached.read_bytes() == w.data
        before = cached.stat().st_mtime_ns
        dev.close()  # a new session (new connection, new job dir) finds it by its hash
        dev.run(w, Settings(policy=QUICK))
        assert cached.stat().st_mtime_ns == before
    finally:
        dev.close()
