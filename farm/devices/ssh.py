"""Linux boards over SSH (``ssh://user@host[:port]``): Raspberry Pi, Jetson, Coral Dev Board…

The coordinator connects with paramiko (key from ``key_file`` or the SSH agent; a key
passphrase may come from the environment variable named by ``key_env``), verifies the
host key against ``known_hosts`` (default ``~/.ssh/known_hosts``) and refuses an unknown
or changed key unless the entry sets ``trust_on_first_use: true`` (then an unknown key is
recorded in that file; a changed key is always refused).

It pushes the agent package (``farm/agent``: stdlib + numpy + one runtime) over SFTP into
``~/.cache/hwfarm/agent-<digest>/``, caches models by content hash in
``~/.cache/hwfarm/models/``, and runs the agent in a per-session temp dir with the board's
``python`` (default ``python3``). Every remote argument is ``shlex.quote``d; output is
drained continuously by a reader thread, and a request past its deadline kills the remote
process by pid.
"""

from __future__ import annotations

import hashlib
import os
import select
import shlex
import threading
import time
from pathlib import Path
from typing import Any, Callable

from farm.devices.agent_client import LineSink
from farm.errors import DeviceError, DeviceTimeout, DeviceUnauthorized, DeviceUnavailable
from farm.registry.spec import DeviceSpec
from farm.workload import Workload

__all__ = ["SshTransport", "agent_files"]

_AGENT_DIR = Path(__file__).resolve().parents[1] / "agent"
_PACKAGE = "hwfarm_agent"


def agent_files() -> dict[str, bytes]:
    """The agent package as pushed to boards: every module of ``farm/agent``."""
    return {p.name: p.read_bytes() for p in sorted(_AGENT_DIR.glob("*.py"))}


def _digest(files: dict[str, bytes]) -> str:
    h = hashlib.sha256()
    for name, data in files.items():
        h.update(name.encode() + b"\0" + data + b"\0")
    return h.hexdigest()[:16]


def _paramiko() -> Any:
    try:
        import paramiko
    except ImportError:
        raise DeviceUnavailable("ssh devices need paramiko: pip install 'hwfarm[ssh]'") from None
    return paramiko


def _host_key_policy(spec: DeviceSpec, known_hosts: Path) -> Any:
    paramiko = _paramiko()

    class Policy(paramiko.MissingHostKeyPolicy):  # type: ignore[misc, name-defined]
        def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
            if not spec.trust_on_first_use:
                raise DeviceUnauthorized(
                    f"device {spec.name!r}: host key of {hostname} ({key.get_name()}) is not in {known_hosts}; "
                    f"refusing to connect. Add it (ssh-keyscan) or set trust_on_first_use: true")
            known_hosts.parent.mkdir(parents=True, exist_ok=True)
            keys = paramiko.HostKeys()
            if known_hosts.exists():
                keys.load(str(known_hosts))
            keys.add(hostname, key.get_name(), key)
            keys.save(str(known_hosts))
            client.get_host_keys().add(hostname, key.get_name(), key)

    return Policy()


class SshPipe:
    """The agent's stdin/stdout/stderr over one exec channel, drained by a reader thread."""

    def __init__(self, transport: SshTransport, command: str, on_line: LineSink, on_err: Callable[[str], None]) -> None:
        self._transport = transport
        self.pid: int | None = None
        self._chan = transport.client().get_transport().open_session()
        self._chan.exec_command(command)
        self._on_line, self._on_err = on_line, on_err
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        chan, out, err = self._chan, b"", b""
        while True:
            got = False
            try:
                select.select([chan], [], [], 0.2)
                while chan.recv_ready():
                    out += chan.recv(65536)
                    got = True
                while chan.recv_stderr_ready():
                    err += chan.recv_stderr(65536)
                    got = True
            except (OSError, EOFError):  # the channel was closed under us (kill, connection cut)
                break
            *lines, out = out.split(b"\n")
            for raw in lines:
                line = raw.decode("utf-8", "replace")
                if self.pid is None and line.startswith("hwfarm-pid "):
                    self.pid = int(line.split()[1])
                    self._transport.agent_pids.append(self.pid)
                else:
                    self._on_line(line + "\n")
            *elines, err = err.split(b"\n")
            for raw in elines:
                self._on_err(raw.decode("utf-8", "replace"))
            # the end is EOF (or a closed channel), not the exit status, which can overtake the last output
            if not got and ((chan.exit_status_ready() and chan.eof_received) or chan.closed) and not chan.recv_ready():
                break
        self._on_line(None)

    def write(self, text: str) -> None:
        self._chan.sendall(text.encode())

    def alive(self) -> bool:
        return not (self._chan.closed or self._chan.exit_status_ready())

    def kill(self) -> None:
        if self.pid is not None and self.alive():
            try:
                self._transport.run(f"kill -9 {int(self.pid)}", timeout_s=10)
            except DeviceError:
                pass
        self._chan.close()

    def close(self) -> None:
        if self.alive():
            self._chan.shutdown_write()
            deadline = time.monotonic() + 5
            while not self._chan.exit_status_ready() and time.monotonic() < deadline:
                time.sleep(0.05)
        self.kill()


class SshTransport:
    kind = "ssh"

    def __init__(self, spec: DeviceSpec) -> None:
        _paramiko()  # a missing extra is a clear error at open time
        self.spec = spec
        url = spec.parsed_url
        self.host, self.port, self.user = url.host, url.port or 22, url.user
        self.known_hosts = Path(os.path.expanduser(spec.known_hosts or "~/.ssh/known_hosts"))
        self.agent_pids: list[int] = []
        self._client: Any = None
        self._base: str | None = None
        self._agent_root: str | None = None
        self._workdir: str | None = None

    # ------------------------------------------------------------------ connection

    def client(self) -> Any:
        if self._client is not None and self._client.get_transport() is not None \
                and self._client.get_transport().is_active():
            return self._client
        paramiko = _paramiko()
        client = paramiko.SSHClient()
        if self.known_hosts.exists():
            try:
                client.load_host_keys(str(self.known_hosts))
            except (OSError, paramiko.SSHException) as err:
                raise DeviceError(f"device {self.spec.name!r}: cannot read {self.known_hosts}: {err}") from None
        client.set_missing_host_key_policy(_host_key_policy(self.spec, self.known_hosts))
        key_file = os.path.expanduser(self.spec.key_file) if self.spec.key_file else None
        passphrase = None
        if self.spec.key_env:
            passphrase = os.environ.get(self.spec.key_env)
            if passphrase is None:
                raise DeviceError(f"device {self.spec.name!r}: environment variable {self.spec.key_env} "
                                  "(key_env) is not set")
        where = f"{self.user}@{self.host}:{self.port}"
        try:
            client.connect(self.host, self.port, username=self.user, key_filename=key_file, passphrase=passphrase,
                           allow_agent=key_file is None, look_for_keys=False, timeout=15, banner_timeout=15,
                           auth_timeout=15)
        except DeviceError:
            client.close()
            raise
        except paramiko.BadHostKeyException as err:
            client.close()
            raise DeviceUnauthorized(f"device {self.spec.name!r}: host key of {where} does not match {self.known_hosts} "
                              f"(got {err.key.get_name()}); refusing to connect — if the board was reinstalled, "
                              "remove its old entry") from None
        except paramiko.AuthenticationException as err:
            client.close()
            raise DeviceUnauthorized(f"device {self.spec.name!r}: authentication as {self.user} failed on {where} "
                              f"(key_file: {key_file or 'SSH agent'}): {err}") from None
        except (OSError, paramiko.SSHException, EOFError) as err:
            client.close()
            raise DeviceError(f"device {self.spec.name!r}: cannot reach {where}: {err}") from None
        self._client = client
        return client

    def run(self, command: str, *, timeout_s: float, stdin: bytes | None = None) -> tuple[int, str, str]:
        """Run a short command; drains stdout and stderr while waiting (no recv_exit_status
        before the output is read: that deadlocks once the output passes the window)."""
        chan = self.client().get_transport().open_session()
        try:
            chan.exec_command(command)
            if stdin:
                chan.sendall(stdin)
            chan.shutdown_write()
            out, err = bytearray(), bytearray()
            deadline = time.monotonic() + timeout_s
            while True:
                select.select([chan], [], [], 0.1)
                while chan.recv_ready():
                    out += chan.recv(65536)
                while chan.recv_stderr_ready():
                    err += chan.recv_stderr(65536)
                # done at EOF, not at the exit status: sshd may send the status while the last
                # output is still on its way (the tail of a 3 MB stdout was lost that way)
                done = chan.exit_status_ready() and (chan.eof_received or chan.closed)
                if done and not chan.recv_ready() and not chan.recv_stderr_ready():
                    break
                if time.monotonic() > deadline:
                    raise DeviceTimeout(f"device {self.spec.name!r}: `{command[:60]}` ran past {timeout_s:g} s")
            return chan.recv_exit_status(), out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
        finally:
            chan.close()

    def _check(self, command: str, what: str) -> str:
        rc, out, err = self.run(command, timeout_s=60)
        if rc != 0:
            raise DeviceError(f"device {self.spec.name!r}: {what} failed (exit {rc}): {err.strip()[:200]}")
        return out.strip()

    # ------------------------------------------------------------------ files

    def _sftp_put(self, data: bytes, path: str) -> None:
        """Upload to a temporary name, then rename: a half-written file is never used."""
        tmp = f"{path}.part-{os.getpid()}-{threading.get_ident()}"
        with self.client().open_sftp() as sftp:
            with sftp.open(tmp, "wb") as f:
                f.set_pipelined(True)
                f.write(data)
            try:
                sftp.posix_rename(tmp, path)
            except OSError:
                sftp.remove(tmp)
                raise

    def _exists(self, path: str, size: int) -> bool:
        with self.client().open_sftp() as sftp:
            try:
                return sftp.stat(path).st_size == size
            except OSError:
                return False

    def _prepare(self) -> None:
        if self._agent_root is not None:
            return
        base = self._check("cd && mkdir -p .cache/hwfarm/models && cd .cache/hwfarm && pwd", "creating the cache dir")
        files = agent_files()
        root = f"{base}/agent-{_digest(files)}"
        pkg = f"{root}/{_PACKAGE}"
        if not self._exists(f"{pkg}/__main__.py", len(files["__main__.py"])):
            self._check(f"mkdir -p {shlex.quote(pkg)}", "creating the agent dir")
            for name, data in files.items():
                self._sftp_put(data, f"{pkg}/{name}")
        self._workdir = self._check("mktemp -d -t hwfarm-job.XXXXXX", "creating a job dir")
        self._base, self._agent_root = base, root

    def open_agent(self, on_line: LineSink, on_err: Callable[[str], None]) -> SshPipe:
        self._prepare()
        assert self._workdir is not None and self._agent_root is not None
        python = self.spec.python or "python3"
        command = (f"cd {shlex.quote(self._workdir)} && echo hwfarm-pid $$ && "
                   f"exec env OMP_NUM_THREADS=1 PYTHONPATH={shlex.quote(self._agent_root)} "
                   f"{shlex.quote(python)} -m {_PACKAGE}")
        return SshPipe(self, command, on_line, on_err)

    def stage(self, workload: Workload) -> str:
        self._prepare()
        path = f"{self._base}/models/{workload.hash}.{workload.format}"
        if not self._exists(path, len(workload.data)):
            self._sftp_put(workload.data, path)
        return path

    def close(self) -> None:
        if self._client is not None:
            if self._workdir is not None:
                try:
                    self.run(f"rm -rf {shlex.quote(self._workdir)}", timeout_s=30)
                except DeviceError:
                    pass
            self._client.close()
        self._client = None
        self._agent_root = self._workdir = self._base = None
