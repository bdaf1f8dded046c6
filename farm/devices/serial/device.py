"""MCUs over a serial line (``serial:///dev/ttyACM0?baud=115200``): firmware speaking the
EEMBC / MLPerf Tiny runner protocol (see :mod:`farm.devices.serial.eembc` for the protocol and the
sources it follows).

URL: ``serial://`` + a port path (``/dev/ttyACM0``, ``/dev/serial/by-id/…``, a pty), or
``serial://SCHEME/REST`` for a pyserial URL ``SCHEME://REST`` (``serial://socket/host:7000``
for a ser2net-style TCP bridge, ``serial://rfc2217/host:4000``, ``serial://loop/``).
Query: ``baud`` (default 115200), ``timeout`` (seconds one response may take beyond the
inferences it covers; default 10).

**Which model runs.** An MCU runs the one model its firmware was built with; hwfarm cannot
load a model onto it over the serial line. Before measuring, the device asks the firmware
(``profile%`` → ``m-model-[NAME]``) and accepts the workload only when NAME is the workload's
name (the model file's stem, case-insensitive, e.g. ``ic01.tflite`` on MLPerf Tiny ``ic01``
firmware) or a prefix of at least 12 hex digits of its sha256. Otherwise:

- with ``flash_command`` in the entry (e.g. ``"st-flash write build/{name}.bin 0x8000000"``
  or a script that builds and flashes), hwfarm runs it locally — no shell; ``{model}`` (a
  temp copy of the exact bytes, named ``NAME.FORMAT``), ``{name}`` and ``{sha256}`` are
  substituted per argument — reopens the port and asks again;
- without it the run is refused with a ModelError naming both models.

``firmware_model`` in the entry is the model the board is expected to carry: ``devices check``
fails when the firmware reports another one.

**Energy** (optional): ``energy: {meter: command, command: "…"}``. After the latency samples
hwfarm starts the command and waits for its first stdout line (any text: the meter says it is
measuring), sends ``infer K 0`` sized to keep the firmware computing for about
:data:`ENERGY_WINDOW_S` seconds, and interrupts the command (SIGINT) when ``m-infer-done``
arrives. The command's last stdout line is then the joules it measured, optionally followed
by the seconds it measured them over. Energy per inference = average power over the window ×
per-inference time of that window (mJ); the window is the meter's own seconds when printed,
else the host's time from the ready line to SIGINT. The method, the
command, the window, joules and inferences go into the provenance. (EEMBC's energy mode —
an IO manager relaying commands while a power monitor integrates between GPIO timestamps — is
not supported: it needs the interface board.)

**Measuring.** The input tensor (seeded random bytes of the graph's first input) is uploaded
with ``db load N`` / ``db HEX``. ``infer 1 0`` calibrates; ``infer 1 W`` warms up (W from the
warm-up policy); then each sample is one ``infer K 0`` exchange, timed on the device by its
``m-lap-us`` stamps: per-inference latency = lap / K, K chosen so a lap spans ≥ 1 ms of device
time (K = 1 for any model slower than that, so samples are then single inferences). Samples
continue under the usual stopping rule (``--target-ci``, ``--runs``, ``--max-time``, host wall
clock). Reliability: every read has a deadline; a response with line noise (non-printable
bytes, a missing marker, an ``e-[Unknown command…]`` echo of a corrupted command) is retried
up to 3 times after draining the line; a silent device is a DeviceTimeout; a vanished port
(USB unplugged, board reset) is a DeviceError and the next run reopens it — the scheduler
retries the job, and a run either returns a whole Measurement or nothing.
"""

from __future__ import annotations

import errno
import math
import os
import random
import shlex
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

from farm import __version__
from farm.agent.measure import converged, mad_outliers, summarize
from farm.agent.meters import CommandMeter, MeterError
from farm.devices.base import Health
from farm.devices.caps import DeviceCaps, device_caps
from farm.devices.serial import eembc
from farm.errors import DeviceError, DeviceTimeout, DeviceUnavailable, InputError, ModelError, RuntimeFailure
from farm.measurement import Measurement, Settings
from farm.registry.spec import DeviceSpec
from farm.workload import Workload

__all__ = ["SerialDevice", "SerialLink", "Firmware", "PortBusy", "port_url", "workload_matches", "input_bytes"]

T = TypeVar("T")

DEFAULT_BAUD = 115200
DEFAULT_TIMEOUT_S = 10.0
MIN_LAP_US = 1000  # a sample spans at least this much device time (timer resolution 1 µs → ≤ 0.1 %)
RETRIES = 3  # garbled responses: attempts per command
ENERGY_WINDOW_S = 1.0  # device time of the energy run


class PortBusy(DeviceError):
    """Another program holds the port (pyserial's exclusive lock)."""


def _serial() -> Any:
    try:
        import serial
    except ImportError:
        raise DeviceUnavailable("serial devices need pyserial: pip install 'hwfarm[serial]'") from None
    return serial


def _port_errors() -> tuple[type[BaseException], ...]:
    """What a port that vanished raises: pyserial's errors, OSError, and on POSIX termios.error
    (``flush()`` is ``tcdrain``, ``reset_input_buffer()`` is ``tcflush``: EIO once the other
    end is gone), which is not an OSError."""
    errors: tuple[type[BaseException], ...] = (_serial().SerialException, OSError)
    try:
        import termios
    except ImportError:  # Windows
        return errors
    return (*errors, termios.error)


def port_url(spec: DeviceSpec) -> str:
    """What pyserial opens: a path, or ``SCHEME://REST`` for ``serial://SCHEME/REST``."""
    url = spec.parsed_url
    if not url.host:
        return url.path
    return f"{url.host}://{url.path.lstrip('/')}"


def _query(spec: DeviceSpec) -> tuple[int, float]:
    q = spec.parsed_url.query
    try:
        baud = int(q.get("baud", DEFAULT_BAUD))
        timeout = float(q.get("timeout", DEFAULT_TIMEOUT_S))
    except ValueError:
        raise InputError(f"device {spec.name!r}: baud and timeout in {spec.url!r} must be numbers") from None
    if baud <= 0 or not timeout > 0:
        raise InputError(f"device {spec.name!r}: baud and timeout in {spec.url!r} must be > 0")
    return baud, timeout


class SerialLink:
    """One open port speaking the protocol: send a command, read its lines up to ``m-ready``.

    Every read has a deadline. A garbled response is retried (after draining what is still
    on the line); silence is a DeviceTimeout; a port that fails under us is a DeviceError and
    the link closes itself (the next exchange reopens it)."""

    def __init__(self, name: str, port: str, baud: int, *, timeout_s: float) -> None:
        self.name, self.port, self.baud, self.timeout_s = name, port, baud, timeout_s
        self._ser: Any = None
        self._framer = eembc.LineFramer()
        self.retried = 0  # garbled responses retried since open
        self.deadline: float | None = None  # time.monotonic() by which the current job must end

    @property
    def is_open(self) -> bool:
        return self._ser is not None

    def open(self) -> None:
        if self._ser is not None:
            return
        serial = _serial()
        failures: tuple[type[BaseException], ...] = (*_port_errors(), ValueError)
        try:
            # exclusive: an flock on the port, so a second program (or hwfarm process) cannot talk over us
            self._ser = serial.serial_for_url(self.port, baudrate=self.baud, timeout=0.05,
                                              write_timeout=self.timeout_s, exclusive=True)
            self._ser.reset_input_buffer()  # boot banner or a half answer from before
        except failures as err:
            if self._ser is not None:
                try:
                    self._ser.close()
                except Exception:  # noqa: BLE001 - it failed already; report the first error
                    pass
            self._ser = None
            busy = getattr(err, "errno", None) in (errno.EAGAIN, errno.EBUSY)
            raise (PortBusy if busy else DeviceError)(
                f"device {self.name!r}: cannot open serial port {self.port} at {self.baud} baud: "
                f"{_reason(err)}{' (in use by another program?)' if busy else ''}") from None
        self._framer.clear()

    def close(self) -> None:
        if self._ser is not None:
            try:
                self._ser.close()
            except Exception:  # noqa: BLE001 - closing a port that vanished must not mask the real error
                pass
        self._ser = None
        self._framer.clear()

    def _lost(self, command: str, err: BaseException) -> DeviceError:
        self.close()
        why = _reason(err)
        hint = "" if "disconnect" in why else " (disconnected?)"
        return DeviceError(f"device {self.name!r}: serial port {self.port} failed during `{_short(command)}`{hint}: "
                           f"{why}")

    def _read_lines(self, command: str, timeout_s: float) -> list[str]:
        """Lines up to and including ``m-ready``, or raise when the deadline passes."""
        deadline = time.monotonic() + timeout_s
        lines: list[str] = []
        while True:
            try:
                chunk = self._ser.read(max(1, self._ser.in_waiting))
            except _port_errors() as err:
                raise self._lost(command, err) from None
            for line in self._framer.feed(chunk):
                if line == eembc.READY:
                    return lines
                if line:
                    lines.append(line)
            if time.monotonic() > deadline:
                if lines or self._framer.pending:
                    raise eembc.GarbledResponse(f"{_short(command)}: no m-ready within {timeout_s:.3g} s after "
                                                f"{len(lines)} line(s)")
                raise DeviceTimeout(f"device {self.name!r}: no answer to `{_short(command)}` on {self.port} within "
                                    f"{timeout_s:.3g} s (firmware hung, wrong baud rate ({self.baud}), or not an "
                                    "EEMBC/MLPerf Tiny firmware?)")

    def _drain(self, quiet_s: float = 0.2, limit_s: float = 2.0) -> None:
        """Read and drop whatever is still arriving until the line is quiet."""
        end = time.monotonic() + limit_s
        last = time.monotonic()
        while time.monotonic() < end and time.monotonic() - last < quiet_s:
            try:
                if self._ser.read(max(1, self._ser.in_waiting)):
                    last = time.monotonic()
            except _port_errors() as err:
                raise self._lost("drain", err) from None
        self._framer.clear()

    def send(self, command: str, *, timeout_s: float | None = None) -> list[str]:
        """One exchange, no retry: write ``command%``, return the response lines (without m-ready)."""
        timeout = self.timeout_s if timeout_s is None else timeout_s
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise DeviceTimeout(f"device {self.name!r}: the job passed its deadline (timeout_s) before "
                                    f"`{_short(command)}`")
            timeout = min(timeout, left)
        self.open()
        try:
            self._ser.write(eembc.encode_command(command))
            self._ser.flush()
        except _port_errors() as err:
            raise self._lost(command, err) from None
        return self._read_lines(command, timeout)

    def exchange(self, command: str, parse: Callable[[list[str]], T], *, timeout_s: float | None = None,
                 retries: int = RETRIES) -> T:
        """Send ``command`` and parse its lines, retrying garbled responses."""
        last: eembc.GarbledResponse | None = None
        for _ in range(retries):
            try:
                return parse(self.send(command, timeout_s=timeout_s))
            except eembc.GarbledResponse as err:
                last = err
                self.retried += 1
                self._drain()
        raise RuntimeFailure(f"device {self.name!r}: {retries} garbled answers to `{_short(command)}` on {self.port} "
                             f"(line noise? check baud {self.baud} and the cable): {last}")


def _short(command: str) -> str:
    return command if len(command) <= 24 else command[:21] + "…"


def _reason(err: BaseException) -> str:
    code = getattr(err, "errno", None)
    if code is None and len(err.args) == 2 and isinstance(err.args[0], int):
        code = err.args[0]  # termios.error is (errno, message)
    if isinstance(code, int) and code > 0:
        return os.strerror(code)  # pyserial repeats the port in its own message
    return str(err).strip() or type(err).__name__


@dataclass(frozen=True)
class Firmware:
    """What the firmware says about itself (``name%`` and ``profile%``)."""

    name: str  # m-name-dut-[NAME]: vendor / board
    profile: str  # m-profile-[…]: firmware (benchmark) version
    model: str  # m-model-[…]: the model it was built with


def workload_matches(firmware_model: str, workload: Workload) -> bool:
    """The firmware's model is the workload: same name (file stem, case-insensitive) or a
    sha256 prefix of at least 12 hex digits."""
    m = firmware_model.strip().lower()
    if m == workload.name.lower():
        return True
    return len(m) >= 12 and all(c in "0123456789abcdef" for c in m) and workload.hash.startswith(m)


def input_bytes(workload: Workload) -> bytes:
    """Seeded random bytes the size of the graph's first input (what ``th_load_tensor`` reads)."""
    inputs = workload.graph.inputs
    if not inputs:
        raise ModelError(f"{workload.path or workload.name}: the graph has no inputs to upload")
    n = math.ceil(inputs[0].nbytes)
    if n <= 0:
        raise ModelError(f"{workload.path or workload.name}: input {inputs[0].name!r} has no bytes")
    return random.Random(int(workload.hash[:16], 16)).randbytes(n)


def _check_model_bytes(workload: Workload) -> None:
    """Refuse bytes no firmware build could come from, before flashing anything."""
    where = workload.path or workload.name
    if workload.format == "tflite":
        if len(workload.data) < 8 or workload.data[4:8] != b"TFL3":
            raise ModelError(f"{where}: not a TFLite flatbuffer (no TFL3 identifier); nothing flashed")
        return
    if workload.format == "onnx":
        import onnx
        from google.protobuf.message import DecodeError

        try:
            proto = onnx.load_model_from_string(workload.data)
        except (DecodeError, ValueError, RuntimeError) as err:
            raise ModelError(f"{where}: not a valid ONNX model ({err}); nothing flashed") from None
        if not proto.graph.node:
            raise ModelError(f"{where}: ONNX model has no nodes; nothing flashed")
        return
    raise ModelError(f"{where}: cannot flash a {workload.format!r} model")


class SerialDevice:
    def __init__(self, spec: DeviceSpec) -> None:
        _serial()  # a missing extra is a clear error when the device is opened, before any job is queued
        self.spec = spec
        self.port = port_url(spec)
        self.baud, self.timeout_s = _query(spec)
        if spec.energy is not None and (spec.energy.meter != "command" or not spec.energy.command):
            raise InputError(f"device {spec.name!r} field 'energy': serial devices read energy with "
                             f"meter: command and a command that prints joules (got meter: {spec.energy.meter})")
        for field, command in (("flash_command", spec.flash_command),
                               ("energy.command", spec.energy.command if spec.energy else None)):
            try:
                if command is not None and not shlex.split(command):
                    raise ValueError("it is empty")
            except ValueError as err:
                raise InputError(f"device {spec.name!r} field {field!r}: cannot split {command!r} into "
                                 f"arguments: {err}") from None
        self.link = SerialLink(spec.name, self.port, self.baud, timeout_s=self.timeout_s)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def caps(self) -> DeviceCaps:
        return device_caps(self.spec)

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "kind": "serial", "url": self.spec.url, "runtime": "eembc", "port": self.port,
                "baud": self.baud, "firmware_model": self.spec.firmware_model, "threads": self.spec.threads,
                "simulated": False}

    # ------------------------------------------------------------------ protocol steps

    def identify(self) -> Firmware:
        name = self.link.exchange("name", eembc.parse_name)
        profile, model = self.link.exchange("profile", eembc.parse_profile)
        return Firmware(name=name, profile=profile, model=model)

    def check(self) -> Health:
        try:
            fw = self.identify()
        except PortBusy as err:
            return Health(self.name, "busy", str(err), {"port": self.port, "baud": self.baud})
        except DeviceUnavailable as err:
            return Health(self.name, "unavailable", str(err), {"port": self.port, "baud": self.baud}, state="unknown")
        except DeviceError as err:
            return Health(self.name, "unreachable", str(err), {"port": self.port, "baud": self.baud})
        except eembc.ProtocolError as err:
            return Health(self.name, "error", f"device {self.name!r}: {err}", {"port": self.port, "baud": self.baud})
        finally:
            self.link.close()  # check must not hold the port (another process may measure on it)
        facts = {"port": self.port, "baud": self.baud, "firmware_name": fw.name, "firmware_profile": fw.profile,
                 "firmware_model": fw.model}
        want = self.spec.firmware_model
        if want and want.strip().lower() != fw.model.strip().lower():
            return Health(self.name, "error", f"firmware reports model {fw.model!r}, the registry expects {want!r} "
                          "(reflash the board or fix firmware_model)", facts)
        return Health(self.name, "ok", f"{fw.name}: {fw.profile}, model {fw.model} on {self.port} @ {self.baud}",
                      facts)

    def _flash(self, workload: Workload, deadline: float) -> None:
        assert self.spec.flash_command is not None
        _check_model_bytes(workload)
        self.link.close()  # the board resets while it is flashed
        with tempfile.TemporaryDirectory(prefix="hwfarm-flash-") as tmp:
            model = Path(tmp) / f"{workload.name}.{workload.format}"
            model.write_bytes(workload.data)
            subs = {"{model}": str(model), "{name}": workload.name, "{sha256}": workload.hash}
            argv = []
            for arg in shlex.split(self.spec.flash_command):
                for key, value in subs.items():
                    arg = arg.replace(key, value)
                argv.append(arg)
            try:
                proc = subprocess.run(argv, capture_output=True, text=True,
                                      timeout=max(1.0, deadline - time.monotonic()))
            except FileNotFoundError:
                raise DeviceError(f"device {self.name!r}: flash_command {argv[0]!r} not found") from None
            except subprocess.TimeoutExpired:
                raise DeviceTimeout(f"device {self.name!r}: flash_command for {workload.name!r} ran past the job "
                                    "deadline and was killed") from None
        if proc.returncode != 0:
            tail = (proc.stderr.strip() or proc.stdout.strip())[-300:]
            raise RuntimeFailure(f"device {self.name!r}: flash_command for {workload.name!r} failed "
                                 f"(exit {proc.returncode}): {tail}")

    def _infer(self, n: int, warmup: int, est_ms: float | None) -> eembc.InferResult:
        timeout = self.timeout_s + (3 * (n + warmup) * est_ms / 1e3 if est_ms else 0.0)
        return self.link.exchange(f"infer {n} {warmup}", lambda lines: eembc.parse_infer(lines, n, warmup),
                                  timeout_s=timeout)

    def _upload(self, data: bytes) -> None:
        commands = eembc.db_commands(data)
        last: eembc.GarbledResponse | None = None
        for _ in range(RETRIES):
            try:
                eembc.parse_db_load(self.link.send(commands[0]), len(data))
                for i, cmd in enumerate(commands[1:]):
                    eembc.parse_db_data(self.link.send(cmd), last=i == len(commands) - 2)
                return
            except eembc.GarbledResponse as err:  # `db HEX` is not idempotent: start over from `db load`
                self.link.retried += 1
                self.link._drain()
                last = err
        raise RuntimeFailure(f"device {self.name!r}: input upload garbled {RETRIES} times on {self.port}: {last}")

    # ------------------------------------------------------------------ the Device protocol

    def run(self, workload: Workload, settings: Settings) -> Measurement:
        self.link.deadline = time.monotonic() + self.spec.timeout_s
        try:
            return self._run(workload, settings)
        except eembc.InputTooLarge as err:
            raise ModelError(f"{workload.path or workload.name}: does not fit device {self.name!r}: {err}") from None
        except eembc.FirmwareError as err:
            raise RuntimeFailure(f"device {self.name!r}: {err}") from None
        finally:
            self.link.deadline = None

    def _run(self, workload: Workload, settings: Settings) -> Measurement:
        started = time.monotonic()
        deadline = self.link.deadline or started + self.spec.timeout_s
        self.link.retried = 0
        fw = self.identify()
        if not workload_matches(fw.model, workload):
            if not self.spec.flash_command:
                raise ModelError(
                    f"device {self.name!r}: its firmware runs model {fw.model!r}, not {workload.name!r} "
                    f"({workload.path or workload.hash[:12]}); profile the model the firmware was built with "
                    f"(a file named {fw.model}.*), reflash the board, or set flash_command")
            self._flash(workload, deadline)
            fw = self._identify_after_flash(deadline)
            if not workload_matches(fw.model, workload):
                raise ModelError(f"device {self.name!r}: after flash_command the firmware reports model "
                                 f"{fw.model!r}, not {workload.name!r}")
        data = input_bytes(workload)
        self._upload(data)
        policy = settings.policy
        # Calibrate with one inference, then warm up on the device for the policy's count and time.
        first = self._infer(1, 0, None)
        warm_ms = [first.per_inference_ms]
        est_ms = first.per_inference_ms
        if est_ms <= 0:  # a coarse timer: time a batch instead
            batch = self._infer(100, 0, None)
            est_ms = batch.per_inference_ms
        w = policy.warmup
        if policy.warmup_s > 0 and est_ms > 0:
            w = max(w, math.ceil(policy.warmup_s * 1e3 / est_ms))
        if est_ms > 0:
            w = min(w, max(1, int(policy.max_time_s / 4 * 1e3 / est_ms)))
        if w > 0:
            r = self._infer(1, w, est_ms)
            warm_ms.append(r.per_inference_ms)
        k = max(1, math.ceil(MIN_LAP_US / 1e3 / est_ms)) if est_ms > 0 else 1000
        samples: list[float] = []
        outputs = 0
        reason = "max_runs"
        t0 = time.monotonic()
        while len(samples) < policy.max_runs:
            if time.monotonic() > deadline:
                raise DeviceTimeout(f"device {self.name!r}: run of {workload.name!r} passed its deadline "
                                    f"({self.spec.timeout_s:g} s, timeout_s) and was stopped")
            r = self._infer(k, 0, est_ms)
            outputs = len(r.results)
            samples.append(r.lap_us / k / 1e3)
            elapsed = time.monotonic() - t0
            if elapsed >= policy.max_time_s:
                reason = "max_time"
                break
            if len(samples) % 5 == 0 and elapsed >= policy.min_time_s and converged(samples, policy):
                reason = "converged"
                break
        energy_mj, energy_prov = (self._energy(est_ms) if self.spec.energy is not None else (None, {}))
        if not samples or min(samples) <= 0:
            raise RuntimeFailure(f"device {self.name!r}: the firmware's timer did not advance (m-lap-us)")
        provenance = {
            "device": self.name, "device_url": self.spec.url, "simulated": False, "runtime": "eembc",
            "runtime_version": fw.profile, "threads": settings.threads, "affinity": None, "python": None, "os": None,
            "cpu_model": fw.name, "firmware_name": fw.name, "firmware_profile": fw.profile, "firmware_model": fw.model,
            "port": self.port, "baud": self.baud, "protocol": "EEMBC/MLPerf Tiny runner (m-lap-us device timer)",
            "inferences_per_sample": k, "input_bytes": len(data), "output_len": outputs,
            "garbled_retries": self.link.retried, "hwfarm_version": __version__, "stop_reason": reason,
            "elapsed_s": round(time.monotonic() - started, 3),
        } | energy_prov
        return Measurement(
            device=self.name, workload=workload.hash, settings=settings, stats=summarize(samples, policy.confidence),
            samples_ms=tuple(samples), outliers=tuple(mad_outliers(samples)), warmup_ms=tuple(warm_ms),
            stop_reason=reason, provenance=provenance, energy_mj=energy_mj,
            created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )

    def _energy(self, est_ms: float) -> tuple[float, dict[str, Any]]:
        """One metered window: the command meter (:class:`farm.agent.meters.CommandMeter`, the
        agents' too) measures while the firmware computes ~ENERGY_WINDOW_S; energy per
        inference is its average power × the firmware-timed per-inference time of that window."""
        assert self.spec.energy is not None and self.spec.energy.command
        command = self.spec.energy.command
        k = max(1, math.ceil(ENERGY_WINDOW_S * 1e3 / est_ms)) if est_ms > 0 else 1000
        try:
            meter = CommandMeter(command)
            meter.start()
            try:
                r = self._infer(k, 0, est_ms)
            except BaseException:
                meter.close()
                raise
            meter.stop()
        except MeterError as err:
            raise RuntimeFailure(f"device {self.name!r}: {err}") from None
        per_inference_s = r.lap_us / k / 1e6
        return meter.power_mw * per_inference_s, {
            "energy_method": "command meter: average power over an infer window x per-inference time",
            "energy_meter_command": command, "energy_joules": meter.joules, "energy_window_s": round(meter.window_s, 6),
            "energy_window_source": meter.window_source, "energy_inferences": k,
            "energy_avg_power_mw": meter.power_mw,
        }

    def _identify_after_flash(self, deadline: float) -> Firmware:
        """The board re-enumerates after flashing: retry opening for a few seconds."""
        end = min(deadline, time.monotonic() + max(self.timeout_s, 5.0))
        while True:
            try:
                self.link.open()
                return self.identify()
            except DeviceError:
                self.link.close()
                if time.monotonic() > end:
                    raise
                time.sleep(0.2)

    def close(self) -> None:
        self.link.close()
