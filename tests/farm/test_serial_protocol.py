"""The EEMBC / MLPerf Tiny protocol layer (farm.devices.serial.eembc): framer and parsers, table-driven.

Golden responses are real DUT output, quoted from:
- KWS01 on the MLPerf Tiny reference board, relayed by the interface board (its ``RX:[dut]:``
  prefix removed): https://github.com/mlcommons/tiny, benchmark/runner/README.md
- A Kendryte K230 (RISC-V) MLPerf Tiny port that prints extra ``m-`` statistics after the
  results (public port notes: "infer 50 10 / m-warmup-start-10 / … / m-latency-us-604896.78")
- An anomaly-detection port on the RISC-V spike simulator that stamps cycles
  (``m-lap-cycles-``) instead of microseconds (public port notes with its console log)
"""

from __future__ import annotations

import pytest

from farm.devices.serial import eembc
from farm.devices.serial.eembc import FirmwareError, GarbledResponse

# ---------------------------------------------------------------------------- golden outputs

KWS01_NAME = ["m-name-dut-[unspecified]"]
KWS01_PROFILE = ["m-profile-[ULPMark for tinyML Firmware V0.0.1]", "m-model-[kws01]"]
KWS01_INFER = ["m-warmup-start-10", "m-warmup-done", "m-infer-start-1", "m-lap-us-67410227", "m-lap-us-67565820",
               "m-infer-done",
               "m-results-[0.000,0.000,0.000,0.000,0.000,0.007,0.000,0.000,0.000,0.000,0.000,0.992]"]
RISCV_INFER = ["m-warmup-start-10", "m-warmup-done", "m-infer-start-50", "m-lap-us-2789341993",
               "m-lap-us-2819586832", "m-infer-done", "m-results-[0.992,0.000,0.004,0.0000]",
               "m-cycles-count-48388688109", "m-instret-count-30385035484", "m-runtime-us-30244839",
               "m-latency-us-604896.78"]
AD_CYCLES_INFER = ["m-warmup-start-1", "n_warmup index: 0", "m-warmup-done", "m-infer-pos: 0", "m-infer-start-10",
                   "m-lap-cycles-6865927", "m-lap-cycles-9565531", "m-infer-done", "m-results-[11.766]"]


def test_golden_kws01_session():
    assert eembc.parse_name(KWS01_NAME) == "unspecified"
    assert eembc.parse_profile(KWS01_PROFILE) == ("ULPMark for tinyML Firmware V0.0.1", "kws01")
    r = eembc.parse_infer(KWS01_INFER, 1, 10)
    assert r.lap_us == 67565820 - 67410227 == 155593  # the runner's own elapsed_time for this file
    assert r.per_inference_ms == pytest.approx(155.593)
    assert len(r.results) == 12 and r.results[-1] == 0.992


def test_golden_extra_statistics_lines_are_ignored():
    r = eembc.parse_infer(RISCV_INFER, 50, 10)
    assert r.lap_us == 2819586832 - 2789341993
    assert r.per_inference_ms == pytest.approx(604.89678)  # what the firmware itself printed (m-latency-us)


def test_golden_cycle_counting_firmware_is_refused_clearly():
    with pytest.raises(FirmwareError, match="no m-lap-us"):
        eembc.parse_infer(AD_CYCLES_INFER, 10, 1)


# ---------------------------------------------------------------------------- framer


@pytest.mark.parametrize("chunks, lines, pending", [
    ([b"m-ready\r\n"], ["m-ready"], b""),
    ([b"m-re", b"ady\r", b"\nm-lap"], ["m-ready"], b"m-lap"),
    ([b"a\nb\n\n"], ["a", "b", ""], b""),
    ([b"\0\0m-init-done\r\n"], ["m-init-done"], b""),  # NULs a UART bridge emits at reset
    ([b"m-lap-us-1\xff\x8f2\r\n"], ["m-lap-us-1\ufffd\ufffd2"], b""),
])
def test_framer(chunks, lines, pending):
    f = eembc.LineFramer()
    got: list[str] = []
    for c in chunks:
        got += f.feed(c)
    assert got == lines and f.pending == pending


def test_framer_flushes_a_line_that_never_ends():
    f = eembc.LineFramer(max_line=16)
    assert f.feed(b"x" * 20) == ["x" * 20] and f.pending == b""


@pytest.mark.parametrize("line, clean", [
    ("m-ready", True), ("m-results-[0.1,0.2]", True), ("", True),
    ("m-lap-us-1\ufffd2", False), ("m-\x07ready", False), ("m-réady", False),
])
def test_is_clean(line, clean):
    assert eembc.is_clean(line) is clean


# ---------------------------------------------------------------------------- commands


@pytest.mark.parametrize("command, wire", [("name", b"name%"), ("infer 10 0", b"infer 10 0%"),
                                           ("db load 3072", b"db load 3072%")])
def test_encode_command(command, wire):
    assert eembc.encode_command(command) == wire


@pytest.mark.parametrize("command, why", [("a%b", "terminator"), ("x" * 81, "80"), ("infer\n1", "terminator"),
                                          ("nämé", "ASCII")])
def test_encode_command_refuses(command, why):
    with pytest.raises(ValueError, match=why):
        eembc.encode_command(command)


def test_db_commands_chunk_like_the_runner():
    data = bytes(range(70))
    cmds = eembc.db_commands(data)
    assert cmds[0] == "db load 70"
    assert cmds[1] == "db " + bytes(range(31)).hex() and len(cmds) == 1 + 3
    assert b"".join(bytes.fromhex(c.split()[1]) for c in cmds[1:]) == data
    assert all(len(eembc.encode_command(c)) <= eembc.MAX_COMMAND_CHARS + 1 for c in cmds)
    with pytest.raises(ValueError):
        eembc.db_commands(b"")
    with pytest.raises(ValueError):
        eembc.db_commands(data, chunk=39)  # 3 + 78 characters: the firmware would cut it


# ---------------------------------------------------------------------------- parsers: bad answers


@pytest.mark.parametrize("lines, error, match", [
    (["m-name-dut-[a]", "m-name-dut-[b]"], GarbledResponse, "one m-name"),
    ([], GarbledResponse, "one m-name"),
    (["m-name-dut-[bo\ufffdrd]"], GarbledResponse, "garbled line"),
    (["e-[Unknown command: nme]"], GarbledResponse, "did not understand"),
])
def test_parse_name_bad(lines, error, match):
    with pytest.raises(error, match=match):
        eembc.parse_name(lines)


def test_parse_profile_needs_both_lines():
    with pytest.raises(GarbledResponse, match="m-model"):
        eembc.parse_profile(KWS01_PROFILE[:1])


@pytest.mark.parametrize("lines, n, error, match", [
    (["m-[Expecting 490 bytes]"], 490, None, None),
    (["m-[Expecting 49 bytes]"], 490, GarbledResponse, "expects 49"),
    (["Supplied buffer size 99999 exceeds maximum of 10240"], 99999, eembc.InputTooLarge, "MAX_DB_INPUT_SIZE = 10240"),
    (["e-[Command 'db load' must be >0 bytes]"], 1, FirmwareError, "must be >0"),
])
def test_parse_db_load(lines, n, error, match):
    if error is None:
        eembc.parse_db_load(lines, n)
    else:
        with pytest.raises(error, match=match):
            eembc.parse_db_load(lines, n)


@pytest.mark.parametrize("lines, last, ok", [([], False, True), (["m-load-done"], True, True),
                                             ([], True, False), (["m-load-done"], False, False)])
def test_parse_db_data(lines, last, ok):
    if ok:
        eembc.parse_db_data(lines, last=last)
    else:
        with pytest.raises(GarbledResponse):
            eembc.parse_db_data(lines, last=last)


def _without(lines: list[str], prefix: str) -> list[str]:
    return [x for x in lines if not x.startswith(prefix)]


@pytest.mark.parametrize("lines, n, w, error, match", [
    (KWS01_INFER, 2, 10, GarbledResponse, "ran 1 inferences after 10"),
    (KWS01_INFER, 1, 0, GarbledResponse, "after 10 warm-ups, we asked 1 after 0"),
    (_without(KWS01_INFER, "m-infer-done"), 1, 10, GarbledResponse, "m-infer-done missing"),
    (_without(KWS01_INFER, "m-results"), 1, 10, GarbledResponse, "m-results"),
    (KWS01_INFER[:3] + KWS01_INFER[4:], 1, 10, GarbledResponse, "2 m-lap-us"),
    (KWS01_INFER[:3] + ["m-lap-us-1x0"] + KWS01_INFER[4:], 1, 10, GarbledResponse, "2 m-lap-us"),
    (KWS01_INFER[:3] + ["m-lap-us-\ufffd"] + KWS01_INFER[4:], 1, 10, GarbledResponse, "garbled"),
    (KWS01_INFER[:6] + ["m-results-[0.1,zz]"], 1, 10, GarbledResponse, "unreadable results"),
    (["m-timestamp-mode-energy"] + KWS01_INFER, 1, 10, FirmwareError, "energy mode"),
    (["e-[Inference iterations must be >0]"], 1, 10, FirmwareError, "iterations"),
    (_without(KWS01_INFER, "m-lap-us"), 1, 10, FirmwareError, "no m-lap-us"),
])
def test_parse_infer_bad(lines, n, w, error, match):
    with pytest.raises(error, match=match):
        eembc.parse_infer(lines, n, w)


def test_timestamps_out_of_order_are_garbled():
    lines = ["m-lap-us-5"] + [x for x in KWS01_INFER if not x.startswith("m-lap-us")]
    lines.insert(5, "m-lap-us-9")
    with pytest.raises(GarbledResponse, match="outside"):
        eembc.parse_infer(lines, 1, 10)


@pytest.mark.parametrize("start, end, lap", [
    (100, 350, 250),
    (2**32 - 100, 150, 250),  # a 32-bit µs counter wraps every 71.6 minutes
    (0, 0, 0),
])
def test_lap_us(start, end, lap):
    assert eembc.lap_us(start, end) == lap


def test_lap_us_backwards_on_a_64_bit_counter_is_garbled():
    with pytest.raises(GarbledResponse):
        eembc.lap_us(2**40, 5)
