"""An ADB wire-protocol peer on 127.0.0.1 for tests: the device side of what adb-shell speaks.

It implements the transport protocol of ``adbd`` (CNXN / AUTH / OPEN / OKAY / WRTE / CLSE,
24-byte little-endian headers with checksum and magic), RSA authentication (AUTH TOKEN →
SIGNATURE verified against the authorized public keys in Android's binary key format →
RSAPUBLICKEY when no key signs, answered only for authorized keys, as a phone whose user
has not tapped "Allow" never answers), the ``shell:`` service (legacy v1: the command runs in
``sh -c``, stdout and stderr merged, streamed as WRTE packets, CLSE when it exits or kills it
when the host closes the stream) and the ``sync:`` service (SEND/DATA/DONE, RECV, STAT, QUIT).

Commands run in a sandbox directory: the device paths ``/data/local/tmp`` and ``/sys`` are
mapped into it, and ``getprop``/``dumpsys`` are small stand-ins on the shell's PATH that read
files the test can change (battery temperature, thermal status, current and voltage). The
peer records every shell command and can drop the connection in the middle of a matching
command (a phone unplugged mid-benchmark).

What it does not do: shell protocol v2, USB, TLS pairing, ``reverse:``/``forward``. It is a
test double for the device side; the client side (adb-shell) under test is the real one.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from farm.registry.spec import DeviceSpec

A_CNXN, A_AUTH, A_OPEN, A_OKAY, A_CLSE, A_WRTE = (int.from_bytes(c, "little") for c in
                                                  (b"CNXN", b"AUTH", b"OPEN", b"OKAY", b"CLSE", b"WRTE"))
AUTH_TOKEN, AUTH_SIGNATURE, AUTH_RSAPUBLICKEY = 1, 2, 3
VERSION = 0x01000000
MAX_DATA = 256 * 1024
_SHA1_DIGESTINFO = bytes.fromhex("3021300906052b0e03021a05000414")
_PUBKEY_WORDS = 64  # 2048-bit keys


def _cmd(n: int) -> bytes:
    return n.to_bytes(4, "little")


def decode_android_pubkey(text: bytes) -> tuple[int, int]:
    """(n, e) from an ``adbkey.pub`` line: base64 of {len, n0inv, n[64], rr[64], e} + " user@host"."""
    blob = base64.b64decode(text.split()[0])
    words, _n0inv = struct.unpack_from("<II", blob, 0)
    if words != _PUBKEY_WORDS:
        raise ValueError(f"unsupported key size: {words} words")
    n = int.from_bytes(blob[8:8 + 4 * words], "little")
    (e,) = struct.unpack_from("<I", blob, 8 + 8 * words)
    return n, e


def verify_signature(pub: tuple[int, int], token: bytes, signature: bytes) -> bool:
    """RSA PKCS#1 v1.5 verification of a SHA-1-prehashed token (what adbd does with the token)."""
    n, e = pub
    k = (n.bit_length() + 7) // 8
    if len(signature) != k:
        return False
    em = pow(int.from_bytes(signature, "big"), e, n).to_bytes(k, "big")
    digest_info = _SHA1_DIGESTINFO + token
    expected = b"\x00\x01" + b"\xff" * (k - 3 - len(digest_info)) + b"\x00" + digest_info
    return em == expected


@dataclass
class Stream:
    local_id: int
    remote_id: int
    service: str
    proc: subprocess.Popen[bytes] | None = None
    sync_buf: bytearray = field(default_factory=bytearray)
    sync_file: object | None = None
    sync_path: str | None = None
    sync_mode: int = 0o644
    closed: bool = False


class AdbPeer:
    """One listening socket on 127.0.0.1; one handler thread per connection.

    ``root`` is the sandbox; ``authorized_keys`` the ``adbkey.pub`` files the "phone" has
    accepted (``accept_new_keys=True`` models tapping "Allow" on the phone)."""

    def __init__(self, root: Path, *, authorized_keys: tuple[Path, ...] = (), require_auth: bool = True,
                 accept_new_keys: bool = False, model: str = "Pixel 7", android: str = "14", sdk: str = "34") -> None:
        self.root = root
        self.require_auth = require_auth
        self.accept_new_keys = accept_new_keys
        self._keys: list[tuple[int, int]] = [decode_android_pubkey(p.read_bytes()) for p in authorized_keys]
        self.commands: list[str] = []
        self.pushed: list[str] = []  # device paths received over sync SEND
        self.connections = 0
        self.drop_rules: list[list[object]] = []  # [substring, remaining drops]
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(8)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._procs: list[subprocess.Popen[bytes]] = []
        self._lock = threading.Lock()
        self._setup_sandbox(model, android, sdk)
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ sandbox

    @property
    def tmp(self) -> Path:
        return self.root / "data" / "local" / "tmp"

    @property
    def battery(self) -> Path:
        return self.root / "sys" / "class" / "power_supply" / "battery"

    def _setup_sandbox(self, model: str, android: str, sdk: str) -> None:
        self.tmp.mkdir(parents=True, exist_ok=True)
        bin_dir = self.root / "bin"
        bin_dir.mkdir(exist_ok=True)
        props = {"ro.product.model": model, "ro.product.manufacturer": "Google", "ro.build.version.release": android,
                 "ro.build.version.sdk": sdk, "ro.product.cpu.abi": "arm64-v8a", "ro.soc.model": "GS201",
                 "ro.hardware": "panther"}
        (self.root / "props").write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        self.battery.mkdir(parents=True, exist_ok=True)
        self.set_battery(level=80, temp_c=31.2, status="Discharging", current_ua=-450000, voltage_uv=3950000)
        self.set_thermal_status(0)
        for cpu, khz in enumerate((1803000, 1803000, 2348000, 2850000)):
            d = self.root / "sys" / "devices" / "system" / "cpu" / f"cpu{cpu}" / "cpufreq"
            d.mkdir(parents=True, exist_ok=True)
            (d / "scaling_cur_freq").write_text(f"{khz}\n")
            (d / "cpuinfo_max_freq").write_text(f"{khz}\n")
        root = self.root
        (bin_dir / "getprop").write_text(
            f"#!/bin/sh\nif [ -z \"$1\" ]; then sed 's/^\\([^=]*\\)=\\(.*\\)$/[\\1]: [\\2]/' '{root}/props'; exit 0; fi\n"
            f"grep \"^$1=\" '{root}/props' | head -n 1 | cut -d= -f2-\n")
        # dumpsys battery prints what Android's BatteryService prints (temperature in tenths of °C,
        # voltage in mV); dumpsys thermalservice its "Thermal Status" line.
        (bin_dir / "dumpsys").write_text(f"""#!/bin/sh
B='{self.battery}'
case "$1" in
battery)
  echo "Current Battery Service state:"
  echo "  AC powered: false"
  echo "  USB powered: $(cat $B/usb_online)"
  echo "  Wireless powered: false"
  echo "  status: $(cat $B/status_code)"
  echo "  health: 2"
  echo "  present: true"
  echo "  level: $(cat $B/capacity)"
  echo "  scale: 100"
  echo "  voltage: $(( $(cat $B/voltage_now) / 1000 ))"
  echo "  temperature: $(cat $B/temp)"
  echo "  technology: Li-ion"
  ;;
thermalservice)
  echo "IsStatusOverride: false"
  echo "ThermalEventListeners:"
  echo "Thermal Status: $(cat '{root}/thermal_status')"
  ;;
*) echo "Can't find service: $1"; exit 1;;
esac
""")
        for p in bin_dir.iterdir():
            p.chmod(0o755)

    def set_battery(self, *, level: int | None = None, temp_c: float | None = None, status: str | None = None,
                    current_ua: int | None = None, voltage_uv: int | None = None, usb: bool | None = None) -> None:
        b = self.battery
        if level is not None:
            (b / "capacity").write_text(f"{level}\n")
        if temp_c is not None:
            (b / "temp").write_text(f"{round(temp_c * 10)}\n")
        if status is not None:
            (b / "status").write_text(f"{status}\n")
            code = {"Charging": 2, "Discharging": 3, "Not charging": 4, "Full": 5}.get(status, 1)
            (b / "status_code").write_text(f"{code}\n")
        if current_ua is not None:
            (b / "current_now").write_text(f"{current_ua}\n")
        if voltage_uv is not None:
            (b / "voltage_now").write_text(f"{voltage_uv}\n")
        if usb is not None or not (b / "usb_online").exists():
            (b / "usb_online").write_text("true\n" if usb else "false\n")

    def set_thermal_status(self, status: int) -> None:
        (self.root / "thermal_status").write_text(f"{status}\n")

    def map_path(self, device_path: str) -> str:
        """Device path → sandbox path (``/data/local/tmp`` and ``/sys`` live in the sandbox)."""
        for prefix in ("/data/local/tmp", "/sys"):
            if device_path == prefix or device_path.startswith(prefix + "/"):
                return str(self.root) + device_path
        return device_path

    def _map_command(self, command: str) -> str:
        return command.replace("/data/local/tmp", str(self.root) + "/data/local/tmp").replace(
            "/sys/", str(self.root) + "/sys/")

    def drop_connection_on(self, substring: str, times: int = 1) -> None:
        """Drop the TCP connection right after a shell command containing ``substring`` starts."""
        self.drop_rules.append([substring, times])

    # ------------------------------------------------------------------ connections

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self._conns.append(conn)
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _send(self, conn: socket.socket, wlock: threading.Lock, cmd: int, arg0: int, arg1: int, data: bytes = b"") -> None:
        header = struct.pack("<6I", cmd, arg0, arg1, len(data), sum(data) & 0xFFFFFFFF, cmd ^ 0xFFFFFFFF)
        with wlock:
            try:
                conn.sendall(header + data)
            except OSError:
                pass

    @staticmethod
    def _recv_exact(conn: socket.socket, n: int) -> bytes | None:
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = conn.recv(n - len(buf))
            except OSError:
                return None
            if not chunk:
                return None
            buf += chunk
        return bytes(buf)

    def _serve(self, conn: socket.socket) -> None:
        wlock = threading.Lock()
        streams: dict[int, Stream] = {}
        next_id = [1]
        authed = not self.require_auth
        token = os.urandom(20)
        banner = b"device::ro.product.name=panther;ro.product.model=" + self._prop("ro.product.model").encode() + \
            b";ro.product.device=panther;features=cmd,stat_v2\0"
        try:
            while not self._stop.is_set():
                header = self._recv_exact(conn, 24)
                if header is None:
                    return
                cmd, arg0, arg1, length, checksum, magic = struct.unpack("<6I", header)
                data = self._recv_exact(conn, length) if length else b""
                if data is None or magic != cmd ^ 0xFFFFFFFF:
                    return
                if cmd == A_CNXN:
                    if authed:
                        self._send(conn, wlock, A_CNXN, VERSION, MAX_DATA, banner)
                    else:
                        self._send(conn, wlock, A_AUTH, AUTH_TOKEN, 0, token)
                elif cmd == A_AUTH:
                    if arg0 == AUTH_SIGNATURE:
                        if any(verify_signature(k, token, data) for k in self._keys):
                            authed = True
                            self._send(conn, wlock, A_CNXN, VERSION, MAX_DATA, banner)
                        else:
                            token = os.urandom(20)
                            self._send(conn, wlock, A_AUTH, AUTH_TOKEN, 0, token)
                    elif arg0 == AUTH_RSAPUBLICKEY:
                        key = decode_android_pubkey(data.rstrip(b"\0"))
                        if key in self._keys or self.accept_new_keys:
                            self._keys.append(key)
                            authed = True
                            self._send(conn, wlock, A_CNXN, VERSION, MAX_DATA, banner)
                        # else: the "Allow USB debugging?" dialog is pending; a phone says nothing.
                elif not authed:
                    return
                elif cmd == A_OPEN:
                    local = next_id[0]
                    next_id[0] += 1
                    s = Stream(local, arg0, data.rstrip(b"\0").decode("utf-8", "replace"))
                    streams[local] = s
                    self._send(conn, wlock, A_OKAY, local, arg0)
                    self._open(conn, wlock, s)
                elif cmd == A_WRTE:
                    s = streams.get(arg1)
                    if s is None:
                        continue
                    self._send(conn, wlock, A_OKAY, s.local_id, s.remote_id)
                    if s.service == "sync:":
                        self._sync(conn, wlock, s, data)
                    elif s.proc is not None and s.proc.stdin is not None:
                        try:
                            s.proc.stdin.write(data)
                            s.proc.stdin.flush()
                        except OSError:
                            pass
                elif cmd == A_CLSE:
                    s = streams.pop(arg1, None)
                    if s is not None and not s.closed:
                        s.closed = True
                        self._kill(s.proc)
                        self._send(conn, wlock, A_CLSE, s.local_id, s.remote_id)
                # OKAY from the host: flow control we do not need.
        finally:
            for s in streams.values():
                self._kill(s.proc)
            try:
                conn.close()
            except OSError:
                pass

    def _prop(self, key: str) -> str:
        for line in (self.root / "props").read_text().splitlines():
            if line.startswith(key + "="):
                return line.split("=", 1)[1]
        return ""

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes] | None) -> None:
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()

    # ------------------------------------------------------------------ services

    def _open(self, conn: socket.socket, wlock: threading.Lock, s: Stream) -> None:
        if s.service.startswith("shell:"):
            command = s.service[len("shell:"):]
            self.commands.append(command)
            env = dict(os.environ) | {"PATH": f"{self.root / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
                                      "HWFARM_ADBD_ROOT": str(self.root)}
            proc = subprocess.Popen(["sh", "-c", self._map_command(command)], cwd=self.tmp, env=env,
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            s.proc = proc
            with self._lock:
                self._procs.append(proc)
            threading.Thread(target=self._pump, args=(conn, wlock, s), daemon=True).start()
            for rule in self.drop_rules:
                if rule[0] in command and int(rule[1]) > 0:  # type: ignore[call-overload]
                    rule[1] = int(rule[1]) - 1  # type: ignore[call-overload]
                    threading.Timer(0.3, self._drop, args=(conn, s)).start()
                    break
        elif s.service == "sync:":
            pass
        else:
            self._send(conn, wlock, A_CLSE, s.local_id, s.remote_id)

    def _drop(self, conn: socket.socket, s: Stream) -> None:
        self._kill(s.proc)
        try:
            conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        conn.close()

    def _pump(self, conn: socket.socket, wlock: threading.Lock, s: Stream) -> None:
        assert s.proc is not None and s.proc.stdout is not None
        fd = s.proc.stdout.fileno()
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            if not s.closed:
                self._send(conn, wlock, A_WRTE, s.local_id, s.remote_id, chunk)
        s.proc.wait()
        if not s.closed:
            s.closed = True
            self._send(conn, wlock, A_CLSE, s.local_id, s.remote_id)

    def _sync_reply(self, conn: socket.socket, wlock: threading.Lock, s: Stream, payload: bytes) -> None:
        self._send(conn, wlock, A_WRTE, s.local_id, s.remote_id, payload)

    def _sync(self, conn: socket.socket, wlock: threading.Lock, s: Stream, data: bytes) -> None:
        s.sync_buf += data
        while True:
            buf = s.sync_buf
            if len(buf) < 8:
                return
            ident, size = buf[:4], struct.unpack("<I", buf[4:8])[0]
            if ident in (b"DONE", b"QUIT"):
                body, consumed = b"", 8
            else:
                if len(buf) < 8 + size:
                    return
                body, consumed = bytes(buf[8:8 + size]), 8 + size
            del s.sync_buf[:consumed]
            if ident == b"SEND":
                path, _, mode = body.decode().rpartition(",")
                self.pushed.append(path)
                s.sync_path, s.sync_mode = self.map_path(path), int(mode) & 0o7777
                Path(s.sync_path).parent.mkdir(parents=True, exist_ok=True)
                s.sync_file = open(s.sync_path + ".sync-part", "wb")  # noqa: SIM115
            elif ident == b"DATA" and s.sync_file is not None:
                s.sync_file.write(body)  # type: ignore[attr-defined]
            elif ident == b"DONE" and s.sync_file is not None and s.sync_path is not None:
                s.sync_file.close()  # type: ignore[attr-defined]
                os.chmod(s.sync_path + ".sync-part", s.sync_mode or 0o644)
                os.replace(s.sync_path + ".sync-part", s.sync_path)
                s.sync_file = None
                self._sync_reply(conn, wlock, s, b"OKAY" + struct.pack("<I", 0))
            elif ident == b"STAT":
                p = self.map_path(body.decode())
                try:
                    st = os.stat(p)
                    reply = struct.pack("<4I", int.from_bytes(b"STAT", "little"), st.st_mode, st.st_size, int(st.st_mtime))
                except OSError:
                    reply = struct.pack("<4I", int.from_bytes(b"STAT", "little"), 0, 0, 0)
                self._sync_reply(conn, wlock, s, reply)
            elif ident == b"RECV":
                p = self.map_path(body.decode())
                try:
                    content = Path(p).read_bytes()
                except OSError as err:
                    msg = str(err).encode()
                    self._sync_reply(conn, wlock, s, b"FAIL" + struct.pack("<I", len(msg)) + msg)
                    continue
                out = bytearray()
                for i in range(0, len(content), 64 * 1024):
                    part = content[i:i + 64 * 1024]
                    out += b"DATA" + struct.pack("<I", len(part)) + part
                out += b"DONE" + struct.pack("<I", 0)
                self._sync_reply(conn, wlock, s, bytes(out))
            elif ident == b"QUIT":
                return

    # ------------------------------------------------------------------ lifecycle

    def live_processes(self) -> list[int]:
        with self._lock:
            return [p.pid for p in self._procs if p.poll() is None]

    def close(self) -> None:
        self._stop.set()
        try:
            self._sock.close()
        except OSError:
            pass
        with self._lock:
            conns, procs = list(self._conns), list(self._procs)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
                c.close()
            except OSError:
                pass
        for p in procs:
            self._kill(p)


# ---------------------------------------------------------------------------- benchmark_model stand-in

STANDIN = r'''#!{python}
"""benchmark_model stand-in for the ADB test peer (not the real tool).

Modes, from $HWFARM_ADBD_ROOT/standin.json:
  {{"mode": "run"}}      run the model with LiteRT's Python interpreter for the requested warm-up
                       and timed runs, and print the lines benchmark_model prints (real timings;
                       the op-profiling table splits the measured average evenly over the
                       model's ops, because the Python interpreter has no per-op timer);
  {{"mode": "golden", "golden": PATH, "rc": 0}}   print a captured real output;
  "sleep_s": N         sleep N seconds first (a run that hangs).
Every call appends its argv, pid and CPU affinity to $HWFARM_ADBD_ROOT/standin.log.
"""
import json, os, statistics, sys, time

root = os.environ.get("HWFARM_ADBD_ROOT", ".")
cfg_path = os.path.join(root, "standin.json")
cfg = json.load(open(cfg_path)) if os.path.exists(cfg_path) else {{"mode": "run"}}
with open(os.path.join(root, "standin.log"), "a") as log:
    log.write(json.dumps({{"argv": sys.argv[1:], "pid": os.getpid(),
                          "affinity": sorted(os.sched_getaffinity(0))}}) + "\n")
if cfg.get("sleep_s"):
    time.sleep(float(cfg["sleep_s"]))
if cfg.get("mode") == "golden":
    sys.stdout.write(open(cfg["golden"]).read())
    sys.exit(int(cfg.get("rc", 0)))

flags = {{}}
for a in sys.argv[1:]:
    if a.startswith("--") and "=" in a:
        k, v = a[2:].split("=", 1)
        flags[k] = v
graph = flags.get("graph", "")
threads = int(flags.get("num_threads", "1"))
warmup = int(flags.get("warmup_runs", "1"))
runs = int(flags.get("num_runs", "50"))
max_secs = float(flags.get("max_secs", "150"))
prof = flags.get("enable_op_profiling", "false") in ("true", "1")
print("INFO: STARTING!")
print("INFO: Log parameter values verbosely: [0]")
print(f"INFO: Min num runs: [{{runs}}]")
print(f"INFO: Num threads: [{{threads}}]")
print(f"INFO: Min warmup runs: [{{warmup}}]")
print(f"INFO: Graph: [{{graph}}]")
print(f"INFO: Enable op profiling: [{{int(prof)}}]")
for name in ("use_gpu", "use_nnapi"):
    if flags.get(name) in ("true", "1"):
        print(f"INFO: Use {{name[4:]}}: [1]")
        print(f"ERROR: {{name[4:].upper()}} delegate is not available on this host.")
        print(f"Failed to apply {{name[4:].upper()}} delegate.")
        print("Benchmarking failed.")
        sys.exit(1)
if "external_delegate_path" in flags and not os.path.exists(flags["external_delegate_path"]):
    print(f"ERROR: Could not load delegate library {{flags['external_delegate_path']}}")
    print("Failed to create external delegate.")
    print("Benchmarking failed.")
    sys.exit(1)
print(f"INFO: Loaded model {{graph}}")
try:
    from ai_edge_litert.interpreter import Interpreter
    import numpy as np
    t0 = time.perf_counter()
    it = Interpreter(model_path=graph, num_threads=threads)
    it.allocate_tensors()
    init_us = (time.perf_counter() - t0) * 1e6
except Exception as err:  # what the real tool prints for a file it cannot read
    print("ERROR: The model is not a valid Flatbuffer buffer")
    print(f"ERROR: Failed to mmap model {{graph}}")
    sys.exit(1)
print("INFO: Initialized TensorFlow Lite runtime.")
if flags.get("use_xnnpack", "true") not in ("false", "0"):
    print("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.")
rng = np.random.default_rng(0)
for d in it.get_input_details():
    if np.issubdtype(d["dtype"], np.floating):
        x = rng.standard_normal(d["shape"]).astype(d["dtype"])
    else:
        x = rng.integers(-8, 8, size=d["shape"]).astype(d["dtype"])
    it.set_tensor(d["index"], x)
print(f"INFO: The input model file size (MB): {{os.path.getsize(graph) / 1e6:g}}")
print(f"INFO: Initialized session in {{init_us / 1000:.3f}}ms.")

def timed(n, secs):
    out, start = [], time.perf_counter()
    while len(out) < n and time.perf_counter() - start < secs:
        t = time.perf_counter(); it.invoke(); out.append((time.perf_counter() - t) * 1e6)
    return out

def line(xs):
    s = sorted(xs)
    q = lambda p: s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]
    std = statistics.pstdev(xs) if len(xs) > 1 else 0
    return (f"INFO: count={{len(xs)}} first={{xs[0]:.0f}} curr={{xs[-1]:.0f}} min={{s[0]:.0f}} max={{s[-1]:.0f}} "
            f"avg={{statistics.fmean(xs):g}} std={{std:.0f}} p5={{q(5):.0f}} median={{q(50):.0f}} p95={{q(95):.0f}}")

print(f"INFO: Running benchmark for at least {{warmup}} iterations and at least 0 seconds but terminate if exceeding {{max_secs:g}} seconds.")
w = timed(max(warmup, 1), max_secs)
print(line(w)); print()
print(f"INFO: Running benchmark for at least {{runs}} iterations and at least 0 seconds but terminate if exceeding {{max_secs:g}} seconds.")
r = timed(runs, max_secs)
print(line(r)); print()
print(f"INFO: Inference timings in us: Init: {{init_us:.0f}}, First inference: {{w[0]:.0f}}, Warmup (avg): {{statistics.fmean(w):g}}, Inference (avg): {{statistics.fmean(r):g}}")
print("INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.")
print("INFO: Memory footprint delta from the start of the tool (MB): init=1.5 overall=2.25")
if prof:
    ops = it._get_ops_details()
    avg_ms = statistics.fmean(r) / 1000 / max(len(ops), 1)
    print("Operator-wise Profiling Info for Regular Benchmark Runs:")
    print("============================== Run Order ==============================")
    print("\t             [node type]\t          [start]\t  [first]\t [avg ms]\t     [%]\t  [cdf%]\t  [mem KB]\t[times called]\t[Name]")
    for i, op in enumerate(ops):
        pct = 100.0 / len(ops)
        print(f"\t{{op['op_name']:>24}}\t{{i * avg_ms:17.3f}}\t{{avg_ms:9.3f}}\t{{avg_ms:9.3f}}\t{{pct:7.3f}}%\t{{pct * (i + 1):7.3f}}%\t{{0:10.3f}}\t{{1:9d}}\t[op{{i}}]:{{i}}")
    print()
    print(f"Number of nodes executed: {{len(ops)}}")
'''


def write_standin(path: Path) -> Path:
    """The stand-in script, with this interpreter (which has ai-edge-litert) as its shebang."""
    path.write_text(STANDIN.format(python=sys.executable))
    path.chmod(0o755)
    return path


def standin_config(peer: AdbPeer, **cfg: object) -> None:
    (peer.root / "standin.json").write_text(json.dumps(cfg))


def standin_calls(peer: AdbPeer) -> list[dict[str, object]]:
    log = peer.root / "standin.log"
    if not log.exists():
        return []
    return [json.loads(x) for x in log.read_text().splitlines() if x.strip()]


_KEYS: list[tuple[bytes, bytes]] = []


def make_client_key(path: Path) -> Path:
    """An ADB RSA key pair (``path`` and ``path.pub``) made with adb-shell's keygen (generated
    once per test process and copied: 2048-bit keygen is the slow part of starting a phone)."""
    if not _KEYS:
        from adb_shell.auth.keygen import keygen

        first = path.with_name(path.name + ".gen")
        keygen(str(first))
        _KEYS.append((first.read_bytes(), Path(f"{first}.pub").read_bytes()))
    private, public = _KEYS[0]
    path.write_bytes(private)
    path.chmod(0o600)
    Path(f"{path}.pub").write_bytes(public)
    return path


def available() -> bool:
    try:
        import adb_shell  # noqa: F401
    except ImportError:
        return False
    return shutil.which("sh") is not None


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def wait_until(pred, timeout_s: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def start_phone(root: Path, *, name: str = "phone", timeout_s: float = 60.0, **peer_kw: object) -> tuple[AdbPeer, DeviceSpec]:
    """A peer with an authorized client key and the stand-in benchmark_model, and the
    registry entry that reaches it (the stand-in is a local file: hwfarm pushes it)."""
    from farm.registry.spec import DeviceSpec

    root.mkdir(parents=True, exist_ok=True)
    key = make_client_key(root / "adbkey")
    peer = AdbPeer(root / "phone", authorized_keys=(Path(str(key) + ".pub"),), **peer_kw)  # type: ignore[arg-type]
    standin = write_standin(root / "benchmark_model")
    spec = DeviceSpec(name=name, url=f"adb://127.0.0.1:{peer.port}", key_file=str(key), benchmark_model=str(standin),
                      runtime="benchmark_model", threads=1, timeout_s=timeout_s)
    return peer, spec


def spec_text(spec: DeviceSpec, **extra: object) -> str:
    """The registry entry (YAML) for ``spec`` plus extra fields."""
    lines = [f"  - name: {spec.name}", f"    url: {spec.url}", f"    key_file: {spec.key_file}",
             f"    benchmark_model: {spec.benchmark_model}", "    runtime: benchmark_model",
             f"    timeout_s: {spec.timeout_s:g}"]
    lines += [f"    {k}: {json.dumps(v)}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"
