"""``sim://PROFILE?seed=N``: a simulated device behind the same Device protocol as real ones.

Each run's duration is the profile's noise-free latency times seeded lognormal jitter, with
occasional interruptions (outliers) — and it goes through the *same* measurement protocol
as a real device, on a virtual clock, so warm-up, stopping rule and outlier flagging behave
as they would on hardware. The noise stream is seeded by (seed, workload, settings): the
same seed gives the same numbers, another seed other noise around the same medians.

Thermal state (profiles with a ``thermal`` model) lives in the device instance and is
carried from run to run on the same virtual clock: busy time heats the die, the idle gap
between workloads cools it, and above the threshold the clock drops. It is deterministic:
the same sequence of jobs on a fresh device gives the same temperatures.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from farm import __version__
from farm.agent.measure import mad_outliers, run_protocol, summarize
from farm.devices.base import Health
from farm.devices.caps import DeviceCaps, device_caps
from farm.errors import InputError
from farm.ir.bits import BIT_WIDTHS_KEY, apply_bit_widths
from farm.measurement import Measurement, Settings
from farm.registry.spec import DeviceSpec
from farm.sim.model import CompileError, OutOfMemoryError, simulate
from farm.sim.profile import load_profile
from farm.workload import Workload

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
        th = self.profile.thermal
        self.temperature_c = th.ambient_c if th is not None else None
        self.busy_s = 0.0  # virtual time this instance has spent running models
        self._jobs = 0

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def caps(self) -> DeviceCaps:
        return device_caps(self.spec)

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "kind": "sim", "url": self.spec.url, "runtime": "sim",
                "profile": self.profile.name, "device_class": self.profile.device_class,
                "threads": self.spec.threads, "seed": self.seed, "simulated": True}

    def check(self) -> Health:
        p = self.profile
        facts: dict[str, Any] = {"profile": p.name, "device_class": p.device_class, "dtypes": list(p.dtypes),
                                 "simulated": True, "features": p.features(),
                                 "calibration": {k: v for k, v in p.calibration.items() if k != "figures"}}
        if self.temperature_c is not None:
            facts["temperature_c"] = round(self.temperature_c, 2)
        return Health(self.name, "ok", f"simulated: {p.description}", facts)

    def _heat(self, seconds: float, busy: bool) -> None:
        th = self.profile.thermal
        if th is None or self.temperature_c is None:
            return
        target = th.ambient_c + (th.busy_rise_c if busy else 0.0)
        self.temperature_c = target + (self.temperature_c - target) * math.exp(-seconds / th.tau_s)

    def _clock(self) -> float:
        th = self.profile.thermal
        if th is None or self.temperature_c is None or self.temperature_c < th.throttle_c:
            return 1.0
        return th.throttle_clock

    def _graph(self, workload: Workload) -> Any:
        """The workload's graph; for bit-serial profiles with per-layer bit widths from an ONNX
        file's metadata: key ``hwfarm.bit_widths`` (:func:`farm.ir.bits.apply_bit_widths`), JSON ``{"*": [w, a], "node name": [w, a]}``
        (ONNX has no place for them on the nodes themselves)."""
        graph = workload.graph
        if self.profile.bitserial is None or workload.format != "onnx" or not workload.data:
            return graph
        import onnx

        props = {p.key: p.value for p in onnx.load_model_from_string(workload.data).metadata_props}
        spec = props.get(BIT_WIDTHS_KEY)
        if spec is None:
            return graph
        return apply_bit_widths(graph, spec, label=workload.path or workload.name)

    def run(self, workload: Workload, settings: Settings) -> Measurement:
        label = workload.path or workload.name
        graph = self._graph(workload)
        try:
            result = simulate(graph, self.profile, threads=settings.threads)
        except (CompileError, OutOfMemoryError) as err:
            raise type(err)(f"{label}: {err}" if not str(err).startswith(f"{graph.name}:")
                            else f"{label}{str(err)[len(graph.name):]}") from None
        th = self.profile.thermal
        if th is not None and self._jobs:
            self._heat(th.idle_between_jobs_s, busy=False)
        self._jobs += 1
        start_c = self.temperature_c
        compute_s = sum(k.compute_ms for k in result.kernels) / 1e3
        noise = self.profile.noise
        rng = np.random.default_rng([self.seed, int(workload.hash[:15], 16), int(settings.hash[:15], 16)])
        base_s = result.latency_ms / 1e3
        now = [0.0]
        throttled = [0, 0]  # runs at a reduced clock, all runs

        def clock() -> float:
            return now[0]

        def run_once() -> None:
            factor = float(rng.lognormal(0.0, noise.cv)) if noise.cv > 0 else 1.0
            if noise.outlier_rate > 0 and rng.random() < noise.outlier_rate:
                factor *= float(rng.uniform(*noise.outlier_scale))
            f = self._clock()
            dt = (base_s + compute_s * (1 / f - 1)) * factor
            throttled[0] += f < 1
            throttled[1] += 1
            now[0] += dt
            self.busy_s += dt
            self._heat(dt, busy=True)

        sampled = run_protocol(run_once, settings.policy, clock=clock)
        samples = list(sampled.samples_ms)
        stats = summarize(samples, settings.policy.confidence)
        energy = result.energy_mj * stats.median_ms / result.latency_ms if result.energy_mj is not None else None
        provenance: dict[str, Any] = {
            "device": self.name, "device_url": self.spec.url, "simulated": True, "profile": self.profile.name,
            "device_class": self.profile.device_class, "seed": self.seed, "runtime": "sim",
            "runtime_version": f"hwfarm-sim {__version__}", "threads": settings.threads,
            "affinity": None, "python": None, "os": None, "cpu_model": f"simulated {self.profile.device_class}",
            "hwfarm_version": __version__, "stop_reason": sampled.stop_reason,
            "noise_free_latency_ms": result.latency_ms,
        }
        if result.accelerated:
            fallback = result.fallback_ops
            provenance["accelerator"] = self.profile.placement_name
            provenance["fallback_ops"] = fallback
            provenance["placement"] = {"accelerator_kernels": sum(k.placement != "cpu" for k in result.kernels),
                                       "cpu_kernels": sum(k.placement == "cpu" for k in result.kernels)}
        if self.profile.onchip is not None:
            provenance["streamed_param_kb"] = round(sum(k.link_bytes for k in result.kernels if k.stream_ms) / 1024, 1)
        if result.peak_sram_kb is not None:
            provenance["peak_sram_kb"] = round(result.peak_sram_kb, 1)
            provenance["flash_kb"] = round(result.flash_kb or 0.0, 1)
        if th is not None:
            provenance["thermal"] = {"start_c": round(start_c or 0.0, 2), "end_c": round(self.temperature_c or 0.0, 2),
                                     "throttle_c": th.throttle_c, "throttled_runs": throttled[0], "runs": throttled[1],
                                     "throttled": self._clock() < 1, "device_busy_s": round(self.busy_s, 3)}
            provenance["temperature_c"] = round(self.temperature_c or 0.0, 2)
        breakdown = tuple(k.to_json() for k in result.kernels)
        return Measurement(
            device=self.name, workload=workload.hash, settings=settings, stats=stats,
            samples_ms=tuple(samples), outliers=tuple(mad_outliers(samples)), warmup_ms=sampled.warmup_ms,
            stop_reason=sampled.stop_reason, provenance=provenance, energy_mj=energy, breakdown=breakdown,
            peak_memory_kb=result.peak_sram_kb,
            created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )

    def close(self) -> None:
        pass
