"""The ``android-battery`` energy meter: battery current × voltage sampled during a run (pure part).

The sampling itself happens on the phone (a shell loop reading
``/sys/class/power_supply/battery/current_now`` and ``voltage_now`` next to the benchmark,
see :mod:`farm.devices.adb.device`); this module turns the samples into power and energy.

Vendors differ: ``current_now`` is µA on most kernels (mA on some), and negative while
discharging on some (Google Pixel) but positive on others (many Samsung and Xiaomi builds);
``voltage_now`` is µV (mV on some). Units are detected from the magnitudes (a phone under load
draws 0.05–5 A at 3–5 V), the sign convention from the samples' sign while the battery
status says it is discharging. While the phone is charging (USB powered), the battery
current is not what the phone draws, so no energy is reported and the reason is recorded.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

__all__ = ["BatterySample", "BatteryPower", "battery_power", "parse_samples"]


@dataclass(frozen=True)
class BatterySample:
    current_raw: float
    voltage_raw: float


@dataclass(frozen=True)
class BatteryPower:
    """Mean power over the samples (``power_w`` is None when it cannot be measured: ``reason``)."""

    power_w: float | None
    n: int
    current_unit: str
    voltage_unit: str
    sign_convention: str
    reason: str | None = None

    def to_provenance(self) -> dict[str, Any]:
        return {"mean_power_w": self.power_w, "n_samples": self.n, "current_unit": self.current_unit,
                "voltage_unit": self.voltage_unit, "sign_convention": self.sign_convention,
                **({"not_measured": self.reason} if self.reason else {})}


def parse_samples(text: str, prefix: str = "hwfarm-e ") -> list[BatterySample]:
    """Lines ``<prefix><current_now> <voltage_now>``; unreadable lines are skipped."""
    out = []
    for line in text.splitlines():
        if not line.startswith(prefix):
            continue
        parts = line[len(prefix):].split()
        if len(parts) != 2:
            continue
        try:
            out.append(BatterySample(float(parts[0]), float(parts[1])))
        except ValueError:
            continue
    return out


def battery_power(samples: list[BatterySample], status: str | None) -> BatteryPower:
    """Mean battery discharge power in W. ``status``: the battery status (Discharging,
    Charging, Full, Not charging) from ``dumpsys battery`` or sysfs."""
    if not samples:
        return BatteryPower(None, 0, "?", "?", "?", "no samples (current_now/voltage_now not readable)")
    cur = [s.current_raw for s in samples]
    volt = [s.voltage_raw for s in samples]
    med_i = statistics.median(abs(x) for x in cur)
    med_v = statistics.median(volt)
    i_scale, i_unit = (1e-6, "uA") if med_i > 20000 else (1e-3, "mA")
    v_scale, v_unit = (1e-6, "uV") if med_v > 100000 else (1e-3, "mV")
    neg = sum(1 for x in cur if x < 0)
    pos = sum(1 for x in cur if x > 0)
    st = (status or "").strip().lower()
    if st in ("charging", "full"):
        return BatteryPower(None, len(samples), i_unit, v_unit, "?",
                            f"battery is {st}: its current is not what the phone draws (disconnect power, "
                            "e.g. adb over Wi-Fi, to measure energy)")
    if st == "discharging" or not st or st == "unknown":
        convention = "negative-discharge" if neg > pos else "positive-discharge"
        # During discharge the samples that have the discharge sign are the draw; a few of the
        # other sign are noise around zero, counted as zero draw.
        sign = -1.0 if convention == "negative-discharge" else 1.0
        powers = [max(sign * i * i_scale, 0.0) * v * v_scale for i, v in zip(cur, volt, strict=True)]
        return BatteryPower(statistics.fmean(powers), len(samples), i_unit, v_unit, convention)
    return BatteryPower(None, len(samples), i_unit, v_unit, "?", f"battery status {status!r}")
