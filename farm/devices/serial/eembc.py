"""The EEMBC / MLPerf Tiny runner protocol: framing and response parsing, pure functions.

What this follows (MLPerf Tiny, https://github.com/mlcommons/tiny):

- ``benchmark/reference_submissions/*/api/internally_implemented.{h,cpp}`` (the firmware side,
  derived from EEMBC's ``ee_lib``/``th_libs``): a command is ASCII text terminated by ``%``
  (``EE_CMD_TERMINATOR``), at most 80 characters (``EE_CMD_SIZE``; longer commands are
  truncated), tokens separated by spaces. Every command is answered by lines ending in
  ``\\r\\n`` and closed by ``m-ready``; errors are ``e-[...]`` lines. The commands:

  - ``name`` → ``m-name-dut-[VENDOR]`` (``EE_MSG_NAME``: ``m-name-%s-[%s]``)
  - ``profile`` → ``m-profile-[FW_VERSION]`` and ``m-model-[ic01]`` (the flashed model)
  - ``db load N`` → ``m-[Expecting N bytes]``; ``db HEX…`` fills the buffer, the chunk that
    completes it answers ``m-load-done``
  - ``infer N W`` → ``m-warmup-start-W``, ``m-warmup-done``, ``m-infer-start-N``, then the
    timestamps around the N timed inferences, ``m-infer-done`` and ``m-results-[…]``
  - ``timestamp`` → one timestamp line

  In performance mode a timestamp is ``m-lap-us-%lu`` (``EE_MSG_TIMESTAMP``): a free-running
  microsecond counter, 32 bits wide on Cortex-M (``%lu``), so a lap is taken modulo 2**32.
  In energy mode (``m-timestamp-mode-energy``) the firmware toggles a GPIO instead and prints
  no ``m-lap-us`` lines; the host cannot time it from the serial line.
- ``benchmark/runner/device_under_test.py`` (the host side): ``m-name-dut-[…]`` and
  ``m-(model|profile)-[…]`` matched by regex, inputs uploaded 31 bytes per ``db`` command
  (62 hex digits, well under 80 characters), ``infer N W`` always with W (the firmware
  default is 10 warm-ups), and a response read up to the ``m-ready`` line.

Nothing here does I/O: :class:`LineFramer` turns received bytes into lines, the ``parse_*``
functions turn the lines of one response into values. A response that does not have the
shape the protocol promises raises :class:`GarbledResponse` (the caller retries the command);
a well-formed ``e-[…]`` line raises :class:`FirmwareError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "TERMINATOR",
    "MAX_COMMAND_CHARS",
    "DB_CHUNK_BYTES",
    "READY",
    "ProtocolError",
    "GarbledResponse",
    "FirmwareError",
    "InputTooLarge",
    "LineFramer",
    "encode_command",
    "db_commands",
    "is_clean",
    "firmware_errors",
    "parse_name",
    "parse_profile",
    "parse_db_load",
    "parse_db_data",
    "InferResult",
    "parse_infer",
    "lap_us",
]

TERMINATOR = "%"
MAX_COMMAND_CHARS = 80  # EE_CMD_SIZE: the firmware truncates longer commands
DB_CHUNK_BYTES = 31  # bytes per `db HEX` command, as the MLPerf Tiny runner sends them
READY = "m-ready"
TIMER_WRAP_US = 2**32  # m-lap-us is a %lu counter: 32 bits on Cortex-M


class ProtocolError(Exception):
    """The device's answer cannot be used."""


class GarbledResponse(ProtocolError):
    """The answer does not have the protocol's shape (line noise, lost bytes): retry."""


class FirmwareError(ProtocolError):
    """The firmware answered a well-formed ``e-[...]`` error: retrying the same command is futile."""


class InputTooLarge(FirmwareError):
    """The model's input does not fit the firmware's input buffer: this model cannot run here."""


class LineFramer:
    """Bytes from the wire → lines. Lines end at ``\\n``; ``\\r`` and NUL bytes are dropped
    (firmware prints ``\\r\\n``; some UART bridges emit NULs at reset). Undecodable bytes become
    U+FFFD so a garbled line is visible as such (see :func:`is_clean`)."""

    def __init__(self, max_line: int = 4096) -> None:
        self._buf = bytearray()
        self._max_line = max_line

    def feed(self, data: bytes) -> list[str]:
        self._buf += data
        lines: list[str] = []
        while True:
            i = self._buf.find(b"\n")
            if i < 0:
                break
            raw = bytes(self._buf[:i])
            del self._buf[: i + 1]
            lines.append(raw.replace(b"\r", b"").replace(b"\0", b"").decode("utf-8", "replace"))
        if len(self._buf) > self._max_line:  # a line that never ends is noise, not a line
            lines.append(bytes(self._buf).replace(b"\r", b"").decode("utf-8", "replace"))
            self._buf.clear()
        return lines

    @property
    def pending(self) -> bytes:
        return bytes(self._buf)

    def clear(self) -> None:
        self._buf.clear()


def encode_command(command: str) -> bytes:
    """``name`` → ``b"name%"``. Refuses what the firmware would truncate or split."""
    if TERMINATOR in command or "\n" in command or "\r" in command:
        raise ValueError(f"command {command!r} contains a terminator")
    if len(command) > MAX_COMMAND_CHARS:
        raise ValueError(f"command {command[:20]!r}… is {len(command)} characters; the firmware keeps {MAX_COMMAND_CHARS}")
    if not command.isascii():
        raise ValueError(f"command {command!r} is not ASCII")
    return (command + TERMINATOR).encode("ascii")


def db_commands(data: bytes, chunk: int = DB_CHUNK_BYTES) -> list[str]:
    """The commands that upload ``data`` into the firmware's buffer: ``db load N`` then
    ``db HEX`` chunks of ``chunk`` bytes (lowercase hex, two digits per byte)."""
    if not data:
        raise ValueError("nothing to upload (db load needs > 0 bytes)")
    if not 1 <= chunk <= (MAX_COMMAND_CHARS - 3) // 2:
        raise ValueError(f"chunk of {chunk} bytes does not fit a {MAX_COMMAND_CHARS}-character command")
    return [f"db load {len(data)}"] + [f"db {data[i:i + chunk].hex()}" for i in range(0, len(data), chunk)]


_CLEAN = re.compile(r"^[\x20-\x7e]*$")


def is_clean(line: str) -> bool:
    """Printable ASCII only: anything else on a text protocol is line noise."""
    return bool(_CLEAN.match(line))


_ERR = re.compile(r"^e-\[(.*)\]$")


def firmware_errors(lines: list[str]) -> list[str]:
    return [m.group(1) for m in (_ERR.match(x) for x in lines) if m]


def _check(command: str, lines: list[str]) -> None:
    """Common checks: no noise, no firmware error."""
    bad = [x for x in lines if not is_clean(x)]
    if bad:
        raise GarbledResponse(f"{command}: garbled line {bad[0]!r}")
    errs = firmware_errors(lines)
    if errs:
        if any(e.startswith("Unknown command") for e in errs):
            # The firmware received something we did not send: the command was garbled on the way.
            raise GarbledResponse(f"{command}: firmware did not understand the command ({errs[0]})")
        raise FirmwareError(f"{command}: firmware error: {errs[0]}")


def _one(command: str, lines: list[str], pattern: re.Pattern[str], what: str) -> re.Match[str]:
    found = [m for m in (pattern.match(x) for x in lines) if m]
    if len(found) != 1:
        raise GarbledResponse(f"{command}: expected one {what} line, got {len(found)} in {lines!r}")
    return found[0]


_NAME = re.compile(r"^m-name-(.+?)-\[(.*)\]$")


def parse_name(lines: list[str]) -> str:
    """``name%`` → the vendor/board string of ``m-name-dut-[…]``."""
    _check("name", lines)
    return _one("name", lines, _NAME, "m-name-…-[…]").group(2)


_PROFILE = re.compile(r"^m-profile-\[(.*)\]$")
_MODEL = re.compile(r"^m-model-\[(.*)\]$")


def parse_profile(lines: list[str]) -> tuple[str, str]:
    """``profile%`` → (firmware version string, model name the firmware was built with)."""
    _check("profile", lines)
    return (_one("profile", lines, _PROFILE, "m-profile-[…]").group(1),
            _one("profile", lines, _MODEL, "m-model-[…]").group(1))


_EXPECTING = re.compile(r"^m-\[Expecting (\d+) bytes\]$")
_EXCEEDS = re.compile(r"buffer size (\d+) exceeds maximum of (\d+)")


def parse_db_load(lines: list[str], n: int) -> None:
    """``db load N%`` → ``m-[Expecting N bytes]``. A buffer too small for the input is a
    FirmwareError (the reference firmware prints that line without a prefix)."""
    for x in lines:
        m = _EXCEEDS.search(x)
        if m:
            raise InputTooLarge(f"db load: input of {m.group(1)} bytes exceeds the firmware's buffer "
                                f"(MAX_DB_INPUT_SIZE = {m.group(2)})")
    _check("db load", lines)
    got = int(_one("db load", lines, _EXPECTING, "m-[Expecting N bytes]").group(1))
    if got != n:
        raise GarbledResponse(f"db load: firmware expects {got} bytes, we announced {n}")


def parse_db_data(lines: list[str], *, last: bool) -> None:
    """``db HEX%`` → nothing, or ``m-load-done`` for the chunk that completes the buffer."""
    _check("db", lines)
    done = "m-load-done" in lines
    if done != last:
        raise GarbledResponse("db: m-load-done " + ("missing after the last chunk" if last else "before the last chunk"))


_LAP = re.compile(r"^m-lap-us-(\d+)$")
_WARM = re.compile(r"^m-warmup-start-(\d+)$")
_START = re.compile(r"^m-infer-start-(\d+)$")
_RESULTS = re.compile(r"^m-results-\[(.*)\]$")


@dataclass(frozen=True)
class InferResult:
    """One ``infer N W`` exchange: ``lap_us`` covers the N timed inferences."""

    n: int
    warmup: int
    lap_us: int
    results: tuple[float, ...]

    @property
    def per_inference_ms(self) -> float:
        return self.lap_us / self.n / 1e3


def lap_us(start: int, end: int) -> int:
    """Microseconds between two ``m-lap-us`` stamps; a 32-bit counter that wrapped in between
    is unwrapped (a 64-bit counter never wraps in practice)."""
    if end >= start:
        return end - start
    if start < TIMER_WRAP_US:
        return end + TIMER_WRAP_US - start
    raise GarbledResponse(f"timestamps go backwards ({start} → {end})")


def parse_infer(lines: list[str], n: int, warmup: int) -> InferResult:
    """``infer N W%`` → the lap over the N timed inferences and the result vector."""
    _check("infer", lines)
    if "m-timestamp-mode-energy" in lines:
        raise FirmwareError("infer: the firmware runs in energy mode (timestamps on a GPIO, not on the serial "
                            "line); flash a performance-mode build (EE_CFG_ENERGY_MODE=0)")
    w = int(_one("infer", lines, _WARM, "m-warmup-start-W").group(1))
    k = int(_one("infer", lines, _START, "m-infer-start-N").group(1))
    if (k, w) != (n, warmup):
        raise GarbledResponse(f"infer: firmware ran {k} inferences after {w} warm-ups, we asked {n} after {warmup}")
    for marker in ("m-warmup-done", "m-infer-done"):
        if marker not in lines:
            raise GarbledResponse(f"infer: {marker} missing")
    laps = [int(m.group(1)) for m in (_LAP.match(x) for x in lines) if m]
    if not laps:
        raise FirmwareError("infer: no m-lap-us timestamps (energy-mode firmware, or th_timestamp() not ported)")
    if len(laps) != 2:
        raise GarbledResponse(f"infer: expected 2 m-lap-us timestamps, got {len(laps)}")
    start_i = lines.index(next(x for x in lines if _START.match(x)))
    done_i = lines.index("m-infer-done")
    lap_i = [i for i, x in enumerate(lines) if _LAP.match(x)]
    if not (start_i < lap_i[0] < lap_i[1] < done_i):
        raise GarbledResponse("infer: timestamps outside m-infer-start … m-infer-done")
    res = _one("infer", lines, _RESULTS, "m-results-[…]").group(1)
    try:
        results = tuple(float(v) for v in res.split(",") if v.strip())
    except ValueError:
        raise GarbledResponse(f"infer: unreadable results [{res}]") from None
    return InferResult(n=n, warmup=w, lap_us=lap_us(laps[0], laps[1]), results=results)
