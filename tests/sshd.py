"""A real OpenSSH server on 127.0.0.1 for tests: own config, host key and authorized_keys in
a temp dir, started in the foreground and stopped by PID."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


@dataclass
class Sshd:
    port: int
    user: str
    client_key: Path
    host_pub: str  # "ssh-ed25519 AAAA..."
    proc: subprocess.Popen[bytes]
    root: Path

    def known_hosts_line(self) -> str:
        return f"[127.0.0.1]:{self.port} {self.host_pub}\n"

    def url(self) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}"


def available() -> bool:
    return Path(SSHD).exists() and shutil.which("ssh-keygen") is not None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(root: Path) -> Sshd:
    root.mkdir(parents=True, exist_ok=True)
    os.makedirs("/run/sshd", exist_ok=True)  # privilege separation dir sshd insists on
    host_key, client_key = root / "host_ed25519", root / "client_ed25519"
    for key in (host_key, client_key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    (root / "authorized_keys").write_text((root / "client_ed25519.pub").read_text())
    os.chmod(root / "authorized_keys", 0o600)
    port = _free_port()
    config = root / "sshd_config"
    config.write_text(f"""\
Port {port}
ListenAddress 127.0.0.1
HostKey {host_key}
AuthorizedKeysFile {root / 'authorized_keys'}
PidFile {root / 'sshd.pid'}
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
StrictModes no
Subsystem sftp internal-sftp
LogLevel ERROR
""")
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 15
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                if s.recv(4).startswith(b"SSH"):
                    break
        except OSError:
            time.sleep(0.05)
    host_pub = " ".join((root / "host_ed25519.pub").read_text().split()[:2])
    return Sshd(port, getpass.getuser(), client_key, host_pub, proc, root)


def stop(server: Sshd) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        server.proc.kill()


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (the per-connection sshd processes of a listener)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def drop_connections(server: Sshd) -> int:
    """Cut every open SSH connection (kill the per-connection sshd processes and with them the
    remote commands), as a board's network going away does; the listener stays up."""
    pids = _children(server.proc.pid)
    for pid in pids:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    return len(pids)


def restart(server: Sshd) -> None:
    """Start the server again on the same port, config and host key (a board that rebooted)."""
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(server.root / "sshd_config")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 15
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=0.5) as s:
                if s.recv(4).startswith(b"SSH"):
                    break
        except OSError:
            time.sleep(0.05)
    server.proc = proc
