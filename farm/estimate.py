"""Estimates over rounds: the quiet state's latency, its between-round interval, paired ratios.

Why. A shared machine runs for seconds at a time in slower states (on this project's 2-core
VM, 1.3-1.5x slower for 3 s and more; see ``bench/repeatability.py``). A measurement that
pools whatever states its runs hit reports a different median every time it is repeated,
with an interval of its own samples that says it will not. So a measurement here is several
*rounds*, each a fresh runtime session (``farm.agent``), and

- each round carries two views of the machine's state: the *reference* workload's readings
  from just before and after it (``farm.agent.reference``), and the share of its runs the
  contention gate's speed probe saw slowed (``farm.agent.measure``), which watches the whole
  round. A round is *quiet* when its reference reads within ``QUIET_TOL`` of the device's
  *floor* and the probe saw it slowed for at most ``QUIET_CONTENDED`` of its runs. The floor
  is the device's typical quiet reading: the lower quartile of its recent records' median
  readings (the store's ``reference_floor``), not a minimum, because the reference has a
  lucky fast mode of its own (17–19 against 20–23 µs quiet, 28–50 slow, on this project's
  VM) that no model run follows. The reference fits in a core's own caches, so a neighbour
  in the shared L3 or memory can slow a model for seconds while it reads quiet; where the
  model was measured on the device before, a round is quiet only if its median is also
  within ``MODEL_TOL`` of the model's own floor (the low level of its earlier stable
  records), so a measurement that lands in such a spell adds rounds until the spell ends,
  or says it is unstable;
- the estimate is the median of the quietest half of the rounds (by their medians: a slow
  state makes a round slower, never faster, so the model's own latency is the sharpest
  view of the state it ran in): the quiet state's latency, which repeats, instead of a mix
  weighted by how long the machine happened to be slow. Rounds are fresh sessions, so the
  half also spans the sessions' own small differences. The quiet flags decide whether the
  figure can be trusted to be the quiet state's and when to stop adding rounds;
- its interval is between rounds (sessions and moments), not between the samples of one
  pooled run: the estimate's spread over bootstrap resamples of the rounds, times
  Student's t for their number, combined with the rounds' own precision (for two quiet
  rounds, their difference; for one, that round's interval);
- a measurement that found fewer quiet rounds than it asked for is *unstable*: the machine
  never showed its quiet state, so the figure may be a slow state's. The record says so and
  why, its interval covers every round it kept, and predictors can leave it out
  (``unstable`` in the dataset's rows).

Paired comparisons (:func:`paired_ratio`) pair the rounds of two models measured
alternately: the ratio of their medians, round by round, cancels most of a state both saw.

Pure functions (no I/O): the scheduler, the CLI and the tests share them.
"""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import dataclass
from typing import Any, Sequence

__all__ = ["QUIET_TOL", "Round", "Estimate", "Ratio", "round_of", "round_reference", "job_floor", "low_level", "record_level", "quiet_flags", "quietest_half",
           "QUIET_CONTENDED", "MODEL_TOL",
           "quiet_estimate", "enough_rounds", "paired_ratio", "t_quantile"]

# A round is quiet when its reference reads within this of the device's floor (quiet
# readings spread 18.7–23 µs on this project's VM, slow ones 28–40) ...
QUIET_TOL = 0.25
# ... and the contention gate saw at most this share of its runs slowed ...
QUIET_CONTENDED = 0.25
# ... and, where the model was measured before on the device, its median is within this of
# the model's own floor (the low level of its earlier stable records).
MODEL_TOL = 0.05

# Two-sided 95% Student t quantiles by degrees of freedom (then the normal's 1.96).
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
        10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042}


def t_quantile(df: int) -> float:
    """The two-sided 95% quantile of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        raise ValueError("t_quantile needs df >= 1")
    for k in sorted(_T95, reverse=True):
        if df >= k:
            return _T95[k] if df <= 30 else 1.96 + (_T95[30] - 1.96) * 30 / df
    return _T95[1]


@dataclass(frozen=True)
class Round:
    """One round as the estimator sees it: its median and interval, its state, when, where."""

    median_ms: float
    ci_low_ms: float
    ci_high_ms: float
    n: int
    reference_us: float | None = None  # the slower of the readings before and after it
    measured_at: str = ""
    session: str | None = None
    contended_share: float | None = None  # of its runs, the share the speed probe saw slowed


@dataclass(frozen=True)
class Estimate:
    median_ms: float
    ci_low_ms: float
    ci_high_ms: float
    quiet: tuple[bool, ...]  # per round: ran in the quiet state
    used: tuple[bool, ...]  # per round: in the estimate (the quietest half by median)
    floor_us: float | None  # the floor the rounds were judged against
    unstable: bool
    reason: str = ""  # why unstable ("" when not)

    @property
    def n_quiet(self) -> int:
        return sum(self.quiet)

    @property
    def half_width(self) -> float:
        """The interval's larger half, relative to the estimate."""
        return max(self.median_ms - self.ci_low_ms, self.ci_high_ms - self.median_ms) / self.median_ms \
            if self.median_ms > 0 else math.inf


@dataclass(frozen=True)
class Ratio:
    """``b / a`` from paired rounds: the median ratio and its 95% interval."""

    ratio: float
    ci_low: float
    ci_high: float
    pairs: int  # pairs used (both rounds quiet, or all pairs when fewer than 3 were)
    per_round: tuple[float, ...]  # every pair's ratio, in round order
    unstable: bool


def round_reference(provenance: dict[str, Any]) -> float | None:
    """A round's state from its provenance: the slower of the reference readings around it."""
    ref = provenance.get("reference")
    if not isinstance(ref, dict):
        return None
    vals = [float(v) for k in ("before_us", "after_us") if isinstance(v := ref.get(k), (int, float)) and v > 0]
    return max(vals) if vals else None


def round_of(median_ms: float, ci_low_ms: float, ci_high_ms: float, n: int, provenance: dict[str, Any],
             created_at: str = "") -> Round:
    share = (provenance.get("contention") or {}).get("contended_share")
    return Round(median_ms, ci_low_ms, ci_high_ms, n, round_reference(provenance),
                 str(provenance.get("measured_at") or created_at), provenance.get("session"),
                 float(share) if isinstance(share, (int, float)) else None)


def low_level(readings: Sequence[float]) -> float:
    """A robust low level of some readings: the lower quartile by rank (the lowest of up to
    three; the second lowest of four to seven), so one lucky reading does not set it."""
    xs = sorted(readings)
    if not xs:
        raise ValueError("low_level of no readings")
    return xs[len(xs) // 4] if len(xs) < 4 else xs[max(1, len(xs) // 4)]


def job_floor(rounds: Sequence[Round], floor_us: float | None) -> float | None:
    """The floor to judge these rounds by. With the device's floor from the store (its recent
    records' typical readings): that, or these rounds' median reading when lower (the machine
    is quieter than its history). Without: these rounds' own low level."""
    refs = [r.reference_us for r in rounds if r.reference_us is not None]
    if floor_us:
        return min(floor_us, statistics.median(refs)) if refs else floor_us
    return low_level(refs) if refs else None


def record_level(rounds: Sequence[Round]) -> float | None:
    """A record's typical reference reading (the median of its rounds'): what the store's
    ``reference_floor`` takes the low level of, over a device's recent records."""
    refs = [r.reference_us for r in rounds if r.reference_us is not None]
    return statistics.median(refs) if refs else None


def quiet_flags(rounds: Sequence[Round], floor_us: float | None, tol: float = QUIET_TOL, *,
                model_floor_ms: float | None = None) -> tuple[bool, ...]:
    """Which rounds ran in the quiet state. A view a round lacks (old records, simulated
    devices, a gate that was off, a model never measured here before) does not count
    against it."""
    floor = job_floor(rounds, floor_us)
    return tuple((floor is None or r.reference_us is None or r.reference_us <= floor * (1 + tol))
                 and (r.contended_share is None or r.contended_share <= QUIET_CONTENDED)
                 and (model_floor_ms is None or r.median_ms <= model_floor_ms * (1 + MODEL_TOL)) for r in rounds)


def quietest_half(rounds: Sequence[Round]) -> list[Round]:
    """The half of the rounds (rounded up) with the lowest medians."""
    return sorted(rounds, key=lambda r: r.median_ms)[:math.ceil(len(rounds) / 2)]


def _center(rounds: Sequence[Round]) -> float:
    return statistics.median(r.median_ms for r in quietest_half(rounds))


def _interval(quiet: Sequence[Round], center: float) -> tuple[float, float]:
    """Between-round 95% interval of the estimate over the rounds.

    Three or more: the estimate's standard deviation over bootstrap resamples of the rounds
    (a fixed seed: the same rounds give the same interval), times Student's t for their
    number, with the rounds' own precision added in quadrature (with few rounds the
    resamples can all agree by chance). Two: their difference. One: its own interval."""
    k = len(quiet)
    used = quietest_half(quiet)
    within = statistics.median((r.ci_high_ms - r.ci_low_ms) / 2 for r in used) / math.sqrt(len(used))
    if k == 1:
        return quiet[0].ci_low_ms, quiet[0].ci_high_ms
    if k == 2:
        half = max(abs(quiet[0].median_ms - quiet[1].median_ms), within)
        return center - half, center + half
    rng = random.Random(k)
    boot = [_center([quiet[rng.randrange(k)] for _ in range(k)]) for _ in range(_BOOTSTRAP)]
    half = math.sqrt((t_quantile(k - 1) * statistics.stdev(boot)) ** 2 + within ** 2)
    return center - half, center + half


_BOOTSTRAP = 300


def quiet_estimate(rounds: Sequence[Round], floor_us: float | None, *, need: int = 1,
                   tol: float = QUIET_TOL, model_floor_ms: float | None = None) -> Estimate:
    """The quiet state's latency over ``rounds`` (see the module's rules); ``need``: how many
    quiet rounds a stable estimate takes; ``model_floor_ms``: the model's own floor from its
    earlier records on the device, if any."""
    if not rounds:
        raise ValueError("quiet_estimate of no rounds")
    floor = job_floor(rounds, floor_us)
    quiet = quiet_flags(rounds, floor_us, tol, model_floor_ms=model_floor_ms)
    n_quiet = sum(quiet)
    reason = ""
    if n_quiet == 0:
        refs = [r.reference_us for r in rounds if r.reference_us is not None]
        own = low_level(refs) if refs else None
        fastest = min(r.median_ms for r in rounds)
        if own and floor and own > floor * (1 + tol):
            reason = (f"every round ran slow: the reference read {own / floor - 1:+.0%} against the device's "
                      f"floor of {floor:.1f} µs")
        elif model_floor_ms is not None and fastest > model_floor_ms * (1 + MODEL_TOL):
            reason = (f"every round ran slow: {fastest / model_floor_ms - 1:+.0%} against this model's earlier "
                      f"records on the device ({model_floor_ms:.4g} ms)")
        else:
            reason = "every round ran slow: the speed probe saw most runs slowed"
    elif n_quiet < need:
        reason = f"only {n_quiet} of {len(rounds)} rounds ran quiet (wanted {need})"
    center = _center(rounds)
    lo, hi = _interval(rounds, center)
    half = quietest_half(rounds)
    used = tuple(any(r is k for k in half) for r in rounds)
    if reason:  # an honest interval for a figure that may not be the quiet state's: every round kept
        lo = min([lo] + [r.ci_low_ms for r in rounds])
        hi = max([hi] + [r.ci_high_ms for r in rounds])
    return Estimate(center, lo, hi, quiet, used, floor, bool(reason), reason)


def enough_rounds(rounds: Sequence[Round], floor_us: float | None, *, need: int, max_rounds: int,
                  target_ci: float, tol: float = QUIET_TOL, model_floor_ms: float | None = None) -> bool:
    """Whether a job measured in rounds is done: ``max_rounds`` reached, or at least ``need``
    quiet rounds whose interval is within ±``target_ci`` (0: any interval)."""
    if len(rounds) >= max_rounds:
        return True
    if len(rounds) < need:
        return False
    est = quiet_estimate(rounds, floor_us, need=need, tol=tol, model_floor_ms=model_floor_ms)
    return not est.unstable and (target_ci <= 0 or est.half_width <= target_ci)


def paired_ratio(a: Sequence[Round], b: Sequence[Round], floor_us: float | None = None,
                 tol: float = QUIET_TOL) -> Ratio:
    """``b / a`` over rounds measured alternately (round i of a next to round i of b). Uses the
    pairs where both rounds ran quiet when there are at least 3, else every pair (then
    ``unstable``); the interval is Student's t over the log-ratios."""
    n = min(len(a), len(b))
    if n == 0:
        raise ValueError("paired_ratio needs at least one round of each model")
    a, b = list(a[:n]), list(b[:n])
    floor = job_floor(a + b, floor_us)
    qa, qb = quiet_flags(a, floor, tol), quiet_flags(b, floor, tol)
    per = tuple(rb.median_ms / ra.median_ms for ra, rb in zip(a, b, strict=True))
    use = [p for p, x, y in zip(per, qa, qb, strict=True) if x and y]
    unstable = len(use) < min(3, n)
    if unstable:
        use = list(per)
    logs = [math.log(p) for p in use]
    center = statistics.median(logs)
    if len(logs) >= 2:
        half = t_quantile(len(logs) - 1) * 1.253 * statistics.stdev(logs) / math.sqrt(len(logs))
    else:
        half = math.inf
    return Ratio(math.exp(center), math.exp(center - half), math.exp(center + half) if half < math.inf else math.inf,
                 len(use), per, unstable)
