"""What the agent can tell about the machine it runs on (Linux first, best effort elsewhere).

Every function returns ``None`` for what this OS does not expose, never raises.
"""

from __future__ import annotations

import glob
import os
import platform
import socket
import sys

__all__ = ["cpu_model", "simd", "temperature_c", "governor", "mem_available_mb", "host_facts"]


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return None


def cpu_model() -> str | None:
    text = _read("/proc/cpuinfo")
    if text:
        for key in ("model name", "Hardware", "Processor", "cpu model"):
            for line in text.splitlines():
                if line.startswith(key) and ":" in line:
                    return line.split(":", 1)[1].strip()
    return platform.processor() or None


# The widest vector extension first: what a runtime's kernels pick (onnxruntime's MLAS blocks
# NCHWc tensors by 16 floats under AVX-512, by 8 under AVX/AVX2, and not at all elsewhere).
_SIMD_ORDER = ("avx512f", "avx2", "avx", "sse4_2", "sve", "asimd", "neon")


def simd() -> str | None:
    """The CPU's widest SIMD extension by /proc/cpuinfo's flags (x86) or features (ARM)."""
    text = _read("/proc/cpuinfo")
    if not text:
        return None
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return next((f for f in _SIMD_ORDER if f in flags), None)


def temperature_c() -> float | None:
    """Hottest thermal zone in °C (sysfs reports millidegrees)."""
    temps = []
    for path in glob.glob("/sys/class/thermal/thermal_zone*/temp"):
        raw = _read(path)
        try:
            value = int(raw) if raw else None
        except ValueError:
            value = None
        if value is not None and value > 0:
            temps.append(value / 1000.0 if value > 1000 else float(value))
    return max(temps) if temps else None


def governor() -> str | None:
    return _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")


def mem_available_mb() -> float | None:
    text = _read("/proc/meminfo")
    if text:
        for line in text.splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024.0
    return None


def host_facts() -> dict[str, object]:
    usable: int | None
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "hostname": socket.gethostname(),
        "os": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "cpu_model": cpu_model(),
        "simd": simd(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "governor": governor(),
        "temperature_c": temperature_c(),
        "mem_available_mb": mem_available_mb(),
    }
