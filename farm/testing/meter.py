"""Conformance suite for :class:`farm.agent.meters.Meter`.

The agent drives a meter as ``check()`` → ``start()`` (first timed run) → ``stop()`` (last
timed run) → ``result(n_runs, median_ms)`` → ``close()``, and sends the result over its JSON
protocol. ``make_meter()`` returns a fresh meter on a live source: real hardware, or a stand-in
(a fake sysfs tree, a fake ``tegrastats``, a fake meter program).

    from farm.testing.meter import check_meter
    check_meter(lambda: open_meter({"meter": "rapl", "path": "/sys/class/powercap/intel-rapl:0"}))
"""

from __future__ import annotations

import json
import math
from typing import Callable

from farm.agent.meters import Meter

__all__ = ["METER_CHECKS", "check_meter", "check_check_describes_the_source",
           "check_window_gives_energy_per_inference", "check_close_is_safe_at_any_time"]

MakeMeter = Callable[[], Meter]


def check_check_describes_the_source(make_meter: MakeMeter) -> None:
    meter = make_meter()
    try:
        assert isinstance(meter.name, str) and meter.name and meter.name != "?", \
            f"{type(meter).__name__}.name is {meter.name!r}"
        detail = meter.check()
        assert isinstance(detail, str) and detail.strip(), f"{meter.name}: check() returned {detail!r}"
    finally:
        meter.close()


def check_window_gives_energy_per_inference(make_meter: MakeMeter) -> None:
    meter = make_meter()
    try:
        meter.check()
        meter.start()
        meter.stop()
        out = meter.result(10, 2.0)
        assert set(out) >= {"energy_mj", "provenance"}, f"{meter.name}: result() keys are {sorted(out)}"
        energy = out["energy_mj"]
        assert isinstance(energy, (int, float)) and not isinstance(energy, bool), \
            f"{meter.name}: energy_mj is {energy!r}, not a number"
        assert math.isfinite(energy) and energy >= 0, f"{meter.name}: energy_mj is {energy}"
        prov = out["provenance"]
        assert isinstance(prov, dict) and prov.get("meter") == meter.name, \
            f"{meter.name}: provenance does not name the meter: {prov!r}"
        assert isinstance(prov.get("method"), str) and prov["method"], \
            f"{meter.name}: provenance does not say how energy was derived (method)"
        # the agent sends the result as one JSON line
        assert json.loads(json.dumps(out)) == out, f"{meter.name}: result() does not survive JSON: {out!r}"
    finally:
        meter.close()
        meter.close()  # closing twice is harmless


def _close(meter: Meter, when: str) -> None:
    try:
        meter.close()
    except Exception as err:
        raise AssertionError(f"{meter.name}: close() {when} raised {type(err).__name__}: {err}") from err


def check_close_is_safe_at_any_time(make_meter: MakeMeter) -> None:
    """close() before check, after check, mid-window (a failed run) and twice never raises."""
    _close(make_meter(), "before check()")
    checked = make_meter()
    checked.check()
    _close(checked, "after check()")
    abandoned = make_meter()
    abandoned.check()
    abandoned.start()
    _close(abandoned, "between start() and stop()")
    _close(abandoned, "a second time")


METER_CHECKS: tuple[Callable[[MakeMeter], None], ...] = (
    check_check_describes_the_source,
    check_window_gives_energy_per_inference,
    check_close_is_safe_at_any_time,
)


def check_meter(make_meter: MakeMeter) -> None:
    """Run every check of :data:`METER_CHECKS`; the first failure raises AssertionError."""
    for check in METER_CHECKS:
        check(make_meter)
