"""Android phones over ADB (``adb://HOST:PORT`` over TCP, ``adb://usb/SERIAL`` over USB).

Transport: adb-shell (imported when a device opens) with an RSA key — the entry's
``key_file`` (``~/.android/adbkey`` reuses the key the adb command already authorized), else
``$XDG_CONFIG_HOME/hwfarm/adbkey`` (default ``~/.config/hwfarm/adbkey``), generated with
adb-shell's keygen the first time a device is contacted. Every adb-shell call passes its
timeouts explicitly (its default read timeout of 10 s would cut any benchmark longer than
that): ``transport_timeout_s`` for each socket wait, ``read_timeout_s`` and ``timeout_s`` for
the whole command, sized from the entry's ``timeout_s``.

Runner: LiteRT's ``benchmark_model`` on the phone. The entry's ``benchmark_model`` is a
device path, or a local file that is pushed once to ``/data/local/tmp/hwfarm/bin/`` under
its content hash; models are pushed to ``/data/local/tmp/hwfarm/models/<sha256>.tflite``.
Each run is one command::

    cd /data/local/tmp/hwfarm && timeout -s KILL T [taskset MASK] BENCHMARK_MODEL \\
        --graph=… --num_threads=… --warmup_runs=… --warmup_min_secs=… --num_runs=… \\
        --min_secs=0 --max_secs=… [--enable_op_profiling=true] [delegate flags]

with every argument ``shlex.quote``d. The device-side ``timeout`` kills the process at the
job deadline even if the host is gone; the host waits a little longer and then drops the
connection. The output is parsed by :mod:`farm.devices.adb.benchmark_model`; the delegate that
ran and the ops that fell back to the CPU go into the provenance and the per-op breakdown.

Delegates (``delegate:``): ``gpu`` (``--use_gpu=true``), ``nnapi`` (``--use_nnapi=true``),
``xnnpack`` (``--use_xnnpack=true``), ``cpu`` (``--use_xnnpack=false``: the builtin kernels),
or a device path to an external delegate ``.so`` (``--external_delegate_path``, with
``delegate_options`` joined as ``--external_delegate_options='k:v;k2:v2'``, e.g. Qualcomm QNN
``backend_type: htp``). For built-in delegates ``delegate_options`` become ``--k=v`` flags
(e.g. ``gpu_precision_loss_allowed: "true"``, ``nnapi_accelerator_name: qti-dsp``).

Before each measurement a thermal gate waits (at most ``min(timeout_s, 300)`` s) until the
battery is below ``thermal_gate_c`` (default 40 °C) and Android's thermal status is below
"moderate"; a phone that does not cool down fails the job (the scheduler retries later).

Energy (``energy: {meter: android-battery}``): a shell loop samples ``current_now`` and
``voltage_now`` (``sample_hz``, default 10) while the benchmark runs; energy per inference =
mean battery power × median latency (see :mod:`farm.devices.adb.meters`).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shlex
import time
from pathlib import Path
from typing import Any

from farm import __version__
from farm.agent.measure import LatencyStats
from farm.devices.adb.benchmark_model import (
    BenchmarkOutput,
    classify_failure,
    latency_from_output,
    parse_benchmark_output,
)
from farm.devices.adb.meters import battery_power, parse_samples
from farm.devices.base import Health
from farm.devices.caps import DeviceCaps, device_caps
from farm.errors import (
    DeviceError,
    DeviceTimeout,
    DeviceUnauthorized,
    DeviceUnavailable,
    InputError,
    ModelError,
    RuntimeFailure,
)
from farm.measurement import Measurement, Settings
from farm.registry.spec import DeviceSpec
from farm.workload import Workload

__all__ = ["AdbDevice", "AdbTransport", "DeviceUnauthorized", "default_key_path", "parse_device_facts",
           "benchmark_args", "DEVICE_ROOT"]

DEVICE_ROOT = "/data/local/tmp/hwfarm"
_RC = "hwfarm-rc="
_CONNECT_TIMEOUT_S = 10.0
_SHORT_S = 60.0
_BATTERY = "/sys/class/power_supply/battery"
_OPTION_KEY = re.compile(r"^[A-Za-z0-9_]+$")
_DEFAULT_GATE_C = 40.0


def default_key_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "hwfarm" / "adbkey"


def _adb_shell() -> Any:
    try:
        import adb_shell
    except ImportError:
        raise DeviceUnavailable("adb devices need adb-shell: pip install 'hwfarm[adb]'") from None
    return adb_shell


def _load_signer(path: Path) -> Any:
    """The RSA signer for ``path``; the key pair is generated there the first time."""
    _adb_shell()
    from adb_shell.auth.keygen import keygen, write_public_keyfile
    from adb_shell.auth.sign_cryptography import CryptographySigner

    try:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            keygen(str(path))
            os.chmod(path, 0o600)
        elif not Path(str(path) + ".pub").exists():
            write_public_keyfile(str(path), str(path) + ".pub")
        return CryptographySigner(str(path))
    except (OSError, ValueError) as err:
        raise DeviceError(f"ADB key {path}: cannot create or read it: {err}") from None


def _eof_safe_tcp(host: str, port: int) -> Any:
    """adb-shell's TCP transport, except that a closed socket is an error at once (the stock
    one returns b'' and spins until the read timeout, which here is the job deadline)."""
    from adb_shell.transport.tcp_transport import TcpTransport

    class _Tcp(TcpTransport):  # type: ignore[misc]
        def bulk_read(self, numbytes: int, transport_timeout_s: float | None) -> bytes:
            data: bytes = super().bulk_read(numbytes, transport_timeout_s)
            if not data and numbytes:
                raise ConnectionResetError("the device closed the connection")
            return data

    return _Tcp(host, port)


class AdbTransport:
    """One ADB connection: shell commands (exit status via an echoed marker: the v1 shell
    service has none), file push and stat over the sync service."""

    kind = "adb"

    def __init__(self, spec: DeviceSpec) -> None:
        _adb_shell()
        self.spec = spec
        url = spec.parsed_url
        self.usb = url.host == "usb"
        self.serial = url.path.strip("/") or None if self.usb else None
        self.host, self.port = url.host, url.port or 5555
        self.where = f"usb/{self.serial or '(first device)'}" if self.usb else f"{self.host}:{self.port}"
        self.key_path = Path(os.path.expanduser(spec.key_file)) if spec.key_file else default_key_path()
        self.auth_timeout_s = min(30.0, spec.timeout_s)
        self.state = "unknown"
        self._dev: Any = None

    def _err(self, what: str) -> str:
        return f"device {self.spec.name!r} ({self.where}): {what}"

    # ------------------------------------------------------------------ connection

    def connect(self) -> Any:
        if self._dev is not None and self._dev.available:
            return self._dev
        self.drop()
        _adb_shell()
        from adb_shell import exceptions as ex
        from adb_shell.adb_device import AdbDevice, AdbDeviceUsb

        signer = _load_signer(self.key_path)
        offered: list[bool] = []
        try:
            if self.usb:
                dev = AdbDeviceUsb(serial=self.serial, default_transport_timeout_s=_CONNECT_TIMEOUT_S)
            else:
                dev = AdbDevice(_eof_safe_tcp(self.host, self.port), default_transport_timeout_s=_CONNECT_TIMEOUT_S)
            dev.connect(rsa_keys=[signer], transport_timeout_s=_CONNECT_TIMEOUT_S, auth_timeout_s=self.auth_timeout_s,
                        read_timeout_s=_CONNECT_TIMEOUT_S, auth_callback=lambda _d: offered.append(True))
        except (ex.AdbTimeoutError, ex.TcpTimeoutException) as err:
            if offered:
                self.state = "unauthorized"
                raise DeviceUnauthorized(self._err(
                    f"unauthorized: the phone did not accept this computer's RSA key ({self.key_path}.pub) within "
                    f"{self.auth_timeout_s:g} s; unlock it, tap 'Allow USB debugging' (always allow), then retry")) from None
            self.state = "offline"
            raise DeviceError(self._err(f"offline: no answer ({err})")) from None
        except ex.DeviceAuthError as err:
            self.state = "unauthorized"
            raise DeviceUnauthorized(self._err(f"unauthorized: {err}")) from None
        except (OSError, ex.AdbConnectionError, ex.InvalidResponseError, ex.InvalidCommandError,
                ex.InvalidChecksumError, ex.UsbDeviceNotFoundError) as err:
            self.state = "offline"
            raise DeviceError(self._err(f"offline: cannot connect: {err}")) from None
        except ex.InvalidTransportError as err:  # USB needs adb-shell[usb] (libusb1)
            raise DeviceUnavailable(self._err(f"{err}")) from None
        self._dev = dev
        self.state = "online"
        return dev

    def drop(self) -> None:
        if self._dev is not None:
            try:
                self._dev.close()
            except Exception:  # noqa: BLE001 - closing a broken connection must not raise
                pass
        self._dev = None

    def _io(self, what: str, fn: Any, timeout_s: float) -> Any:
        """Run one adb-shell call; map its failures to hwfarm errors (a dropped connection is
        a DeviceError naming the command; the next call reconnects)."""
        from adb_shell import exceptions as ex

        dev = self.connect()
        try:
            return fn(dev)
        except (ex.AdbTimeoutError, ex.TcpTimeoutException) as err:
            self.drop()
            raise DeviceTimeout(self._err(f"{what} got no answer within {timeout_s:g} s ({err})")) from None
        except (OSError, ex.AdbConnectionError, ex.InvalidResponseError, ex.InvalidCommandError,
                ex.InvalidChecksumError) as err:
            self.drop()
            self.state = "offline"
            raise DeviceError(self._err(f"connection lost during {what}: {err or type(err).__name__}")) from None

    def shell(self, command: str, *, timeout_s: float = _SHORT_S) -> tuple[int, str]:
        """Run ``command`` with ``sh``; returns (exit status, stdout+stderr)."""
        wrapped = f"( {command} ); R=$?; echo; echo {_RC}$R"
        text = self._io(f"`{command[:80]}`", lambda d: d.shell(wrapped, transport_timeout_s=timeout_s,
                                                                 read_timeout_s=timeout_s, timeout_s=timeout_s,
                                                                 decode=False), timeout_s)
        out = text.decode("utf-8", "replace").replace("\r\n", "\n")
        idx = out.rfind("\n" + _RC)
        if idx < 0:
            raise DeviceError(self._err(f"`{command[:80]}` ended without an exit status (connection cut?)"))
        try:
            rc = int(out[idx + 1 + len(_RC):].split()[0])
        except (ValueError, IndexError):
            rc = -1
        return rc, out[:idx]  # without the newline our `echo` added

    def check_output(self, command: str, what: str, *, timeout_s: float = _SHORT_S) -> str:
        rc, out = self.shell(command, timeout_s=timeout_s)
        if rc != 0:
            raise DeviceError(self._err(f"{what} failed (exit {rc}): {out.strip()[-300:]}"))
        return out

    def push(self, data: bytes, device_path: str, *, mode: int = 0o644, timeout_s: float = 120.0) -> None:
        """Push to a temporary name, then rename: a half-pushed file is never used."""
        tmp = f"{device_path}.part-{os.getpid()}"
        self._io(f"push to {device_path}", lambda d: d.push(io.BytesIO(data), tmp, st_mode=0o100000 | mode,
                                                           transport_timeout_s=timeout_s, read_timeout_s=timeout_s),
                 timeout_s)
        self.check_output(f"mv -f {shlex.quote(tmp)} {shlex.quote(device_path)}", f"renaming {device_path}")

    def size(self, device_path: str) -> int | None:
        """File size via sync STAT (None when absent)."""
        mode, size, _ = self._io(f"stat {device_path}", lambda d: d.stat(device_path, transport_timeout_s=_SHORT_S,
                                                                          read_timeout_s=_SHORT_S), _SHORT_S)
        return int(size) if mode else None

    def close(self) -> None:
        self.drop()
        if self.state == "online":
            self.state = "unknown"


# ---------------------------------------------------------------------------- device facts

_FACTS_SCRIPT = (
    "for p in ro.product.model ro.product.manufacturer ro.build.version.release ro.build.version.sdk "
    "ro.product.cpu.abi ro.soc.model ro.hardware; do echo \"prop $p=$(getprop $p)\"; done; "
    "echo \"nproc $(nproc 2>/dev/null || grep -c ^processor /proc/cpuinfo)\"; "
    "dumpsys battery 2>/dev/null; "
    "dumpsys thermalservice 2>/dev/null | grep -i 'Thermal Status'; "
    "for f in /sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_cur_freq; do "
    "[ -r \"$f\" ] && echo \"freq $f $(cat \"$f\")\"; done; true"
)
_BATTERY_STATUS = {"1": "Unknown", "2": "Charging", "3": "Discharging", "4": "Not charging", "5": "Full"}


def parse_device_facts(text: str) -> dict[str, Any]:
    """Facts from the output of the check script (getprop lines, ``dumpsys battery``,
    the ``Thermal Status`` line, CPU frequencies). Pure; missing facts are absent."""
    facts: dict[str, Any] = {}
    props: dict[str, str] = {}
    freqs: dict[str, int] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("prop ") and "=" in line:
            k, v = line[5:].split("=", 1)
            if v.strip():
                props[k.strip()] = v.strip()
        elif line.startswith("nproc "):
            try:
                facts["cpu_count"] = int(line.split()[1])
            except (IndexError, ValueError):
                pass
        elif line.startswith("freq "):
            parts = line.split()
            m = re.search(r"cpu(\d+)/", parts[1]) if len(parts) >= 3 else None
            if m and parts[2].isdigit():
                freqs[f"cpu{m.group(1)}"] = int(parts[2]) // 1000
        elif line.lower().startswith("thermal status:"):
            try:
                facts["thermal_status"] = int(line.split(":", 1)[1].strip())
            except ValueError:
                pass
        elif ":" in line:
            k, v = (x.strip() for x in line.split(":", 1))
            if k == "level":
                facts["battery_level"] = _num(v)
            elif k == "temperature":
                t = _num(v)
                facts["battery_temperature_c"] = t / 10.0 if t is not None else None
            elif k == "status":
                facts["battery_status"] = _BATTERY_STATUS.get(v, v)
            elif k == "voltage":
                facts["battery_voltage_mv"] = _num(v)
            elif k in ("USB powered", "AC powered", "Wireless powered") and v == "true":
                facts["powered_by"] = k.split()[0]
    if props:
        facts["model"] = props.get("ro.product.model")
        facts["manufacturer"] = props.get("ro.product.manufacturer")
        facts["android"] = props.get("ro.build.version.release")
        facts["sdk"] = props.get("ro.build.version.sdk")
        facts["abi"] = props.get("ro.product.cpu.abi")
        facts["soc"] = props.get("ro.soc.model") or props.get("ro.hardware")
    if freqs:
        facts["cpu_freq_mhz"] = dict(sorted(freqs.items(), key=lambda kv: int(kv[0][3:])))
    return {k: v for k, v in facts.items() if v is not None}


def _num(v: str) -> float | None:
    try:
        return float(v)
    except ValueError:
        return None


_THERMAL_NAMES = {0: "none", 1: "light", 2: "moderate", 3: "severe", 4: "critical", 5: "emergency", 6: "shutdown"}


# ---------------------------------------------------------------------------- runner


def benchmark_args(spec: DeviceSpec, settings: Settings, graph: str, *, op_profiling: bool = True) -> list[str]:
    """The ``benchmark_model`` flags for one run (unquoted; the caller quotes each)."""
    p = settings.policy
    args = [f"--graph={graph}", f"--num_threads={settings.threads}", f"--warmup_runs={p.warmup}",
            f"--warmup_min_secs={p.warmup_s:g}", f"--num_runs={p.max_runs}", "--min_secs=0",
            f"--max_secs={p.max_time_s:g}"]
    if op_profiling:
        args.append("--enable_op_profiling=true")
    delegate = (spec.delegate or "").strip()
    options = dict(spec.delegate_options or {})
    for key in options:
        if not _OPTION_KEY.match(key):
            raise InputError(f"device {spec.name!r} field 'delegate_options': key {key!r} must be letters, digits, '_'")
    builtin = {"gpu": "--use_gpu=true", "nnapi": "--use_nnapi=true", "xnnpack": "--use_xnnpack=true",
               "cpu": "--use_xnnpack=false"}
    if not delegate:
        pass
    elif delegate.lower() in builtin:
        args.append(builtin[delegate.lower()])
        args += [f"--{k}={v}" for k, v in options.items()]
    elif "/" in delegate or delegate.endswith(".so"):
        args.append(f"--external_delegate_path={delegate}")
        if options:
            args.append("--external_delegate_options=" + ";".join(f"{k}:{v}" for k, v in options.items()))
    else:
        raise InputError(f"device {spec.name!r} field 'delegate': {delegate!r} is not gpu, nnapi, xnnpack, cpu "
                         "or a device path to an external delegate library")
    return args


def _affinity_mask(cpus: tuple[int, ...]) -> str:
    return format(sum(1 << c for c in set(cpus)), "x")


class AdbDevice:
    """A phone measured by ``benchmark_model`` over ADB. Not thread-safe (one worker)."""

    def __init__(self, spec: DeviceSpec, transport: AdbTransport | None = None) -> None:
        self.spec = spec
        self.transport = transport or AdbTransport(spec)
        self._bm_path: str | None = None
        self._bm_version: str | None = None
        self._facts: dict[str, Any] = {}

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def caps(self) -> DeviceCaps:
        return device_caps(self.spec)

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "kind": "adb", "url": self.spec.url, "runtime": "benchmark_model",
                "threads": self.spec.threads, "affinity": list(self.spec.affinity) if self.spec.affinity else None,
                "delegate": self.spec.delegate or "default", "simulated": False}

    # ------------------------------------------------------------------ check

    def facts(self) -> dict[str, Any]:
        out = self.transport.check_output(_FACTS_SCRIPT, "reading device facts")
        self._facts = parse_device_facts(out)
        return self._facts

    def check(self) -> Health:
        try:
            facts = self.facts()
        except DeviceUnauthorized as err:
            return Health(self.name, "unreachable", str(err), {"state": "unauthorized"}, state="unauthorized")
        except DeviceUnavailable as err:  # e.g. USB without adb-shell[usb]
            return Health(self.name, "unavailable", str(err), {"state": self.transport.state}, state="unknown")
        except DeviceError as err:
            return Health(self.name, "unreachable", str(err), {"state": self.transport.state}, state="offline")
        facts = {"state": "online", **facts}
        if self.spec.runtime not in (None, "benchmark_model"):
            return Health(self.name, "error", f"adb devices run benchmark_model, not {self.spec.runtime!r} "
                          "(set runtime: benchmark_model or leave it out)", facts)
        try:
            bm = self._benchmark_model()
            facts["benchmark_model"] = bm
        except DeviceError as err:
            return Health(self.name, "unavailable", str(err), facts)
        delegate = self.spec.delegate or ""
        if "/" in delegate:
            rc, _ = self.transport.shell(f"test -r {shlex.quote(delegate)}")
            if rc != 0:
                return Health(self.name, "unavailable", f"delegate library {delegate} is not on the device", facts)
        cpus = int(facts.get("cpu_count") or 0)
        if self.spec.affinity and cpus and max(self.spec.affinity) >= cpus:
            return Health(self.name, "error", f"affinity {list(self.spec.affinity)} names CPUs the phone lacks "
                          f"({cpus} CPUs)", facts)
        temp = facts.get("battery_temperature_c")
        detail = (f"{facts.get('manufacturer', '')} {facts.get('model', '?')}".strip()
                  + f", Android {facts.get('android', '?')}, {cpus or '?'} CPUs, battery {facts.get('battery_level', '?')}%"
                  + (f" {temp:g} °C" if isinstance(temp, float) else "")
                  + f", thermal {_THERMAL_NAMES.get(facts.get('thermal_status', -1), '?')}")
        return Health(self.name, "ok", detail, facts)

    # ------------------------------------------------------------------ staging

    def _benchmark_model(self) -> str:
        """Device path of benchmark_model, pushing a local binary once (content-hashed)."""
        if self._bm_path is not None:
            return self._bm_path
        configured = self.spec.benchmark_model or f"{DEVICE_ROOT}/bin/benchmark_model"
        local = Path(os.path.expanduser(configured))
        if self.spec.benchmark_model and local.is_file():
            data = local.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            path = f"{DEVICE_ROOT}/bin/benchmark_model-{digest[:16]}"
            self.transport.check_output(f"mkdir -p {shlex.quote(DEVICE_ROOT + '/bin')}", "creating the bin dir")
            if self.transport.size(path) != len(data):
                self.transport.push(data, path, mode=0o755)
            self._bm_version = f"sha256:{digest[:16]}"
        else:
            path = configured
            rc, out = self.transport.shell(f"test -x {shlex.quote(path)} && sha256sum {shlex.quote(path)} 2>/dev/null")
            if rc != 0:
                raise DeviceUnavailable(
                    f"device {self.name!r}: benchmark_model not found at {path} on the phone; set 'benchmark_model:' "
                    "to a device path, or to a local android_aarch64_benchmark_model binary to push it")
            digest = out.split()[0] if out.split() else ""
            self._bm_version = f"sha256:{digest[:16]}" if re.fullmatch(r"[0-9a-f]{64}", digest) else "unknown"
        self._bm_path = path
        return path

    def _stage(self, workload: Workload) -> str:
        path = f"{DEVICE_ROOT}/models/{workload.hash}.tflite"
        if self.transport.size(path) != len(workload.data):
            self.transport.check_output(f"mkdir -p {shlex.quote(DEVICE_ROOT + '/models')}", "creating the model cache")
            self.transport.push(workload.data, path)
        return path

    # ------------------------------------------------------------------ thermal gate

    def _thermal_gate(self) -> dict[str, Any]:
        limit = self.spec.thermal_gate_c if self.spec.thermal_gate_c is not None else _DEFAULT_GATE_C
        bound = min(self.spec.timeout_s, 300.0)
        poll = max(0.2, min(2.0, bound / 10))
        start = time.monotonic()
        while True:
            facts = self.facts()
            temp = facts.get("battery_temperature_c")
            status = facts.get("thermal_status")
            hot = (isinstance(temp, float) and temp >= limit) or (isinstance(status, int) and status >= 2)
            waited = time.monotonic() - start
            if not hot:
                return {"thermal_gate_c": limit, "thermal_wait_s": round(waited, 2), "battery_temperature_c": temp,
                        "thermal_status": status}
            if waited >= bound:
                raise DeviceError(f"device {self.name!r}: still hot after {waited:.0f} s (battery {temp} °C, thermal "
                                  f"status {_THERMAL_NAMES.get(status or 0, status)}; gate {limit:g} °C)")
            time.sleep(poll)

    # ------------------------------------------------------------------ run

    def run(self, workload: Workload, settings: Settings) -> Measurement:
        if workload.format != "tflite":
            raise ModelError(f"{workload.path or workload.name}: benchmark_model runs .tflite models, not "
                             f".{workload.format} (convert it first, e.g. with ai-edge-torch or the TFLite converter)")
        args = benchmark_args(self.spec, settings, "GRAPH")
        bm = self._benchmark_model()
        graph = self._stage(workload)
        args[0] = f"--graph={graph}"
        gate = self._thermal_gate()
        before = dict(self._facts)
        deadline = self.spec.timeout_s
        affinity = settings.affinity or self.spec.affinity
        parts = ["timeout", "-s", "KILL", f"{deadline:g}"]
        if affinity:
            parts += ["taskset", _affinity_mask(affinity)]
        parts += [bm, *args]
        bench = " ".join(shlex.quote(p) for p in parts)
        energy = self.spec.energy if self.spec.energy and self.spec.energy.meter == "android-battery" else None
        root = shlex.quote(DEVICE_ROOT)
        # The benchmark runs in the background so that its pid is on the phone (run.pid) for
        # _kill_leftovers; `wait` gives its exit status.
        run = f"{bench} 2>&1 & P=$!; echo $P > run.pid; wait $P; R=$?"
        if energy is not None:
            node = shlex.quote(energy.path or _BATTERY)
            period = 1.0 / (energy.sample_hz or 10.0)
            script = (f"cd {root} || exit 1; rm -f energy.txt; "
                      f"(while :; do echo \"hwfarm-e $(cat {node}/current_now) $(cat {node}/voltage_now)\"; "
                      f"sleep {period:g}; done) > energy.txt 2>/dev/null & S=$!; "
                      f"read T0 _ < /proc/uptime; {run}; read T1 _ < /proc/uptime; "
                      f"kill $S 2>/dev/null; echo \"hwfarm-uptime $T0 $T1\"; cat energy.txt; "
                      f"echo \"hwfarm-status $(cat {node}/status 2>/dev/null)\"; exit $R")
        else:
            script = f"cd {root} || exit 1; {run}; exit $R"
        started = time.monotonic()
        try:
            rc, text = self.transport.shell(script, timeout_s=deadline + 15.0)
        except DeviceTimeout as err:
            self._kill_leftovers(bm)
            raise DeviceTimeout(f"device {self.name!r}: benchmark ran past {deadline:g} s and was killed ({err})") from None
        wall_s = time.monotonic() - started
        out = parse_benchmark_output(text)
        if rc in (124, 137) and not out.ok:
            raise DeviceTimeout(f"device {self.name!r}: benchmark_model ran past {deadline:g} s and was killed "
                                f"(timeout -s KILL on the phone)")
        if rc == 127 and not out.ok:
            self._bm_path = None
            raise DeviceUnavailable(f"device {self.name!r}: {text.strip().splitlines()[-1] if text.strip() else 'command not found'}")
        if rc != 0 or not out.ok:
            reason = "; ".join(out.errors[-3:]) or (text.strip().splitlines()[-1] if text.strip() else f"exit {rc}")
            kind = classify_failure(out, text)
            if kind == "model":
                raise ModelError(f"{workload.path or workload.name}: benchmark_model rejected the model: {reason}")
            if kind == "delegate":
                raise RuntimeFailure(f"device {self.name!r}: delegate {self.spec.delegate!r} could not run the model: {reason}")
            raise RuntimeFailure(f"device {self.name!r}: benchmark_model failed (exit {rc}): {reason}")
        stats_d, method = latency_from_output(out)
        stats = LatencyStats(**stats_d)  # type: ignore[arg-type]
        runs = out.runs
        stop = "max_runs" if runs is None or out.requested_runs is None or runs.count >= settings.policy.max_runs \
            else "max_time"
        energy_mj, energy_prov = None, None
        if energy is not None:
            energy_mj, energy_prov = self._energy(text, stats.median_ms, energy.sample_hz or 10.0)
        delegate_prov, breakdown = self._delegation(out)
        peak_kb = None
        mem_source = None
        if out.memory_peak_mb is not None:
            peak_kb, mem_source = out.memory_peak_mb * 1024, "overall peak footprint (periodic monitoring)"
        elif out.memory_overall_mb is not None:
            peak_kb, mem_source = out.memory_overall_mb * 1024, "memory footprint delta from the start of the tool"
        provenance: dict[str, Any] = {
            "runtime": "benchmark_model", "runtime_version": self._bm_version, "benchmark_model_path": bm,
            "output_generation": out.generation, "op_profiling": True, "threads": settings.threads,
            "affinity": list(affinity) if affinity else None,
            "cpu_model": before.get("soc"), "cpu_count": before.get("cpu_count"), "python": None,
            "os": f"Android {before.get('android', '?')} (SDK {before.get('sdk', '?')})",
            "phone": f"{before.get('manufacturer', '')} {before.get('model', '')}".strip() or None,
            "abi": before.get("abi"), "cpu_freq_mhz": before.get("cpu_freq_mhz"),
            "battery_level": before.get("battery_level"), "battery_status": before.get("battery_status"),
            **gate,
            "device": self.name, "device_url": self.spec.url, "hwfarm_version": __version__, "simulated": False,
            "stop_reason": stop, "elapsed_s": round(wall_s, 3), "stats_method": method,
            "policy_applied": {"warmup_runs": settings.policy.warmup, "num_runs": settings.policy.max_runs,
                               "min_secs": 0, "max_secs": settings.policy.max_time_s,
                               "target_ci": "not applied: benchmark_model runs a fixed count"},
            "init_ms": _ms(out.init_us), "first_inference_ms": _ms(out.first_inference_us),
            "warmup_avg_ms": _ms(out.warmup_avg_us), "inference_avg_ms": _ms(out.inference_avg_us),
            "memory_source": mem_source, "delegate": delegate_prov,
        }
        if energy_prov is not None:
            provenance["energy"] = energy_prov
        return Measurement(
            device=self.name, workload=workload.hash, settings=settings, stats=stats, samples_ms=(), outliers=(),
            warmup_ms=(), stop_reason=stop, provenance=provenance, energy_mj=energy_mj, peak_memory_kb=peak_kb,
            breakdown=breakdown, created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )

    def _delegation(self, out: BenchmarkOutput) -> tuple[dict[str, Any], tuple[dict[str, Any], ...]]:
        """Which delegate ran (from the op table's delegate kernels and the tool's log) and which
        ops fell back to the CPU; the op table as the per-kernel breakdown."""
        d = out.delegate
        kernels = sorted({r.node_type for r in out.ops if r.is_delegate})
        cpu_ops = sorted({r.node_type for r in out.ops if not r.is_delegate})
        ran = kernels or list(d.applied)
        requested = self.spec.delegate or "default (XNNPACK in LiteRT ≥ 2.x)"
        coverage = d.coverage
        if coverage is None and out.ops:
            coverage = "full" if kernels and not cpu_ops else ("partial" if kernels else "none")
        fallback = sorted(set(d.unsupported_ops) | (set(cpu_ops) if kernels else set()))
        prov = {"requested": requested, "ran": ran or None, "created": list(d.created) or None,
                "coverage": coverage, "replaced_nodes": d.replaced_nodes, "total_nodes": d.total_nodes,
                "partitions": d.partitions, "cpu_fallback_ops": fallback or None,
                "evidence": "op-profiling table" if kernels else ("benchmark_model log" if (d.applied or d.created)
                                                                   else None)}
        breakdown = tuple(
            {"name": r.name, "ops": [r.node_type], "class": r.node_type, "latency_ms": r.avg_ms,
             "placement": f"delegate:{r.node_type}" if r.is_delegate else "cpu", "times_called": r.times_called,
             "percent": r.percent}
            for r in out.ops)
        return prov, breakdown

    def _energy(self, text: str, median_ms: float, sample_hz: float) -> tuple[float | None, dict[str, Any]]:
        samples = parse_samples(text)
        status = None
        t0 = t1 = None
        for line in text.splitlines():
            if line.startswith("hwfarm-status "):
                status = line.split(" ", 1)[1].strip() or None
            elif line.startswith("hwfarm-uptime "):
                try:
                    t0, t1 = (float(x) for x in line.split()[1:3])
                except ValueError:
                    pass
        power = battery_power(samples, status)
        span = (t1 - t0) if t0 is not None and t1 is not None else None
        prov = {"meter": "android-battery", "method": "mean(current_now × voltage_now) sampled on the phone during "
                "the benchmark × median latency; includes the phone's baseline draw",
                "sample_hz_requested": sample_hz,
                "sample_hz_achieved": round(power.n / span, 2) if span and span > 0 else None,
                "run_span_s": span, "battery_status": status, **power.to_provenance()}
        if power.power_w is None:
            return None, prov
        return power.power_w * median_ms, prov

    def _kill_leftovers(self, bm: str) -> None:
        """After a host-side timeout: reconnect and kill the benchmark by its pid (and its children)."""
        try:
            self.transport.drop()
            pidfile = shlex.quote(f"{DEVICE_ROOT}/run.pid")
            self.transport.shell(f"P=$(cat {pidfile} 2>/dev/null); [ -n \"$P\" ] && "
                                 "{ pkill -9 -P \"$P\"; kill -9 \"$P\"; }; true", timeout_s=15)
        except DeviceError:
            pass

    def close(self) -> None:
        self._bm_path = None
        self.transport.close()


def _ms(us: float | None) -> float | None:
    return us / 1000.0 if us is not None else None
