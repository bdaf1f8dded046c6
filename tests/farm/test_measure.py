"""The measurement protocol: pure statistics and the stopping loop, driven by a fake clock."""

from __future__ import annotations

import statistics

import numpy as np
import pytest

from farm.agent.measure import (
    Policy,
    SpeedProbe,
    converged,
    mad_outliers,
    median_ci,
    percentile,
    rejected,
    run_protocol,
    summarize,
)


def test_percentile_matches_numpy():
    xs = sorted(np.random.default_rng(1).standard_normal(101).tolist())
    for q in (0, 10, 50, 90, 100):
        assert percentile(xs, q) == pytest.approx(np.percentile(xs, q))


def test_median_ci_brackets_median_and_narrows_with_n():
    rng = np.random.default_rng(0)
    small = rng.normal(10, 1, 30).tolist()
    big = rng.normal(10, 1, 3000).tolist()
    lo_s, hi_s = median_ci(small)
    lo_b, hi_b = median_ci(big)
    assert lo_s <= statistics.median(small) <= hi_s
    assert lo_b <= statistics.median(big) <= hi_b
    assert (hi_b - lo_b) < (hi_s - lo_s) / 5


def test_median_ci_coverage_is_about_95_percent():
    rng = np.random.default_rng(42)
    hits = 0
    for _ in range(400):
        xs = rng.exponential(1.0, 50).tolist()  # skewed, true median ln 2
        lo, hi = median_ci(xs)
        hits += lo <= np.log(2) <= hi
    assert 0.90 <= hits / 400 <= 0.995


def test_mad_flags_spikes_and_keeps_them_countable():
    xs = [10.0, 10.1, 9.9, 10.05, 9.95, 10.02, 55.0, 10.0, 9.98, 80.0]
    assert mad_outliers(xs) == [6, 9]
    s = summarize(xs)
    assert s.n == 8 and s.n_outliers == 2
    assert s.median_ms == pytest.approx(10.0, abs=0.05)
    assert s.p90_ms < 11


def test_mad_floor_keeps_percent_level_jitter():
    # MAD is ~0 here; without the floor, 1% jitter would be flagged. A 20% spike still is.
    xs = [5.0] * 10 + [5.05, 4.95]
    assert mad_outliers(xs) == []
    assert mad_outliers(xs + [6.0]) == [12]
    assert mad_outliers([0.0] * 5) == []


def test_summarize_fields():
    xs = [1.0, 2.0, 3.0, 4.0, 5.0]
    s = summarize(xs)
    assert (s.median_ms, s.mean_ms, s.n) == (3.0, 3.0, 5)
    assert s.std_ms == pytest.approx(statistics.stdev(xs))
    assert s.cv == pytest.approx(s.std_ms / 3.0)
    assert s.p10_ms == pytest.approx(1.4) and s.p90_ms == pytest.approx(4.6)


class FakeClock:
    """Advances by the scripted duration of each `run_once` call."""

    def __init__(self, durations_s):
        self.t = 0.0
        self.durations = iter(durations_s)

    def __call__(self) -> float:
        return self.t

    def run_once(self) -> None:
        self.t += next(self.durations)


def _stable(n, ms=5.0, jitter=0.001, seed=0):
    rng = np.random.default_rng(seed)
    return (ms / 1e3 * (1 + jitter * rng.standard_normal(n))).tolist()


def test_stops_when_converged():
    clock = FakeClock(_stable(1000))
    res = run_protocol(clock.run_once, Policy(warmup=3, warmup_s=0, min_time_s=0, min_runs=10, max_runs=500), clock=clock)
    assert res.stop_reason == "converged"
    assert len(res.warmup_ms) == 3
    assert 10 <= len(res.samples_ms) < 500
    assert statistics.median(res.samples_ms) == pytest.approx(5.0, rel=0.01)


def test_warmup_lasts_at_least_warmup_s():
    clock = FakeClock([0.005] * 1000)  # 5 ms per run: 3 runs would be 15 ms, 0.1 s needs 20
    res = run_protocol(clock.run_once, Policy(warmup=3, warmup_s=0.1, max_runs=5, target_ci=0), clock=clock)
    assert 20 <= len(res.warmup_ms) <= 21 and len(res.samples_ms) == 5


def test_noisy_runs_hit_max_runs():
    clock = FakeClock(_stable(1000, jitter=0.5))
    res = run_protocol(clock.run_once, Policy(warmup=0, min_runs=10, max_runs=40, target_ci=0.001), clock=clock)
    assert res.stop_reason == "max_runs" and len(res.samples_ms) == 40


def test_time_budget_stops_slow_models():
    clock = FakeClock([1.0] * 100)  # 1 s per inference
    res = run_protocol(clock.run_once, Policy(warmup=10, min_runs=10, max_runs=500, max_time_s=4.0), clock=clock)
    assert res.stop_reason == "max_time"
    assert len(res.warmup_ms) == 2  # warm-up capped at a quarter of the budget (after the run that crossed it)
    assert len(res.samples_ms) == 4


def test_target_zero_runs_exactly_max_runs():
    clock = FakeClock(_stable(100))
    res = run_protocol(clock.run_once, Policy(warmup=0, max_runs=25, target_ci=0), clock=clock)
    assert len(res.samples_ms) == 25 and res.stop_reason == "max_runs"


def test_converged_ignores_outliers():
    xs = _stable(60, jitter=0.0005)
    xs = [x * 1e3 for x in xs]
    xs[5] = 500.0
    assert converged(xs, Policy())


@pytest.mark.parametrize("bad", [dict(min_runs=0), dict(max_time_s=0), dict(target_ci=-1), dict(confidence=0.5)])
def test_policy_rejects_nonsense(bad):
    with pytest.raises(ValueError):
        Policy(**bad)


# ---------------------------------------------------------------- the contention gate


class TwoSpeedMachine:
    """A CPU that runs 1.6x slower during scripted intervals (a noisy neighbour), with a
    fake clock, a model that takes ``ms`` when fast, and a speed probe that costs 10 µs."""

    def __init__(self, slow: list[tuple[float, float]], ms: float = 1.0):
        self.t, self.slow, self.ms = 0.0, slow, ms
        self.best_us = 4.0
        self.probe_reads = 0

    def is_slow(self) -> bool:
        return any(a <= self.t < b for a, b in self.slow)

    def __call__(self) -> float:
        return self.t

    def run_once(self) -> None:
        self.t += self.ms / 1e3 * (1.6 if self.is_slow() else 1.0)

    def fast(self, gate: float) -> bool:
        self.probe_reads += 1
        self.t += 10e-6
        return not self.is_slow()


def test_gate_waits_for_the_fast_state_and_drops_runs_it_saw_slowed():
    # Slow from 0.05 s to 0.25 s and 0.30-0.40 s: ungated, the median of a 0.5 s window is a mix.
    m = TwoSpeedMachine([(0.05, 0.25), (0.30, 0.40)])
    pol = Policy(warmup=0, min_runs=10, min_time_s=0.5, max_runs=10_000, max_time_s=0.5, target_ci=0)
    res = run_protocol(m.run_once, pol, clock=m, probe=m)
    stats = summarize(list(res.samples_ms), contended=res.contended)
    assert stats.median_ms == pytest.approx(1.0)
    assert all(x == pytest.approx(1.0) for i, x in enumerate(res.samples_ms) if i not in set(res.contended))
    assert res.gate is not None and res.gate["waited_s"] > 0.2  # it waited through the slow spells
    # The same window without the gate: slow runs in the statistics.
    m2 = TwoSpeedMachine([(0.05, 0.25), (0.30, 0.40)])
    plain = run_protocol(m2.run_once, pol, clock=m2, probe=None)
    assert plain.contended == () and plain.gate is None
    assert max(plain.samples_ms) == pytest.approx(1.6)


def test_gate_off_never_reads_the_probe():
    m = TwoSpeedMachine([(0.0, 1.0)])
    res = run_protocol(m.run_once, Policy(warmup=0, max_runs=20, target_ci=0, gate=0), clock=m, probe=m)
    assert m.probe_reads == 0 and res.gate is None and len(res.samples_ms) == 20


def test_a_machine_slow_throughout_still_measures_within_two_budgets():
    # Never fast: the gate waits half the budget, then measures; every run is contended, so a
    # second budget goes the same way, and the statistics fall back to all runs, not none.
    m = TwoSpeedMachine([(0.0, 100.0)])
    pol = Policy(warmup=0, min_runs=10, min_time_s=0, max_runs=50, max_time_s=0.2)
    res = run_protocol(m.run_once, pol, clock=m, probe=m)
    assert len(res.samples_ms) >= 10 and len(res.contended) == len(res.samples_ms)
    assert res.gate is not None and res.gate["budgets"] == 2
    assert summarize(list(res.samples_ms), contended=res.contended).median_ms == pytest.approx(1.6)
    assert res.elapsed_s <= 2 * 0.2 + 0.01  # the fake clock's seconds: the budgets hold, waits included


def test_a_slow_spell_longer_than_the_budget_gets_a_second_budget():
    # Slow for the whole first budget (0.2 s), fast after 0.25 s: the second budget waits it
    # out and measures fast runs, in the same measurement.
    m = TwoSpeedMachine([(0.0, 0.25)])
    pol = Policy(warmup=0, min_runs=10, min_time_s=0, max_runs=20, max_time_s=0.2, target_ci=0)
    res = run_protocol(m.run_once, pol, clock=m, probe=m)
    assert res.gate is not None and res.gate["budgets"] == 2
    assert len(res.samples_ms) - len(res.contended) == 20
    assert summarize(list(res.samples_ms), contended=res.contended).median_ms == pytest.approx(1.0)


def test_rejected_keeps_contended_runs_out_unless_too_few_remain():
    xs = [1.0] * 10 + [1.6] * 5 + [9.0]
    assert rejected(xs, contended=list(range(10, 15))) == list(range(10, 16))
    assert rejected([1.6] * 5 + [1.61], contended=[0, 1, 2, 3, 4]) == []  # one left: keep them all


def test_speed_probe_rebaselines_after_a_lasting_slowdown():
    class Clock:
        t, step = 0.0, 1e-6

        def __call__(self):
            self.t += self.step
            return self.t

    clock = Clock()
    probe = SpeedProbe(loops=1, memory_s=1.0, clock=clock)
    fast = probe.read()
    assert probe.fast(1.25)
    clock.step = 2e-6  # everything twice as slow from now on
    assert not probe.fast(1.25)
    clock.t += 2.0  # longer than memory_s without a fast reading
    probe.read()
    assert probe.best_us == pytest.approx(2 * fast, rel=0.01) and probe.fast(1.25)


def test_policy_rejects_a_gate_at_or_below_one():
    with pytest.raises(ValueError, match="gate"):
        Policy(gate=1.0)
