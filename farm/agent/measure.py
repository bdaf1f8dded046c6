"""The measurement protocol: warm up, time single inferences until the median is known.

Pure functions over lists of samples plus one loop (:func:`run_protocol`) that takes the
run-once callable and a clock, so tests drive it with a fake clock and fake timings.

Rules:
- Warm-up first: at least ``warmup`` runs and at least ``warmup_s`` seconds (so a 20 µs
  kernel warms caches and clocks as long as a 20 ms network does), never more than a
  quarter of the time budget; ``warmup=0`` skips it. Warm-up times are kept for the record.
- Then timed runs until the distribution-free 95% confidence interval of the median is
  within ``±target_ci`` of the median (checked once ``min_runs`` runs and ``min_time_s``
  seconds are done), or ``max_runs`` runs, or ``max_time_s`` seconds: whichever comes
  first; ``stop_reason`` says which. The time floor matters for fast models: on a shared
  VM the first few milliseconds after warm-up can sit 20% off the steady state, and 20
  runs of a 10 µs model would see only that.
- Contention gate (``gate`` > 0, real devices): a shared machine's CPU can run at two
  speeds that switch every fraction of a second (on this project's 2-core VM a noisy
  neighbour makes everything ~1.6x slower for 30-90% of the time). A kernel measured in 4 ms
  sees one speed, a network measured for a second sees both: their medians disagree by
  the share of time the machine was slow. With the gate, a :class:`SpeedProbe` (a fixed
  pure-Python loop) is read before and after each timed run; a run goes ahead only when
  the probe reads within ``gate`` x its fastest reading (waiting for that up to half the
  time budget), and a run with a slow reading before or after it is *contended*: recorded,
  and left out of the statistics like an outlier. When every run of the time budget was
  contended (a slow spell longer than the budget), the runs go on for one more budget. On a machine to itself the probe always reads fast
  and the gate costs ~20 µs per run.
- Outliers are flagged with the MAD rule (modified z-score > 3.5, Iglewicz & Hoaglin; MAD
  floored at 1% of the median) and
  *recorded*, never silently dropped: statistics use the inliers, the store keeps all
  samples plus the outlier indices.

This module is part of the on-device agent: standard library only.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable

__all__ = [
    "Policy",
    "LatencyStats",
    "Sampled",
    "SpeedProbe",
    "median_ci",
    "mad_outliers",
    "rejected",
    "slowed_throughout",
    "speed_probe",
    "percentile",
    "summarize",
    "converged",
    "run_protocol",
]

_Z = {0.90: 1.6449, 0.95: 1.9600, 0.99: 2.5758}


@dataclass(frozen=True)
class Policy:
    """When to stop measuring. ``target_ci=0`` means: always run ``max_runs`` (or out of time)."""

    warmup: int = 10
    warmup_s: float = 0.2
    min_runs: int = 20
    min_time_s: float = 0.5
    max_runs: int = 500
    max_time_s: float = 10.0
    target_ci: float = 0.01
    confidence: float = 0.95
    gate: float = 1.25  # contention gate: a run counts when the speed probe is within this of its fastest; 0: off

    def __post_init__(self) -> None:
        if self.warmup < 0 or self.warmup_s < 0 or self.min_time_s < 0 or self.min_runs < 1 or self.max_runs < 1:
            raise ValueError("warmup, warmup_s and min_time_s must be >= 0, min_runs and max_runs >= 1")
        if self.max_time_s <= 0 or self.target_ci < 0:
            raise ValueError("max_time_s must be > 0 and target_ci >= 0")
        if self.confidence not in _Z:
            raise ValueError(f"confidence must be one of {sorted(_Z)}")
        if self.gate != 0 and self.gate <= 1:
            raise ValueError("gate must be 0 (off) or > 1 (e.g. 1.25)")


@dataclass(frozen=True)
class LatencyStats:
    """Summary of the inlier samples, in milliseconds; ``cv`` = std / mean."""

    median_ms: float
    mean_ms: float
    p10_ms: float
    p90_ms: float
    std_ms: float
    cv: float
    n: int
    n_outliers: int
    ci_low_ms: float
    ci_high_ms: float

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass(frozen=True)
class Sampled:
    samples_ms: tuple[float, ...]
    warmup_ms: tuple[float, ...]
    stop_reason: str  # "converged" | "max_runs" | "max_time"
    elapsed_s: float
    contended: tuple[int, ...] = ()  # indices of timed runs the speed probe saw slowed (contention gate)
    gate: dict[str, float] | None = None  # what the gate saw: fastest probe, slow share, time waited


class SpeedProbe:
    """How fast this CPU runs right now, relative to the fastest it was seen running.

    ``read()`` times a fixed pure-Python loop (about 4 µs on a 2020s x86 core; the best of
    three), ``fast(gate)`` says whether it is within ``gate`` x the fastest reading of the
    last ``memory_s`` seconds of fast readings: the baseline follows a machine that slows
    for good (a throttled board) instead of waiting for a speed it no longer reaches."""

    def __init__(self, *, loops: int = 200, memory_s: float = 20.0, clock: Callable[[], float] = time.perf_counter):
        self.loops = loops
        self.memory_s = memory_s
        self.clock = clock
        self.best_us = math.inf
        self._best_at = -math.inf
        self._recent = math.inf  # the fastest reading since the baseline was last confirmed

    def read(self) -> float:
        clock, loops = self.clock, self.loops
        best = math.inf
        for _ in range(3):
            t0 = clock()
            x = 0
            for i in range(loops):
                x += i
            best = min(best, clock() - t0)
        us = best * 1e6
        now = clock()
        if us <= self.best_us:
            self.best_us, self._best_at, self._recent = us, now, math.inf
        elif us <= 1.1 * self.best_us:  # as fast, within the probe's own noise: the baseline holds
            self._best_at, self._recent = now, math.inf
        else:
            self._recent = min(self._recent, us)
            if now - self._best_at > self.memory_s:  # not seen that fast for a while: re-baseline
                self.best_us, self._best_at, self._recent = self._recent, now, math.inf
        return us

    def fast(self, gate: float) -> bool:
        us = self.read()
        return us <= gate * self.best_us

    def calibrate(self, seconds: float = 0.2) -> float:
        """Read for ``seconds`` to find the fast level; returns it in µs."""
        end = self.clock() + seconds
        while self.clock() < end:
            self.read()
        return self.best_us


_PROBE: SpeedProbe | None = None


def speed_probe() -> SpeedProbe:
    """The process's probe: its fastest reading carries over from one measurement to the next."""
    global _PROBE
    if _PROBE is None:
        _PROBE = SpeedProbe()
        _PROBE.calibrate()
    return _PROBE


def slowed_throughout(gate: dict[str, float] | None) -> bool:
    """Whether a measurement's gate record (``Sampled.gate``, stored as
    ``provenance["contention"]``) says every timed run was contended."""
    return bool(gate) and float((gate or {}).get("contended_share", 0.0)) >= 1.0


def percentile(sorted_xs: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default) of an already sorted list; q in [0, 100]."""
    if not sorted_xs:
        raise ValueError("percentile of no samples")
    pos = (len(sorted_xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (pos - lo)


def median_ci(samples: list[float], confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free CI of the median from order statistics (normal approximation to
    the binomial ranks, Conover 1999): ranks ``n/2 ± z·√n/2``. Returns (min, max) for n < 6."""
    xs = sorted(samples)
    n = len(xs)
    if n == 0:
        raise ValueError("median_ci of no samples")
    if n < 6:
        return xs[0], xs[-1]
    half = _Z[confidence] * math.sqrt(n) / 2
    r = max(1, math.floor(n / 2 - half))
    s = min(n, math.ceil(n / 2 + 1 + half))
    return xs[r - 1], xs[s - 1]


def mad_outliers(samples: list[float], threshold: float = 3.5, *, mad_floor: float = 0.01) -> list[int]:
    """Indices of samples whose modified z-score 0.6745·|x − median| / MAD exceeds ``threshold``.

    The MAD is floored at ``mad_floor`` × median: on a quiet machine the MAD of a fast kernel
    can be a fraction of a percent, and a run 1% off the median is not an outlier."""
    if len(samples) < 3:
        return []
    med = statistics.median(samples)
    mad = max(statistics.median([abs(x - med) for x in samples]), mad_floor * abs(med))
    if mad == 0:
        return []
    return [i for i, x in enumerate(samples) if 0.6745 * abs(x - med) / mad > threshold]


def rejected(samples: list[float], contended: tuple[int, ...] | list[int] = (), *, mad: bool = True) -> list[int]:
    """Indices of the samples the statistics leave out: the contended runs (when at least 6
    others remain; else none of them), then the MAD outliers among the rest (``mad``)."""
    drop = set(contended)
    if len(samples) - len(drop) < min(6, len(samples)):
        drop = set()
    kept = [i for i in range(len(samples)) if i not in drop]
    return sorted(drop | ({kept[j] for j in mad_outliers([samples[i] for i in kept])} if mad else set()))


def summarize(samples: list[float], confidence: float = 0.95, contended: tuple[int, ...] | list[int] = (),
              *, mad: bool = True) -> LatencyStats:
    """Statistics of the inliers; outliers (and contended runs) are counted in ``n_outliers``."""
    if not samples:
        raise ValueError("summarize of no samples")
    out = set(rejected(samples, contended, mad=mad))
    inl = sorted(x for i, x in enumerate(samples) if i not in out)
    mean = statistics.fmean(inl)
    std = statistics.stdev(inl) if len(inl) > 1 else 0.0
    lo, hi = median_ci(inl, confidence)
    return LatencyStats(
        median_ms=statistics.median(inl),
        mean_ms=mean,
        p10_ms=percentile(inl, 10),
        p90_ms=percentile(inl, 90),
        std_ms=std,
        cv=std / mean if mean > 0 else 0.0,
        n=len(inl),
        n_outliers=len(out),
        ci_low_ms=lo,
        ci_high_ms=hi,
    )


def converged(samples: list[float], policy: Policy, contended: tuple[int, ...] | list[int] = ()) -> bool:
    """True when the inliers' median CI lies within ±target_ci of their median."""
    if policy.target_ci <= 0 or len(samples) - len(contended) < max(policy.min_runs, 6):
        return False
    out = set(rejected(samples, contended))
    inl = [x for i, x in enumerate(samples) if i not in out]
    if len(inl) < 6:
        return False
    med = statistics.median(inl)
    lo, hi = median_ci(inl, policy.confidence)
    return med > 0 and max(med - lo, hi - med) <= policy.target_ci * med


def run_protocol(
    run_once: Callable[[], object],
    policy: Policy,
    *,
    clock: Callable[[], float] = time.perf_counter,
    on_timed_start: Callable[[], object] | None = None,
    on_timed_end: Callable[[], object] | None = None,
    probe: SpeedProbe | None = None,
) -> Sampled:
    """Warm up, then time ``run_once`` call by call until :func:`converged` or a budget ends.

    With a ``probe`` (and ``policy.gate`` > 0), runs wait for the machine's fast state and
    the runs it saw slowed are returned in ``contended`` (see the module's rules).

    ``on_timed_start`` / ``on_timed_end`` bracket the timed runs (an energy meter starts and
    stops there: warm-up is not metered)."""
    if policy.gate <= 0:
        probe = None
    start = clock()
    warm: list[float] = []
    while policy.warmup > 0:
        t0 = clock()
        run_once()
        t1 = clock()
        warm.append((t1 - t0) * 1e3)
        if t1 - start > policy.max_time_s / 4:
            break
        if len(warm) >= policy.warmup and t1 - start >= policy.warmup_s:
            break
    if on_timed_start is not None:
        on_timed_start()
    samples: list[float] = []
    contended: list[int] = []
    waited = 0.0
    reason = "max_runs"
    budgets = 0
    # A second budget when the gate saw every run of the first slowed (a long slow spell):
    # one measurement, not a second record of the same model.
    while budgets < (2 if probe is not None else 1):
        budgets += 1
        timed_start, first = clock(), len(samples)
        # With the gate, max_runs counts the runs the statistics use; all runs stay bounded.
        while len(samples) - len(contended) < policy.max_runs and len(samples) - first < 5 * policy.max_runs:
            fast_before = True
            if probe is not None:
                # Wait (reading the probe) for the machine's fast state, for at most half the budget.
                t_wait = clock()
                while not (fast_before := probe.fast(policy.gate)) and clock() - timed_start < policy.max_time_s / 2:
                    pass
                waited += clock() - t_wait
            t0 = clock()
            run_once()
            t1 = clock()
            samples.append((t1 - t0) * 1e3)
            if probe is not None and not (fast_before and probe.fast(policy.gate)):
                contended.append(len(samples) - 1)
            if t1 - timed_start >= policy.max_time_s:
                reason = "max_time"
                break
            # Checking costs a sort; every 5th run is plenty.
            if len(samples) % 5 == 0 and t1 - timed_start >= policy.min_time_s and converged(samples, policy, contended):
                reason = "converged"
                break
        if len(contended) < len(samples):
            break
    if on_timed_end is not None:
        on_timed_end()
    gate = None
    if probe is not None:
        gate = {"gate": policy.gate, "probe_fast_us": round(probe.best_us, 3), "contended_runs": len(contended),
                "contended_share": round(len(contended) / len(samples), 4) if samples else 0.0,
                "waited_s": round(waited, 4), "budgets": budgets}
    return Sampled(tuple(samples), tuple(warm), reason, clock() - start, tuple(contended), gate)
