"""Settings of a run and the Measurement record it produces.

A measurement is keyed by ``(device, workload hash, settings hash)``: asking for the same
key again returns the stored record unless forced. Units are in field names.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from .agent.measure import LatencyStats, Policy

__all__ = ["Settings", "Measurement", "LatencyStats", "Policy", "resolve_runtime", "RUNTIME_FOR_FORMAT"]


@dataclass(frozen=True)
class Settings:
    """How to run a workload: runtime, threads, CPU pinning and the measurement policy."""

    runtime: str = "onnxruntime"
    threads: int = 1
    affinity: tuple[int, ...] | None = None
    policy: Policy = field(default_factory=Policy)

    def to_dict(self) -> dict[str, Any]:
        return {"runtime": self.runtime, "threads": self.threads,
                "affinity": list(self.affinity) if self.affinity is not None else None,
                "policy": asdict(self.policy)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Settings:
        aff = d.get("affinity")
        return cls(runtime=d["runtime"], threads=int(d["threads"]),
                   affinity=tuple(aff) if aff is not None else None,
                   policy=Policy(**d.get("policy", {})))

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


# Which runtime runs a model format when neither the job nor the device entry says.
RUNTIME_FOR_FORMAT = {"onnx": "onnxruntime", "tflite": "litert"}
_FORMATS_OF_RUNTIME = {"onnxruntime": {"onnx"}, "litert": {"tflite"}, "torch": {"onnx"},
                       "benchmark_model": {"tflite"}, "eembc": {"tflite", "onnx"}, "sim": {"onnx", "tflite", "ir"}}


def resolve_runtime(device_runtime: str | None, model_format: str) -> str:
    """The device entry's runtime when it can run the format, else the format's default."""
    if device_runtime and model_format in _FORMATS_OF_RUNTIME.get(device_runtime, set()):
        return device_runtime
    return RUNTIME_FOR_FORMAT.get(model_format, device_runtime or "onnxruntime")
