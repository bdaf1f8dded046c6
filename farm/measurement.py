"""Settings of a run and the Measurement record it produces.

A measurement is keyed by ``(device, workload hash, settings hash)``: asking for the same
key again returns the stored record unless forced. Units are in field names.

Rounds: a shared machine drifts over seconds to minutes (a noisy neighbour, memory
contention no speed probe sees), so one measurement of a model samples whichever state the
machine was in for its second or two. With rounds, the scheduler measures every queued model
once, then every model again, and so on, each round in a fresh runtime session. How the
rounds become one record is the settings' ``estimator``:

- ``quiet`` (``hwfarm profile``'s and the dataset build's default): each round carries the
  reference workload's readings (``farm.agent.reference``); the record is the quiet rounds'
  median with a between-round interval, rounds are added until enough ran quiet and the
  interval is within ``policy.target_ci`` (``rounds`` is the quiet rounds wanted,
  ``max_rounds`` the most run), and a record that never found enough quiet rounds is marked
  unstable (:mod:`farm.estimate`);
- ``pooled`` (the default of a bare ``Settings``, and what every record written before the
  quiet estimator means): ``rounds`` rounds, every run pooled into one median.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from farm.agent.measure import LatencyStats, Policy, rejected, summarize
from farm.estimate import QUIET_TOL, Estimate, Round, quiet_estimate, record_level, round_of

__all__ = ["Settings", "Measurement", "LatencyStats", "Policy", "merge_rounds", "rounds_of", "record_rounds", "resolve_runtime",
           "RUNTIME_FOR_FORMAT", "ESTIMATORS"]

ESTIMATORS = ("pooled", "quiet")


@dataclass(frozen=True)
class Settings:
    """How to run a workload: runtime, threads, CPU pinning, the measurement policy of each
    round, and the rounds (each a full measurement under the policy in a fresh session,
    interleaved with the other queued models). ``rounds``: the rounds wanted (``pooled``:
    exactly these; ``quiet``: this many quiet ones); ``max_rounds``: the most a ``quiet``
    job runs (default: ``rounds``); ``estimator``: how rounds become one record (module doc)."""

    runtime: str = "onnxruntime"
    threads: int = 1
    affinity: tuple[int, ...] | None = None
    policy: Policy = field(default_factory=Policy)
    rounds: int = 1
    max_rounds: int | None = None
    estimator: str = "pooled"

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise ValueError("rounds must be >= 1")
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {', '.join(ESTIMATORS)} (got {self.estimator!r})")
        if self.max_rounds is not None and (self.max_rounds < self.rounds or self.estimator != "quiet"):
            raise ValueError("max_rounds must be >= rounds, and only the quiet estimator adds rounds")

    @property
    def round_limit(self) -> int:
        """The most rounds a job with these settings runs."""
        return self.max_rounds or self.rounds

    @property
    def in_rounds(self) -> bool:
        """Whether the scheduler measures jobs with these settings round by round: every
        ``quiet`` job is (its first round may be slow and call for another)."""
        return self.round_limit > 1 or self.estimator == "quiet"

    def to_dict(self) -> dict[str, Any]:
        d = {"runtime": self.runtime, "threads": self.threads,
             "affinity": list(self.affinity) if self.affinity is not None else None,
             "policy": asdict(self.policy)}
        # Only what differs from the first release's defaults: a one-round pooled
        # measurement keeps the key it had before rounds and estimators existed.
        return d | ({"rounds": self.rounds} if self.rounds > 1 else {}) \
            | ({"max_rounds": self.max_rounds} if self.max_rounds is not None else {}) \
            | ({"estimator": self.estimator} if self.estimator != "pooled" else {})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Settings:
        aff = d.get("affinity")
        mr = d.get("max_rounds")
        return cls(runtime=d["runtime"], threads=int(d["threads"]),
                   affinity=tuple(aff) if aff is not None else None,
                   policy=Policy(**d.get("policy", {})), rounds=int(d.get("rounds", 1)),
                   max_rounds=int(mr) if mr is not None else None, estimator=str(d.get("estimator", "pooled")))

    @property
    def hash(self) -> str:
        """Stable digest of everything that can change a result."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Measurement:
    """One measured (device, workload, settings). ``samples_ms`` holds every timed run,
    outliers included; ``outliers`` are their indices; ``stats`` summarizes the inliers."""

    device: str
    workload: str
    settings: Settings
    stats: LatencyStats
    samples_ms: tuple[float, ...]
    outliers: tuple[int, ...]
    warmup_ms: tuple[float, ...]
    stop_reason: str
    provenance: dict[str, Any]
    energy_mj: float | None = None
    peak_memory_kb: float | None = None
    # Per-kernel breakdown where the device reports one: [{"name", "ops", "class", "latency_ms", "placement"}]
    breakdown: tuple[dict[str, Any], ...] = ()
    created_at: str = ""
    id: int | None = None

    @property
    def latency_ms(self) -> float:
        return self.stats.median_ms

    def to_json(self, *, model: str | None = None) -> dict[str, Any]:
        """The ``hwfarm profile --json`` object (a contract: keys are only ever added)."""
        s = self.stats
        return {
            "model": model,
            "device": self.device,
            "latency_ms": s.median_ms,
            "latency_stats": {
                "median": s.median_ms, "mean": s.mean_ms, "p10": s.p10_ms, "p90": s.p90_ms,
                "std": s.std_ms, "cv": s.cv, "n": s.n, "n_outliers": s.n_outliers,
                "ci95": [s.ci_low_ms, s.ci_high_ms], "stop_reason": self.stop_reason,
            },
            "energy_mj": self.energy_mj,
            "kernels": list(self.breakdown),
            "workload": self.workload,
            "settings": self.settings.to_dict(),
            "provenance": self.provenance,
            "measurement_id": self.id,
            "created_at": self.created_at,
        }


def rounds_of(ms: list[Measurement]) -> list[Round]:
    """The estimator's view of a job's rounds (``farm.estimate``)."""
    return [round_of(m.stats.median_ms, m.stats.ci_low_ms, m.stats.ci_high_ms, m.stats.n, m.provenance, m.created_at)
            for m in ms]


def record_rounds(m: Measurement) -> list[Round]:
    """A stored record's rounds, as the estimator sees them, from its provenance (empty for a
    record measured in one go)."""
    out = []
    for r in m.provenance.get("rounds") or []:
        lo, hi = r.get("ci95") or [r["median_ms"], r["median_ms"]]
        share = r.get("contended_share")
        out.append(Round(float(r["median_ms"]), float(lo), float(hi), int(r.get("n", 0)), r.get("reference_us"),
                         str(r.get("measured_at", "")), r.get("session"),
                         float(share) if isinstance(share, (int, float)) else None))
    return out


def merge_rounds(rounds: list[Measurement], settings: Settings, *, floor_us: float | None = None,
                 model_floor_ms: float | None = None) -> Measurement:
    """One record of a model measured in several rounds (the settings' ``estimator``).

    ``pooled``: every round's runs (and warm-up runs) in order, statistics over all of them.
    The runs each round left out (contended, outliers) stay out, and no outlier rule runs on
    the pool: a round the machine ran slower is what rounds are for, not an outlier.

    ``quiet``: the median and interval are :func:`farm.estimate.quiet_estimate`'s over the
    rounds, judged against ``floor_us`` (the device's reference floor) and ``model_floor_ms``
    (the model's own floor from its earlier records); the other
    statistics (mean, p10, p90, CV, n) are over the quiet rounds' runs, and every other run
    is listed as left out. Provenance gains ``estimator``, ``reference`` (floor, this
    record's lowest reading, tolerance), ``unstable`` and, when unstable, ``unstable_reason``.

    Both: energy is the mean per inference weighted by each round's runs; provenance is the
    last round's plus ``rounds``: each round's median, runs, time, session, reference
    reading and (``quiet``) whether it ran quiet."""
    if not rounds:
        raise ValueError("merge_rounds of no rounds")
    samples: list[float] = []
    dropped: list[int] = []
    spans: list[range] = []
    for r in rounds:
        dropped += [len(samples) + i for i in r.outliers]
        spans.append(range(len(samples), len(samples) + len(r.samples_ms)))
        samples += r.samples_ms
    views = rounds_of(rounds)
    est: Estimate | None = None
    if settings.estimator == "quiet":
        est = quiet_estimate(views, floor_us, need=settings.rounds, model_floor_ms=model_floor_ms)
        used = {i for span, u in zip(spans, est.used, strict=True) if u for i in span}
        dropped = sorted(set(dropped) | (set(range(len(samples))) - used))
    if not samples:  # a device that reports statistics, not runs (benchmark_model over ADB, a serial board)
        used_rounds = [r for r, u in zip(rounds, est.used if est else [True] * len(rounds), strict=True) if u]
        stats = _stats_of_rounds(used_rounds)
    elif len(dropped) < len(samples):
        stats = summarize(samples, settings.policy.confidence, dropped, mad=False)
    else:
        stats = summarize(samples, settings.policy.confidence, mad=False)
    if est is not None:
        stats = _with_estimate(stats, est)
    energy = [(r.energy_mj, r.stats.n) for r in rounds if r.energy_mj is not None]
    last = rounds[-1]
    per_round = []
    for i, (r, v) in enumerate(zip(rounds, views, strict=True)):
        row: dict[str, Any] = {"median_ms": r.stats.median_ms, "n": r.stats.n, "stop_reason": r.stop_reason,
                               "measured_at": r.provenance.get("measured_at", r.created_at)}
        if est is not None:
            row |= {"ci95": [r.stats.ci_low_ms, r.stats.ci_high_ms], "session": v.session,
                    "reference_us": v.reference_us, "quiet": est.quiet[i],
                    "contended_share": (r.provenance.get("contention") or {}).get("contended_share")}
        per_round.append(row)
    provenance = dict(last.provenance) | {"rounds": per_round}
    if est is not None:
        refs = [v.reference_us for v in views if v.reference_us is not None]
        provenance |= {
            "estimator": "quiet",
            "reference": (dict(last.provenance.get("reference") or {}) | {
                "floor_us": est.floor_us, "min_us": min(refs), "level_us": record_level(views),
                "tol": QUIET_TOL, "model_floor_ms": model_floor_ms}) if refs else None,
            "unstable": est.unstable,
            **({"unstable_reason": est.reason} if est.unstable else {}),
        }
    return Measurement(
        device=last.device, workload=last.workload, settings=settings, stats=stats, samples_ms=tuple(samples),
        outliers=tuple(rejected(samples, dropped, mad=False)) if est is None else tuple(dropped),
        warmup_ms=tuple(x for r in rounds for x in r.warmup_ms),
        stop_reason=f"{len(rounds)} rounds", provenance=provenance,
        energy_mj=sum(e * n for e, n in energy) / sum(n for _, n in energy) if len(energy) == len(rounds) else None,
        peak_memory_kb=max((r.peak_memory_kb for r in rounds if r.peak_memory_kb is not None), default=None),
        breakdown=last.breakdown, created_at=last.created_at)


def _stats_of_rounds(rounds: list[Measurement]) -> LatencyStats:
    """Statistics of rounds that came without their runs: medians and spreads of theirs."""
    def med(f: Any) -> float:
        return statistics.median(f(r.stats) for r in rounds)
    return LatencyStats(median_ms=med(lambda s: s.median_ms), mean_ms=med(lambda s: s.mean_ms),
                        p10_ms=min(r.stats.p10_ms for r in rounds), p90_ms=max(r.stats.p90_ms for r in rounds),
                        std_ms=med(lambda s: s.std_ms), cv=med(lambda s: s.cv), n=sum(r.stats.n for r in rounds),
                        n_outliers=sum(r.stats.n_outliers for r in rounds),
                        ci_low_ms=min(r.stats.ci_low_ms for r in rounds), ci_high_ms=max(r.stats.ci_high_ms for r in rounds))


def _with_estimate(stats: LatencyStats, est: Estimate) -> LatencyStats:
    """The quiet rounds' statistics with the estimator's median and between-round interval."""
    return LatencyStats(median_ms=est.median_ms, mean_ms=stats.mean_ms, p10_ms=stats.p10_ms, p90_ms=stats.p90_ms,
                        std_ms=stats.std_ms, cv=stats.cv, n=stats.n, n_outliers=stats.n_outliers,
                        ci_low_ms=est.ci_low_ms, ci_high_ms=est.ci_high_ms)


# Which runtime runs a model format when neither the job nor the device entry says.
RUNTIME_FOR_FORMAT = {"onnx": "onnxruntime", "tflite": "litert"}
_FORMATS_OF_RUNTIME = {"onnxruntime": {"onnx"}, "litert": {"tflite"}, "torch": {"onnx"},
                       "benchmark_model": {"tflite"}, "eembc": {"tflite", "onnx"}, "sim": {"onnx", "tflite", "ir"}}


def resolve_runtime(device_runtime: str | None, model_format: str) -> str:
    """The device entry's runtime when it can run the format, else the format's default."""
    if device_runtime and model_format in _FORMATS_OF_RUNTIME.get(device_runtime, set()):
        return device_runtime
    return RUNTIME_FOR_FORMAT.get(model_format, device_runtime or "onnxruntime")
