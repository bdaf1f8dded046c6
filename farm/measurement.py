"""Settings of a run and the Measurement record it produces.

A measurement is keyed by ``(device, workload hash, settings hash)``: asking for the same
key again returns the stored record unless forced. Units are in field names.

Rounds (``Settings.rounds`` > 1): a shared machine drifts over seconds to minutes (a noisy
neighbour, memory contention no speed probe sees), so one measurement of a model samples
whichever state the machine was in for its second or two. With rounds, the scheduler
measures every queued model once, then every model again, and so on; the record pools all
rounds' runs (:func:`merge_rounds`), so each model's median spans the whole session.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from farm.agent.measure import LatencyStats, Policy, rejected, summarize

__all__ = ["Settings", "Measurement", "LatencyStats", "Policy", "merge_rounds", "resolve_runtime", "RUNTIME_FOR_FORMAT"]


@dataclass(frozen=True)
class Settings:
    """How to run a workload: runtime, threads, CPU pinning, the measurement policy and how
    many rounds (each a full measurement under the policy, interleaved with the other
    queued models; the record pools their runs)."""

    runtime: str = "onnxruntime"
    threads: int = 1
    affinity: tuple[int, ...] | None = None
    policy: Policy = field(default_factory=Policy)
    rounds: int = 1

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise ValueError("rounds must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        d = {"runtime": self.runtime, "threads": self.threads,
             "affinity": list(self.affinity) if self.affinity is not None else None,
             "policy": asdict(self.policy)}
        # Only when above 1: a one-round measurement keeps the key it had before rounds existed.
        return d | ({"rounds": self.rounds} if self.rounds > 1 else {})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Settings:
        aff = d.get("affinity")
        return cls(runtime=d["runtime"], threads=int(d["threads"]),
                   affinity=tuple(aff) if aff is not None else None,
                   policy=Policy(**d.get("policy", {})), rounds=int(d.get("rounds", 1)))

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


def merge_rounds(rounds: list[Measurement], settings: Settings) -> Measurement:
    """One record of a model measured in several rounds: every round's runs (and warm-up
    runs) in order, statistics over all of them. The runs each round left out (contended,
    outliers) stay out, and no outlier rule runs on the pool: a round the machine ran slower
    is what rounds are for, not an outlier (within a round the spread is a few per cent,
    between rounds it can be tens, which MAD would cut a whole round for). Energy is the
    mean per inference weighted by each round's runs; provenance is the last round's plus
    ``rounds``: each round's median, runs and time."""
    if not rounds:
        raise ValueError("merge_rounds of no rounds")
    samples: list[float] = []
    dropped: list[int] = []
    for r in rounds:
        dropped += [len(samples) + i for i in r.outliers]
        samples += r.samples_ms
    stats = summarize(samples, settings.policy.confidence, dropped, mad=False)
    energy = [(r.energy_mj, r.stats.n) for r in rounds if r.energy_mj is not None]
    last = rounds[-1]
    provenance = dict(last.provenance) | {"rounds": [
        {"median_ms": r.stats.median_ms, "n": r.stats.n, "stop_reason": r.stop_reason,
         "measured_at": r.provenance.get("measured_at", r.created_at)} for r in rounds]}
    return Measurement(
        device=last.device, workload=last.workload, settings=settings, stats=stats, samples_ms=tuple(samples),
        outliers=tuple(rejected(samples, dropped, mad=False)), warmup_ms=tuple(x for r in rounds for x in r.warmup_ms),
        stop_reason=f"{len(rounds)} rounds", provenance=provenance,
        energy_mj=sum(e * n for e, n in energy) / sum(n for _, n in energy) if len(energy) == len(rounds) else None,
        peak_memory_kb=max((r.peak_memory_kb for r in rounds if r.peak_memory_kb is not None), default=None),
        breakdown=last.breakdown, created_at=last.created_at)


# Which runtime runs a model format when neither the job nor the device entry says.
RUNTIME_FOR_FORMAT = {"onnx": "onnxruntime", "tflite": "litert"}
_FORMATS_OF_RUNTIME = {"onnxruntime": {"onnx"}, "litert": {"tflite"}, "torch": {"onnx"},
                       "benchmark_model": {"tflite"}, "eembc": {"tflite", "onnx"}, "sim": {"onnx", "tflite", "ir"}}


def resolve_runtime(device_runtime: str | None, model_format: str) -> str:
    """The device entry's runtime when it can run the format, else the format's default."""
    if device_runtime and model_format in _FORMATS_OF_RUNTIME.get(device_runtime, set()):
        return device_runtime
    return RUNTIME_FOR_FORMAT.get(model_format, device_runtime or "onnxruntime")
