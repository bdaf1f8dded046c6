"""Energy meters read by the agent on the device while the timed runs execute (stdlib only).

A meter is opened from the registry entry's ``energy:`` mapping (sent in the run request),
:meth:`Meter.check`ed before the model is loaded, started right before the first timed run,
stopped right after the last, and asked for the energy per inference:

- ``ina2xx`` (``path``: a hwmon dir, e.g. ``/sys/class/hwmon/hwmon2``): a thread samples
  ``power1_input`` (µW) — or ``in1_input`` (mV) × ``curr1_input`` (mA) where the chip exposes
  no power node (INA3221) — at ``sample_hz`` (default 50). Energy per inference = mean power
  over the timed runs × median latency: the board's whole draw on that rail, baseline included.
- ``rapl`` (``path``: a powercap zone, e.g. ``/sys/class/powercap/intel-rapl:0``): the
  ``energy_uj`` counter is read at start, at stop and at ``sample_hz`` (default 10) in between,
  so a wrap-around (at ``max_energy_range_uj``) between two reads is counted; energy per
  inference = Δenergy / timed runs (the whole package, other processes included).
- ``tegrastats`` (``path``: the executable, default ``tegrastats``): ``tegrastats --interval MS``
  runs during the timed runs; each line's board input rail (``VDD_IN`` on Orin/Xavier,
  ``POM_5V_IN`` on Nano/TX2, instantaneous mW) is a sample; mean power × median latency.
- ``command`` (``command``: argv, split like a shell would, never through one): the serial
  device's convention — the command prints a ready line, measures until SIGINT, then prints
  the joules it measured, optionally followed by its seconds. Mean power (J / window) ×
  median latency.

A meter that cannot be read raises :class:`MeterError` with a one-line reason; the agent
replies ``kind: "meter"`` and no measurement is stored without its energy.
"""

from __future__ import annotations

import os
import queue
import re
import shlex
import signal
import statistics
import subprocess
import threading
import time
from typing import Any, Callable

__all__ = ["MeterError", "Meter", "open_meter", "parse_tegrastats", "tegrastats_input_mw",
           "INPUT_RAILS", "METERS"]

METERS = ("ina2xx", "rapl", "tegrastats", "command")
METER_READY_S = 10.0  # command meter: time to print its ready line
METER_STOP_S = 10.0  # command meter: time to print joules after SIGINT


class MeterError(Exception):
    """The meter is missing, unreadable or produced nothing usable (one-line reason)."""


def _read_number(path: str) -> float:
    try:
        with open(path, encoding="ascii") as f:
            text = f.read().strip()
    except PermissionError:
        raise MeterError(f"{path} is not readable by this user (permission denied)") from None
    except OSError as err:
        raise MeterError(f"cannot read {path}: {err.strerror or err}") from None
    try:
        return float(text)
    except ValueError:
        raise MeterError(f"{path} holds {text[:40]!r}, not a number") from None


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().strip() or None
    except OSError:
        return None


class Meter:
    """Base: the protocol the agent drives. ``result`` returns ``{"energy_mj", "provenance"}``."""

    name = "?"

    def check(self) -> str:
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release threads / processes; safe to call at any time, also after a failure."""

    def result(self, n_runs: int, median_ms: float) -> dict[str, Any]:
        raise NotImplementedError


class _Sampler:
    """Calls ``read()`` at ``hz`` in a thread (plus once at start and once at stop)."""

    def __init__(self, read: Callable[[], float], hz: float) -> None:
        self._read = read
        self._period = 1.0 / hz
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.values: list[float] = []
        self.t_first: float | None = None
        self.t_last: float | None = None
        self.error: MeterError | None = None

    def _take(self) -> None:
        try:
            value = self._read()
        except MeterError as err:
            self.error = self.error or err
            return
        now = time.monotonic()
        if self.t_first is None:
            self.t_first = now
        self.t_last = now
        self.values.append(value)

    def _loop(self) -> None:
        while not self._stop.wait(self._period):
            self._take()
            if self.error is not None:
                return

    def start(self) -> None:
        self._take()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.error is None:
            self._take()
        if self.error is not None:
            raise self.error

    def cancel(self) -> None:
        """Stop sampling without a final read (cleanup after a failure)."""
        self._stop.set()

    def achieved_hz(self) -> float | None:
        if self.t_first is None or self.t_last is None or self.t_last <= self.t_first:
            return None
        return round((len(self.values) - 1) / (self.t_last - self.t_first), 2)


class _SampledMeter(Meter):
    """A meter read by a background sampler between start() and stop()."""

    sample_hz: float
    _sampler: _Sampler | None = None

    def _sample(self) -> float:
        raise NotImplementedError

    def start(self) -> None:
        self._sampler = _Sampler(self._sample, self.sample_hz)
        self._sampler.start()

    def stop(self) -> None:
        assert self._sampler is not None
        self._sampler.stop()

    def close(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()


class Ina2xxMeter(_SampledMeter):
    name = "ina2xx"

    def __init__(self, path: str, sample_hz: float) -> None:
        self.path = path
        self.sample_hz = sample_hz
        self._sampler: _Sampler | None = None
        self.source = ""

    def _sample(self) -> float:
        return self._read_mw()

    def _read_mw(self) -> float:
        if self.source == "power1_input":
            return _read_number(os.path.join(self.path, "power1_input")) / 1000.0  # µW -> mW
        mv = _read_number(os.path.join(self.path, "in1_input"))
        ma = _read_number(os.path.join(self.path, "curr1_input"))
        return mv * ma / 1000.0  # mV × mA = µW -> mW

    def check(self) -> str:
        if not os.path.isdir(self.path):
            raise MeterError(f"ina2xx meter path {self.path} does not exist (no such hwmon device)")
        if os.path.exists(os.path.join(self.path, "power1_input")):
            self.source = "power1_input"
        elif all(os.path.exists(os.path.join(self.path, f)) for f in ("in1_input", "curr1_input")):
            self.source = "in1_input*curr1_input"
        else:
            raise MeterError(f"ina2xx meter path {self.path} has neither power1_input nor in1_input + curr1_input")
        mw = self._read_mw()
        chip = _read_text(os.path.join(self.path, "name")) or "hwmon"
        return f"ina2xx {chip} at {self.path} ({self.source}): {mw:.1f} mW now"

    def result(self, n_runs: int, median_ms: float) -> dict[str, Any]:
        assert self._sampler is not None
        mean_mw = statistics.fmean(self._sampler.values)
        return {"energy_mj": mean_mw * median_ms / 1000.0, "provenance": {
            "meter": "ina2xx", "path": self.path, "source": self.source,
            "method": "mean rail power sampled during the timed runs x median latency "
                      "(the rail's whole draw, idle baseline included)",
            "sample_hz": self.sample_hz, "sample_hz_achieved": self._sampler.achieved_hz(),
            "n_samples": len(self._sampler.values), "mean_power_mw": mean_mw}}


class RaplMeter(_SampledMeter):
    name = "rapl"

    def __init__(self, path: str, sample_hz: float) -> None:
        self.path = path
        self.sample_hz = sample_hz
        self.max_range_uj = 0.0
        self.total_uj = 0.0
        self.wraps = 0
        self._prev: float | None = None
        self._sampler: _Sampler | None = None

    def _counter(self) -> float:
        return _read_number(os.path.join(self.path, "energy_uj"))

    def _sample(self) -> float:  # reads the counter and accumulates across wrap-arounds
        now = self._counter()
        if self._prev is not None:
            delta = now - self._prev
            if delta < 0:  # the counter wrapped at max_energy_range_uj
                delta += self.max_range_uj
                self.wraps += 1
            self.total_uj += delta
        self._prev = now
        return now

    def check(self) -> str:
        if not os.path.isdir(self.path):
            raise MeterError(f"rapl meter path {self.path} does not exist (no RAPL powercap zone on this "
                             "machine: VMs and non-Intel/AMD CPUs usually have none)")
        self.max_range_uj = _read_number(os.path.join(self.path, "max_energy_range_uj"))
        if self.max_range_uj <= 0:
            raise MeterError(f"{self.path}/max_energy_range_uj is {self.max_range_uj:g}, not a counter range")
        try:
            self._counter()
        except MeterError as err:
            if "permission denied" in str(err):
                raise MeterError(f"{err}; since Linux 5.10 energy_uj is root-only (run the agent as root or "
                                 "grant read access, e.g. a udev rule)") from None
            raise
        zone = _read_text(os.path.join(self.path, "name")) or "zone"
        return f"rapl {zone} at {self.path}: energy_uj readable, wraps at {self.max_range_uj:.0f} uJ"

    def start(self) -> None:
        self.total_uj, self.wraps, self._prev = 0.0, 0, None
        super().start()

    def result(self, n_runs: int, median_ms: float) -> dict[str, Any]:
        assert self._sampler is not None
        return {"energy_mj": self.total_uj / 1000.0 / max(n_runs, 1), "provenance": {
            "meter": "rapl", "path": self.path,
            "method": "energy_uj counter difference over the timed runs / runs (wrap-around via "
                      "max_energy_range_uj; the whole zone, other processes included)",
            "sample_hz": self.sample_hz, "sample_hz_achieved": self._sampler.achieved_hz(),
            "n_samples": len(self._sampler.values), "energy_uj_total": self.total_uj,
            "wraps": self.wraps, "runs": n_runs}}


# tegrastats rails: "POM_5V_IN 2132/2189" (JetPack 4: Nano, TX2) or "VDD_IN 5251mW/8535mW"
# (JetPack 5/6: Xavier, Orin); instantaneous/average milliwatts. Format: NVIDIA Jetson Linux
# Developer Guide, "tegrastats Utility" (https://docs.nvidia.com/jetson/archives/r35.2.1/
# DeveloperGuide/text/AT/JetsonLinuxDevelopmentTools/TegrastatsUtility.html).
_RAIL = re.compile(r"\b((?:VDD|POM|VIN)_[A-Z0-9_]+) (\d+(?:\.\d+)?)(?:mW)?/(\d+(?:\.\d+)?)(?:mW)?\b")
INPUT_RAILS = ("VDD_IN", "POM_5V_IN", "VIN_SYS_5V0")  # the board's total input, best first


def parse_tegrastats(line: str) -> dict[str, tuple[float, float]]:
    """Power rails of one tegrastats line: ``{rail: (instant_mw, average_mw)}``."""
    return {m.group(1): (float(m.group(2)), float(m.group(3))) for m in _RAIL.finditer(line)}


def tegrastats_input_mw(line: str) -> tuple[str, float] | None:
    """The board input rail and its instantaneous mW, or None when the line has none."""
    rails = parse_tegrastats(line)
    for name in INPUT_RAILS:
        if name in rails:
            return name, rails[name][0]
    return None


class TegrastatsMeter(Meter):
    name = "tegrastats"

    def __init__(self, exe: str, sample_hz: float) -> None:
        self.exe = exe
        self.sample_hz = sample_hz
        self.interval_ms = max(1, round(1000.0 / sample_hz))
        self._proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[tuple[float, str] | None] = queue.Queue()
        self._t0 = self._t1 = 0.0
        self.samples: list[float] = []
        self.rail: str | None = None

    def _spawn(self) -> subprocess.Popen[str]:
        try:
            proc = subprocess.Popen([self.exe, "--interval", str(self.interval_ms)], stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True)
        except OSError as err:
            raise MeterError(f"cannot run {self.exe}: {err.strerror or err} (not a Jetson, or tegrastats "
                             "not on PATH)") from None
        lines: queue.Queue[tuple[float, str] | None] = queue.Queue()
        self._lines = lines

        def pump() -> None:
            assert proc.stdout is not None
            for text in proc.stdout:
                lines.put((time.monotonic(), text))
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        return proc

    def _next(self, timeout_s: float) -> tuple[float, str]:
        try:
            item = self._lines.get(timeout=timeout_s)
        except queue.Empty:
            raise MeterError(f"{self.exe} printed nothing within {timeout_s:g} s") from None
        if item is None:
            raise MeterError(f"{self.exe} exited before printing a power line")
        return item

    def check(self) -> str:
        proc = self._spawn()
        try:
            _, line = self._next(max(5.0, 3 * self.interval_ms / 1000.0))
        finally:
            _stop_process(proc)
        found = tegrastats_input_mw(line)
        if found is None:
            raise MeterError(f"{self.exe} line has no input rail ({', '.join(INPUT_RAILS)}): {line.strip()[:80]!r}")
        return f"tegrastats {found[0]}: {found[1]:.0f} mW now"

    def start(self) -> None:
        self._proc = self._spawn()
        self._next(max(5.0, 3 * self.interval_ms / 1000.0))  # it is up; this line predates the runs
        self._t0 = time.monotonic()

    def stop(self) -> None:
        self._t1 = time.monotonic()
        got: list[tuple[float, str]] = []
        try:
            while True:
                try:
                    item = self._lines.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    break
                got.append(item)
            if not any(t >= self._t0 for t, _ in got):
                # A run shorter than the interval: the next line is the one that covers it.
                try:
                    item = self._lines.get(timeout=2 * self.interval_ms / 1000.0 + 1.0)
                except queue.Empty:
                    item = None
                if item is not None:
                    got.append(item)
        finally:
            self.close()
        for t, line in got:
            found = tegrastats_input_mw(line) if t >= self._t0 else None
            if found is not None:
                self.rail = found[0]
                self.samples.append(found[1])
        if not self.samples:
            raise MeterError(f"{self.exe} printed no input rail ({', '.join(INPUT_RAILS)}) during the run")

    def close(self) -> None:
        if self._proc is not None:
            _stop_process(self._proc)
            self._proc = None

    def result(self, n_runs: int, median_ms: float) -> dict[str, Any]:
        mean_mw = statistics.fmean(self.samples)
        span = self._t1 - self._t0
        return {"energy_mj": mean_mw * median_ms / 1000.0, "provenance": {
            "meter": "tegrastats", "path": self.exe, "rail": self.rail,
            "method": "mean board input power (tegrastats instantaneous mW) during the timed runs x median "
                      "latency (whole board, idle baseline included)",
            "sample_hz": self.sample_hz, "interval_ms": self.interval_ms,
            "sample_hz_achieved": round(len(self.samples) / span, 2) if span > 0 else None,
            "n_samples": len(self.samples), "mean_power_mw": mean_mw}}


def _sigint_default() -> None:
    """In the meter's child process: SIGINT back to its default. A process started in the
    background (``nohup hwfarm … &``) inherits SIGINT as ignored, and a shell cannot trap a
    signal ignored on entry, so the meter would never hear the end of its window."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _stop_process(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class CommandMeter(Meter):
    """An external meter program: started before the window, it prints one line when it is
    measuring; SIGINT ends the window and its last stdout line is the joules it measured,
    optionally followed by the seconds it measured them over (``0.5 J 0.25 s``, ``0.5 0.25``).

    The one implementation for agents (window = the timed runs) and for MCUs over serial
    (window = a firmware ``infer`` burst, see :mod:`farm.devices.serial.device`), which turn
    :attr:`power_mw` into energy per inference with their own per-inference time.
    """

    name = "command"

    def __init__(self, command: str) -> None:
        self.command = command
        try:
            self.argv = shlex.split(command)
        except ValueError as err:
            raise MeterError(f"cannot split energy command {command!r}: {err}") from None
        if not self.argv:
            raise MeterError("energy command is empty")
        self._what = f"energy meter command {command!r}"
        self._proc: subprocess.Popen[str] | None = None
        self._err: Any = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._t0 = self._t1 = 0.0
        self.joules = 0.0
        self.window_s = 0.0
        self.window_source = "host"
        self.returncode: int | None = None
        self.stderr_tail = ""

    def check(self) -> str:
        from shutil import which

        if which(self.argv[0]) is None:
            raise MeterError(f"{self._what}: {self.argv[0]!r} is not found or not executable")
        return f"command meter {self.command!r}"

    def start(self) -> None:
        import tempfile

        self._err = tempfile.TemporaryFile("w+")
        try:
            proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=self._err,
                                    stdin=subprocess.DEVNULL, text=True,
                                    preexec_fn=_sigint_default if os.name == "posix" else None)
        except OSError as err:
            self.close()
            raise MeterError(f"{self._what} cannot run: {err.strerror or err}") from None
        self._proc = proc
        lines: queue.Queue[str | None] = queue.Queue()
        self._lines = lines

        def pump() -> None:
            assert proc.stdout is not None
            for text in proc.stdout:
                lines.put(text.strip())
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        try:
            ready = lines.get(timeout=METER_READY_S)
        except queue.Empty:
            self.close()
            raise MeterError(f"{self._what} printed no ready line within {METER_READY_S:g} s") from None
        if ready is None:
            self.close()
            raise MeterError(f"{self._what} exited (code {self.returncode}) before its ready line")
        self._t0 = time.monotonic()

    def stop(self) -> None:
        proc = self._proc
        assert proc is not None
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        self._t1 = time.monotonic()
        out: list[str] = []
        try:
            while (line := self._lines.get(timeout=METER_STOP_S)) is not None:
                out.append(line)
        except queue.Empty:
            raise MeterError(f"{self._what} did not finish within {METER_STOP_S:g} s of SIGINT") from None
        finally:
            self.close()
        last = next((x for x in reversed(out) if x), "")
        try:
            values = [float(v) for v in last.replace("J", " ").replace("s", " ").split()[:2]]
        except ValueError:
            values = []
        if not values or values[0] < 0:
            raise MeterError(f"{self._what} printed no joules after SIGINT (exit {self.returncode}; last line "
                             f"{last[:80]!r}; stderr {self.stderr_tail!r})")
        self.joules = values[0]
        host_s = self._t1 - self._t0
        self.window_s, self.window_source = ((values[1], "meter") if len(values) > 1 and values[1] > 0
                                             else (host_s, "host"))
        if self.window_s <= 0:
            raise MeterError(f"{self._what}: zero-length window")

    @property
    def power_mw(self) -> float:
        """Average power over the last window (after :meth:`stop`)."""
        return self.joules / self.window_s * 1e3

    def close(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self.returncode = self._proc.wait()
            self._proc = None
        if self._err is not None:
            self._err.seek(0)
            self.stderr_tail = self._err.read().strip()[-160:]
            self._err.close()
            self._err = None

    def result(self, n_runs: int, median_ms: float) -> dict[str, Any]:
        power_mw = self.power_mw
        return {"energy_mj": power_mw * median_ms / 1000.0, "provenance": {
            "meter": "command", "command": self.command,
            "method": "command meter: joules over the timed runs / window x median latency",
            "joules": self.joules, "window_s": round(self.window_s, 6), "window_source": self.window_source,
            "sample_hz_achieved": None, "n_samples": 1, "mean_power_mw": power_mw}}


def open_meter(spec: dict[str, Any]) -> Meter:
    """A meter from the registry's ``energy:`` mapping (``meter``, ``path``, ``command``, ``sample_hz``)."""
    kind = spec.get("meter")
    hz = spec.get("sample_hz")
    if hz is not None and (not isinstance(hz, (int, float)) or hz <= 0):
        raise MeterError(f"energy sample_hz must be a positive number, got {hz!r}")
    if kind == "ina2xx" or kind == "rapl":
        path = spec.get("path")
        if not path:
            raise MeterError(f"energy meter {kind} needs path: (a {'hwmon' if kind == 'ina2xx' else 'powercap'} directory)")
        return Ina2xxMeter(str(path), float(hz or 50.0)) if kind == "ina2xx" else RaplMeter(str(path), float(hz or 10.0))
    if kind == "tegrastats":
        return TegrastatsMeter(str(spec.get("path") or "tegrastats"), float(hz or 10.0))
    if kind == "command":
        if not spec.get("command"):
            raise MeterError("energy meter command needs command: (a program that prints joules)")
        return CommandMeter(str(spec["command"]))
    raise MeterError(f"energy meter {kind!r} is not read by the agent (agent meters: {', '.join(METERS)})")
