"""``sim://PROFILE?seed=N``: a simulated device behind the same Device protocol as real ones.

Each run's duration is the profile's noise-free latency times seeded lognormal jitter, with
occasional interruptions (outliers) — and it goes through the *same* measurement protocol
as a real device, on a virtual clock, so warm-up, stopping rule and outlier flagging behave
as they would on hardware. The noise stream is seeded by (seed, workload, settings): the
same seed gives the same numbers, another seed other noise around the same medians.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .. import __version__
from ..agent.measure import mad_outliers, run_protocol, summarize
from ..devices.base import Health
from ..errors import InputError, ModelError
from ..measurement import Measurement, Settings
from ..registry import DeviceSpec
from ..workload import Workload
from .model import simulate
from .profile import load_profile

__all__ = ["SimDevice"]


class SimDevice:
    def __init__(self, spec: DeviceSpec) -> None:
        url = spec.parsed_url
        self.spec = spec
        self.profile = load_profile(url.host)
        try:
            self.seed = int(url.query.get("seed", "0"))
        except ValueError:
            raise InputError(f"device {spec.name!r}: seed in {spec.url!r} must be an integer") from None

    @property
    def name(self) -> str:
        return self.spec.name

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "kind": "sim", "url": self.spec.url, "runtime": "sim",
                "profile": self.profile.name, "device_class": self.profile.device_class,
                "threads": self.spec.threads, "seed": self.seed, "simulated": True}

    def check(self) -> Health:
        p = self.profile
        return Health(self.name, "ok", f"simulated: {p.description}",
                      {"profile": p.name, "device_class": p.device_class, "dtypes": list(p.dtypes),
                       "simulated": True, "calibration": p.calibration})

    def _compile(self, workload: Workload) -> None:
        """Refuse what the hardware cannot run, as its compiler would (e.g. an int8-only
        accelerator handed a float model)."""
        supported = set(self.profile.dtypes)
        for node in workload.graph.nodes:
            if node.macs and node.dtype not in supported:
                raise ModelError(
                    f"{workload.path or workload.name}: {self.profile.name} cannot compile node {node.name!r} "
                    f"({node.op}, {node.dtype}); it runs {', '.join(self.profile.dtypes)} only")

    def run(self, workload: Workload, settings: Settings) -> Measurement:
        self._compile(workload)
        result = simulate(workload.graph, self.profile, threads=settings.threads)
        noise = self.profile.noise
        rng = np.random.default_rng([self.seed, int(workload.hash[:15], 16), int(settings.hash[:15], 16)])
        base_s = result.latency_ms / 1e3
        now = [0.0]

        def clock() -> float:
            return now[0]

        def run_once() -> None:
            factor = float(rng.lognormal(0.0, noise.cv)) if noise.cv > 0 else 1.0
            if noise.outlier_rate > 0 and rng.random() < noise.outlier_rate:
                factor *= float(rng.uniform(*noise.outlier_scale))
            now[0] += base_s * factor

        sampled = run_protocol(run_once, settings.policy, clock=clock)
        samples = list(sampled.samples_ms)
        stats = summarize(samples, settings.policy.confidence)
        energy = result.energy_mj * stats.median_ms / result.latency_ms if result.energy_mj is not None else None
        provenance = {
            "device": self.name, "device_url": self.spec.url, "simulated": True, "profile": self.profile.name,
            "device_class": self.profile.device_class, "seed": self.seed, "runtime": "sim",
            "runtime_version": f"hwfarm-sim {__version__}", "threads": settings.threads,
            "affinity": None, "python": None, "os": None, "cpu_model": f"simulated {self.profile.device_class}",
            "hwfarm_version": __version__, "stop_reason": sampled.stop_reason,
            "noise_free_latency_ms": result.latency_ms,
        }
        breakdown = tuple({"name": k.kernel.name, "ops": list(k.kernel.ops), "class": k.kernel.kernel_class,
                           "latency_ms": k.latency_ms, "placement": k.placement} for k in result.kernels)
        return Measurement(
            device=self.name, workload=workload.hash, settings=settings, stats=stats,
            samples_ms=tuple(samples), outliers=tuple(mad_outliers(samples)), warmup_ms=sampled.warmup_ms,
            stop_reason=sampled.stop_reason, provenance=provenance, energy_mj=energy, breakdown=breakdown,
            created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )

    def close(self) -> None:
        pass
