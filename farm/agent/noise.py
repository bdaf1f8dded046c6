"""How noisy this machine is right now: the reference workload read for a few seconds, plus
what the OS says about who else is using the CPU.

:func:`noise_scan` keeps one core busy for ``seconds``: it reads the reference workload
(:mod:`.reference`, ``read(3)``) and the speed probe (:class:`.measure.SpeedProbe`) in turn and
groups the readings into windows of ``window_s``. A window's median is the machine's state
then; the figures (all JSON-able):

- ``ref_median_us``, ``ref_min_us``, ``ref_p90_us``: over every reference reading;
- ``window_cv``: the coefficient of variation of the window medians (0 with one window);
- ``floor_us``: the low quartile of the window medians, the scan's quiet level;
  ``slow_share``: the share of windows whose median is above ``SLOW`` x that floor;
  ``states``: the share of windows in each band (``quiet`` up to ``SLOW`` x the floor, ``slow``
  up to ``VERY_SLOW`` x, ``very_slow`` above), ``states_seen`` how many bands had a window;
- ``ref_slow_read_share``: the share of single readings above ``SLOW`` x the readings' low
  quartile (slow spells shorter than a window, which the window medians smooth away);
- ``probe_fast_us``: the speed probe's fast level in the scan (the 5th percentile of its
  readings: one lucky reading does not set it), ``probe_fast_share`` / ``probe_slow_share``:
  its readings within / above ``SLOW`` x that (relative to the scan's own fast level: a
  machine slow for the whole scan looks quiet to the probe; ``steal_share`` may still show it).

From the OS, each ``None`` where it is not visible (macOS, Android without root, containers):
``steal_share`` and ``iowait_share`` (``/proc/stat`` deltas over the scan, as a share of all CPU
time), ``loadavg`` (1, 5, 15 min), ``other_runnable`` (runnable tasks other than the scan,
averaged over the windows), ``top_processes`` (the 3 other processes that used the most CPU
during the scan: ``pid``, ``name``, ``cpu_share`` in cores, ``kernel`` for kernel threads,
``cmd`` the command line shortened; from ``/proc/[pid]/stat``),
``governors`` (distinct ``scaling_governor`` values), ``turbo`` (on/off where
``intel_pstate/no_turbo`` or ``cpufreq/boost`` exists; ``turbo_control`` names the file),
``isolated_cpus`` (``/sys/devices/system/cpu/isolated``), ``cpus_usable`` (this process's
affinity) and ``cpu_count``.

Part of the on-device agent: standard library and numpy only.
"""

from __future__ import annotations

import glob
import os
import statistics
import time
from typing import Any

import numpy as np

from .measure import SpeedProbe
from .reference import REFERENCE_WORKLOAD, reference

__all__ = ["SLOW", "VERY_SLOW", "noise_scan", "parse_cpu_list"]

# Where the OS facts are read (tests point these at empty folders).
PROC = "/proc"
SYS_CPU = "/sys/devices/system/cpu"

SLOW = 1.25  # a window above this x the floor ran in a slow state
VERY_SLOW = 1.75  # ... and above this x, in a very slow one
_TOP = 3


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return None


def parse_cpu_list(text: str) -> list[int]:
    """``"0-2,5"`` → ``[0, 1, 2, 5]`` (the kernel's cpulist format); ``""`` → ``[]``."""
    cpus: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def _cpu_times() -> tuple[list[int], int | None] | None:
    """The aggregate ``cpu`` line of /proc/stat (user nice system idle iowait irq softirq steal)
    and ``procs_running``; None where there is no /proc/stat."""
    text = _read(os.path.join(PROC, "stat"))
    if not text:
        return None
    times: list[int] | None = None
    running: int | None = None
    for line in text.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            try:
                times = [int(x) for x in fields[1:9]]
            except ValueError:
                return None
        elif fields and fields[0] == "procs_running" and len(fields) > 1:
            running = int(fields[1]) if fields[1].isdigit() else None
    if times is None or len(times) < 8:
        return None
    return times, running


def _proc_cpu_ticks() -> dict[int, tuple[str, int, int, int]] | None:
    """pid → (name, utime + stime in clock ticks, start time, parent pid) for every process;
    None without /proc. A pid and its start time name a process (a kworker's name changes as
    it works)."""
    if not os.path.isdir(PROC):
        return None
    found: dict[int, tuple[str, int, int, int]] = {}
    try:
        entries = os.listdir(PROC)
    except OSError:
        return None
    for entry in entries:
        if not entry.isdigit():
            continue
        text = _read(os.path.join(PROC, entry, "stat"))
        if not text:
            continue  # gone, or not ours to read
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split at the last ")".
        head, _, rest = text.rpartition(")")
        name = head.partition("(")[2]
        fields = rest.split()
        try:  # ppid, utime, stime, starttime: fields 4, 14, 15, 22 of the line; 2, 12, 13, 20 after ")"
            found[int(entry)] = (name, int(fields[11]) + int(fields[12]), int(fields[19]), int(fields[1]))
        except (IndexError, ValueError):
            continue
    return found


def _top_processes(before: dict[int, tuple[str, int, int, int]] | None,
                   after: dict[int, tuple[str, int, int, int]] | None,
                   elapsed_s: float) -> list[dict[str, Any]] | None:
    if before is None or after is None or elapsed_s <= 0:
        return None
    try:
        hz = os.sysconf("SC_CLK_TCK")
    except (AttributeError, ValueError, OSError):
        return None
    me = os.getpid()
    used: list[dict[str, Any]] = []
    for pid, (name, ticks, started, ppid) in after.items():
        if pid == me:
            continue
        start = before.get(pid)
        delta = ticks - (start[1] if start is not None and start[2] == started else 0)  # new in the scan: all of it
        if delta > 0:
            used.append({"pid": pid, "name": name, "cpu_share": round(delta / hz / elapsed_s, 3),
                         "kernel": pid == 2 or ppid == 2})  # kthreadd and its threads
    used.sort(key=lambda p: p["cpu_share"], reverse=True)
    for p in used[:_TOP]:
        p["cmd"] = _cmdline(p["pid"])
    return used[:_TOP]


def _cmdline(pid: int) -> str | None:
    """The process's command line, shortened (``python`` alone does not say which program)."""
    try:
        with open(os.path.join(PROC, str(pid), "cmdline"), "rb") as f:
            raw = f.read(4096)
    except OSError:
        return None
    cmd = raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()
    return (cmd[:77] + "...") if len(cmd) > 80 else cmd or None


def _governors() -> list[str] | None:
    found = {g for path in glob.glob(os.path.join(SYS_CPU, "cpu[0-9]*", "cpufreq", "scaling_governor"))
             if (g := _read(path))}
    return sorted(found) or None


def _turbo() -> tuple[bool | None, str | None]:
    """Whether turbo/boost is on, and the file that says so (and switches it)."""
    no_turbo = os.path.join(SYS_CPU, "intel_pstate", "no_turbo")
    value = _read(no_turbo)
    if value in ("0", "1"):
        return value == "0", no_turbo
    boost = os.path.join(SYS_CPU, "cpufreq", "boost")
    value = _read(boost)
    if value in ("0", "1"):
        return value == "1", boost
    return None, None


def _isolated() -> list[int] | None:
    text = _read(os.path.join(SYS_CPU, "isolated"))
    if text is None:
        return None
    try:
        return parse_cpu_list(text)
    except ValueError:
        return None


def _loadavg() -> list[float] | None:
    text = _read(os.path.join(PROC, "loadavg"))
    if text:
        try:
            return [float(x) for x in text.split()[:3]]
        except ValueError:
            return None
    if PROC != "/proc":  # pointed elsewhere (tests): say nothing rather than ask the real OS
        return None
    try:
        return [round(x, 2) for x in os.getloadavg()]  # macOS and other Unixes without /proc
    except (AttributeError, OSError):
        return None


def _cpus_usable() -> list[int] | None:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def _share(part: float, whole: float) -> float:
    return round(part / whole, 4) if whole > 0 else 0.0


def noise_scan(seconds: float = 3.0, window_s: float = 0.25) -> dict[str, Any]:
    """Read the reference and the speed probe for ``seconds`` (keeping one core busy) and
    report how noisy the machine was; see the module docstring for the figures."""
    seconds = max(0.0, float(seconds))
    window_s = max(1e-3, float(window_s))
    ref = reference()
    probe = SpeedProbe()
    clock = time.perf_counter

    procs_before = _proc_cpu_ticks()
    stat_before = _cpu_times()
    windows: list[list[float]] = []
    ref_reads: list[float] = []
    probe_reads: list[float] = []
    running: list[int] = []
    t0 = clock()
    end = t0 + seconds
    while True:
        now = clock()
        if now >= end and windows:
            break
        index = int((now - t0) / window_s)
        if index >= len(windows):  # a new window: one sample of the run queue
            windows.extend([] for _ in range(index + 1 - len(windows)))
            sample = _cpu_times()
            if sample is not None and sample[1] is not None:
                running.append(sample[1])
        us = ref.read(3)
        windows[index].append(us)
        ref_reads.append(us)
        probe_reads.append(probe.read())
    elapsed_s = clock() - t0
    stat_after = _cpu_times()
    procs_after = _proc_cpu_ticks()

    medians = [statistics.median(w) for w in windows if w]
    floor_us = float(np.percentile(medians, 25))
    bands = {"quiet": 0, "slow": 0, "very_slow": 0}
    for m in medians:
        bands["quiet" if m <= SLOW * floor_us else "slow" if m <= VERY_SLOW * floor_us else "very_slow"] += 1
    mean = statistics.fmean(medians)
    read_floor_us = float(np.percentile(ref_reads, 25))
    probe_fast_us = float(np.percentile(probe_reads, 5))
    probe_fast = sum(1 for p in probe_reads if p <= SLOW * probe_fast_us)

    steal_share = iowait_share = None
    if stat_before is not None and stat_after is not None:
        delta = [stat_after[0][i] - stat_before[0][i] for i in range(8)]
        total = sum(delta)
        steal_share, iowait_share = _share(delta[7], total), _share(delta[4], total)
    turbo, turbo_control = _turbo()
    return {
        "seconds": round(elapsed_s, 3),
        "window_s": window_s,
        "windows": len(medians),
        "workload": REFERENCE_WORKLOAD,
        "reads": len(ref_reads),
        "ref_median_us": round(statistics.median(ref_reads), 3),
        "ref_min_us": round(min(ref_reads), 3),
        "ref_p90_us": round(float(np.percentile(ref_reads, 90)), 3),
        "window_cv": round(statistics.pstdev(medians) / mean, 4) if mean > 0 else 0.0,
        "floor_us": round(floor_us, 3),
        "slow_share": _share(len(medians) - bands["quiet"], len(medians)),
        "ref_slow_read_share": _share(sum(1 for r in ref_reads if r > SLOW * read_floor_us), len(ref_reads)),
        "states": {k: _share(v, len(medians)) for k, v in bands.items()},
        "states_seen": sum(1 for v in bands.values() if v),
        "probe_fast_us": round(probe_fast_us, 3),
        "probe_fast_share": _share(probe_fast, len(probe_reads)),
        "probe_slow_share": _share(len(probe_reads) - probe_fast, len(probe_reads)),
        # the scan itself is one runnable task
        "other_runnable": round(max(0.0, statistics.fmean(running) - 1), 2) if running else None,
        "steal_share": steal_share,
        "iowait_share": iowait_share,
        "loadavg": _loadavg(),
        "top_processes": _top_processes(procs_before, procs_after, elapsed_s),
        "governors": _governors(),
        "turbo": turbo,
        "turbo_control": turbo_control,
        "isolated_cpus": _isolated(),
        "cpus_usable": _cpus_usable(),
        "cpu_count": os.cpu_count(),
    }
