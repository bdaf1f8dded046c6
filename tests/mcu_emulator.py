"""A firmware emulator for MCU tests: the MLPerf Tiny / EEMBC runner protocol on a pseudo-terminal.

It behaves like the reference firmware (mlcommons/tiny ``benchmark/reference_submissions/*/
api/internally_implemented.cpp``, see :mod:`farm.devices.serial.eembc`): ``%``-terminated commands of
at most 80 characters, ``m-`` lines, ``m-ready`` after every command, ``e-[…]`` errors,
``name``, ``profile``, ``db load N`` / ``db HEX`` / ``db print``, ``infer N W``, ``results``,
``timestamp``. Its clock is a 32-bit microsecond counter (``m-lap-us-%lu``) that advances by
the simulator's latency for the flashed graph on :data:`EMULATOR_PROFILE`, with seeded
lognormal noise and interruptions from the profile's noise model. Inferences take no real
time (the emulator reports the simulated time; set ``realtime=True`` to also sleep it).

The host opens it by a stable symlink (like ``/dev/serial/by-id/…``) that points at the pty's
``/dev/pts/N``; a disconnect closes the pty, and a reconnect opens a new one and re-points the
link, as a USB CDC port re-enumerates.

Faults for tests (:class:`Fault`): ``garble`` (noise bytes in one response line), ``hang``
(stop answering), ``disconnect`` (close the port in the middle of a response; optionally come
back after ``reconnect_after_s``). "Flashing" is copying a model file into ``flash_dir``: the
emulator reboots with the newest file there (what a ``flash_command`` like ``cp {model} DIR/``
does in tests).
"""

from __future__ import annotations

import os
import select
import threading
import time
import tty
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from farm.ir.graph import Graph
from farm.sim.model import simulate
from farm.sim.profile import load_profile

__all__ = ["EMULATOR_PROFILE", "Fault", "McuEmulator"]

# The simulated profile whose latencies the emulated firmware reports: the Cortex-M7 MCU
# (int8 kernels; float32 graphs run at its float scale, as a float CMSIS build would).
EMULATOR_PROFILE = "cortex_m7"

CMD_SIZE = 80
FW_VERSION = "ULPMark for tinyML Firmware V0.0.1"  # EE_FW_VERSION of the reference firmware
MAX_DB_INPUT_SIZE = 64 * 1024


@dataclass
class Fault:
    """Misbehave on the ``skip``-th + 1 occurrence of ``command`` (its first word), ``times`` times."""

    kind: str  # garble | hang | disconnect
    command: str = "infer"
    skip: int = 0
    times: int = 1
    reconnect_after_s: float | None = None  # disconnect: come back on a new pty after this long


class McuEmulator:
    def __init__(self, graph: Graph, model_name: str, link: Path, *, profile: str = EMULATOR_PROFILE,
                 seed: int = 0, vendor: str = "hwfarm emulator", faults: list[Fault] | None = None,
                 flash_dir: Path | None = None, max_input_bytes: int = MAX_DB_INPUT_SIZE,
                 timer_start_us: int | None = None, realtime: bool = False) -> None:
        self.profile = load_profile(profile)
        self.vendor = vendor
        self.link = Path(link)
        self.faults = list(faults or [])
        self.flash_dir = flash_dir
        self.realtime = realtime
        self.max_input_bytes = max_input_bytes
        self._rng = np.random.default_rng(seed)
        self._timer_us = int(self._rng.integers(0, 2**32)) if timer_start_us is None else timer_start_us
        self._seen: dict[str, int] = {}
        self._flashed_mtime = 0
        self._flash(graph, model_name)
        self.commands: list[str] = []  # every command received, for assertions
        self.hung = False
        self._buf = bytearray()
        self._db = bytearray()
        self._db_size = 0
        self._master = -1
        self._slave = -1
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def _flash(self, graph: Graph, model_name: str) -> None:
        self.graph = graph
        self.model_name = model_name
        self.latency_us = simulate(graph, self.profile).latency_ms * 1e3
        self.input_bytes = int(np.ceil(graph.inputs[0].nbytes)) if graph.inputs else 0
        self.output_len = max(1, min(16, graph.outputs[0].numel if graph.outputs else 1))

    def _open_pty(self) -> None:
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no line discipline: a UART, not a terminal
        path = os.ttyname(self._slave)
        tmp = self.link.with_name(self.link.name + ".new")
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        tmp.symlink_to(path)
        os.replace(tmp, self.link)
        self._write("m-timestamp-mode-performance\r\nm-init-done\r\nm-ready\r\n")  # boot banner

    def _close_pty(self) -> None:
        for fd in (self._master, self._slave):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._master = self._slave = -1

    def start(self) -> McuEmulator:
        self._open_pty()
        self._thread = threading.Thread(target=self._serve, name="mcu-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._close_pty()

    def __enter__(self) -> McuEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"serial://{self.link}?baud=115200&timeout=2"

    # ------------------------------------------------------------------ wire

    def _write(self, text: str | bytes) -> None:
        data = text.encode() if isinstance(text, str) else text
        while data and self._master >= 0:
            try:
                n = os.write(self._master, data)
            except OSError:
                return
            data = data[n:]

    def _line(self, text: str) -> None:
        self._write(text + "\r\n")

    def _serve(self) -> None:
        while not self._stop.is_set():
            if self._master < 0:
                time.sleep(0.05)
                continue
            try:
                ready, _, _ = select.select([self._master], [], [], 0.05)
                if not ready:
                    continue
                data = os.read(self._master, 4096)
            except OSError:  # closed under us (a disconnect fault) or no reader yet
                time.sleep(0.05)
                continue
            for byte in data:
                c = chr(byte)
                if c == "%":
                    cmd = self._buf.decode("ascii", "replace")
                    self._buf.clear()
                    self._command(cmd)
                elif len(self._buf) < CMD_SIZE:
                    self._buf.append(byte)

    def _fault(self, word: str) -> Fault | None:
        self._seen[word] = self._seen.get(word, 0) + 1
        for f in self.faults:
            if f.command == word and f.times > 0 and self._seen[word] > f.skip:
                f.times -= 1
                return f
        return None

    def _maybe_reflash(self) -> None:
        if self.flash_dir is None:
            return
        files = [p for p in self.flash_dir.iterdir() if p.is_file()]
        if not files:
            return
        newest = max(files, key=lambda p: p.stat().st_mtime_ns)
        mtime = newest.stat().st_mtime_ns
        if mtime == self._flashed_mtime:
            return
        from farm.workload import load_workload

        self._flashed_mtime = mtime
        w = load_workload(newest)
        self._flash(w.graph, w.name)
        self._db.clear()
        self._db_size = 0

    # ------------------------------------------------------------------ firmware

    def _command(self, cmd: str) -> None:
        self.commands.append(cmd)
        if self.hung:
            return
        self._maybe_reflash()
        words = cmd.split()
        word = words[0] if words else ""
        fault = self._fault(word)
        if fault is not None and fault.kind == "hang":
            self.hung = True
            return
        lines = self._respond(words)
        if fault is not None and fault.kind == "garble":
            if not lines:
                lines = [""]
            i = max(0, len(lines) - 2)  # a line in the middle of the answer (the results/last lap)
            lines[i] = lines[i][:4] + "\x8f\xff" + lines[i][4:]
        if fault is not None and fault.kind == "disconnect":
            for line in lines[: len(lines) // 2]:
                self._line(line)
            self._close_pty()
            if fault.reconnect_after_s is not None:
                threading.Timer(fault.reconnect_after_s, self._open_pty).start()
            return
        for line in lines:
            if "\x8f" in line:
                self._write(line.encode("latin-1") + b"\r\n")
            else:
                self._line(line)
        self._line("m-ready")

    def _respond(self, words: list[str]) -> list[str]:
        if not words:
            return ["e-[Unknown command: ]"]
        w0 = words[0]
        if w0 == "name":
            return [f"m-name-dut-[{self.vendor}]"]
        if w0 == "timestamp":
            return [self._stamp()]
        if w0 == "profile":
            return [f"m-profile-[{FW_VERSION}]", f"m-model-[{self.model_name}]"]
        if w0 == "help":
            return [FW_VERSION, "", "help         : Print this information"]
        if w0 == "db":
            return self._db_cmd(words[1:])
        if w0 == "infer":
            return self._infer(words[1:])
        if w0 == "results":
            return [self._results()]
        return [f"e-[Unknown command: {w0}]"]

    def _stamp(self) -> str:
        return f"m-lap-us-{self._timer_us % 2**32}"

    def _db_cmd(self, args: list[str]) -> list[str]:
        if not args:
            return ["e-[Command 'db' requires a subcommand]"]
        if args[0] == "load":
            if len(args) < 2:
                return ["e-[Command 'db load' requires the # of bytes]"]
            n = int(args[1]) if args[1].isdigit() else 0
            if n == 0:
                return ["e-[Command 'db load' must be >0 bytes]"]
            self._db_size, self._db = n, bytearray()
            if n > self.max_input_bytes:
                return [f"Supplied buffer size {n} exceeds maximum of {self.max_input_bytes}"]
            return [f"m-[Expecting {n} bytes]"]
        if args[0] == "print":
            return [f"m-buffer-{'-'.join(f'{b:02x}' for b in self._db[i:i + 8])}" for i in range(0, len(self._db), 8)]
        hexes = args[0]
        if len(hexes) % 2:
            return ["e-[Insufficent number of hex digits]"]
        for i in range(0, len(hexes), 2):
            try:
                self._db.append(int(hexes[i:i + 2], 16))
            except ValueError:
                return [f"e-[Invalid hex digit '{hexes[i:i + 2]}']"]
            if len(self._db) == self._db_size:
                return ["m-load-done"]
        return []

    def _one_inference_us(self) -> float:
        noise = self.profile.noise
        factor = float(self._rng.lognormal(0.0, noise.cv)) if noise.cv > 0 else 1.0
        if noise.outlier_rate > 0 and self._rng.random() < noise.outlier_rate:
            factor *= float(self._rng.uniform(*noise.outlier_scale))
        return self.latency_us * factor

    def _run(self, n: int) -> None:
        total = sum(self._one_inference_us() for _ in range(n))
        self._timer_us += int(round(total))
        if self.realtime:
            time.sleep(total / 1e6)

    def _results(self) -> str:
        vals = self._rng.random(self.output_len)
        return "m-results-[" + ",".join(f"{v / vals.sum():0.3f}" for v in vals) + "]"

    def _infer(self, args: list[str]) -> list[str]:
        n, w = 1, 10  # the reference firmware's defaults
        if args:
            n = int(args[0]) if args[0].lstrip("-").isdigit() else 0
            if n <= 0:
                return ["e-[Inference iterations must be >0]"]
            if len(args) > 1:
                w = int(args[1]) if args[1].lstrip("-").isdigit() else -1
                if w < 0:
                    return ["e-[Inference warmup must be >=0]"]
        if len(self._db) != self.input_bytes:
            return [f"e-[Input db has {len(self._db)} bytes, expected {self.input_bytes}]"]
        out = [f"m-warmup-start-{w}"]
        self._run(w)
        out += ["m-warmup-done", f"m-infer-start-{n}", self._stamp()]
        self._run(n)
        out += [self._stamp(), "m-infer-done", self._results()]
        return out


def contract_spec(request: Any, tmp: Path) -> Any:
    """A registry entry for the device contract tests: an emulator that can be "flashed" with
    any model (``flash_command: cp {model} DIR/``), stopped when the test ends."""
    import onnx

    from farm.registry.spec import DeviceSpec
    from farm.workload import load_workload

    from .conftest import gemm_model

    boot = tmp / "boot.onnx"
    onnx.save(gemm_model(16), boot)
    flash = tmp / "mcu-flash"
    flash.mkdir()
    w = load_workload(boot)
    # a board with room for the contract's 256x256 float input (real MCUs have far less)
    emu = McuEmulator(w.graph, w.name, tmp / "ttyMCU", flash_dir=flash, max_input_bytes=1 << 20).start()
    request.addfinalizer(emu.stop)
    return DeviceSpec(name="mcu", url=emu.url, runtime="eembc", flash_command=f"cp {{model}} {flash}/")


def main(argv: list[str] | None = None) -> int:
    """Serve an emulated board until Ctrl-C: ``python tests/mcu_emulator.py MODEL --link /tmp/ttyMCU``."""
    import argparse
    import signal as _signal

    from farm.workload import load_workload

    ap = argparse.ArgumentParser(description="MLPerf Tiny / EEMBC firmware emulator on a pseudo-terminal")
    ap.add_argument("model", type=Path, help="the model 'flashed' on the board (ONNX or TFLite)")
    ap.add_argument("--link", type=Path, default=Path("/tmp/ttyMCU"), help="stable path to the pty (symlink)")
    ap.add_argument("--profile", default=EMULATOR_PROFILE, help="simulated profile that times the inferences")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--flash-dir", type=Path, help="copying a model here reflashes the board")
    ap.add_argument("--realtime", action="store_true", help="also take the simulated time to answer")
    args = ap.parse_args(argv)
    w = load_workload(args.model)
    emu = McuEmulator(w.graph, w.name, args.link, profile=args.profile, seed=args.seed, flash_dir=args.flash_dir,
                      realtime=args.realtime).start()
    stop = threading.Event()  # handlers first: a caller may stop us as soon as it reads the banner
    _signal.signal(_signal.SIGINT, lambda *_: stop.set())
    _signal.signal(_signal.SIGTERM, lambda *_: stop.set())
    print(f"emulating {w.name} ({emu.latency_us / 1e3:.3f} ms on {args.profile}) at {emu.url.split('?')[0]}"
          f"?baud=115200  (Ctrl-C stops)", flush=True)
    stop.wait()
    emu.stop()
    args.link.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":  # with hwfarm installed: .venv/bin/python tests/mcu_emulator.py MODEL
    raise SystemExit(main())
