"""Hardware-aware search on accelerators and microcontrollers: operator fallback, the
simulator's latency as a cost model, and the fit of a candidate on an MCU device.

**Fallback.** An accelerator (Edge TPU, phone NPU) runs the operators its compiler maps and
sends the rest to its host CPU; on the Edge TPU everything after the first unmapped operator
goes too. :class:`FallbackModel` predicts, per candidate graph, which operators fall back —
by the placement the simulator applies (:func:`farm.sim.model.place_kernels` on the kernels
of :func:`farm.ir.kernels.form_kernels`, the device's fusion rules), so the prediction and
what ``sim://edgetpu`` reports are one rule. In a search it is a constraint (at most N ops on
the CPU, the accelerator-aware search of Gupta & Akin, 2020) or a penalty on latency
(:class:`FallbackPenalty`, which with a large weight also makes a hard limit).

**Cost.** :class:`SimLatencyModel` prices candidates by the simulator's analytical,
noise-free latency and energy for a profile: the simulated device's own model, so on that
device "predicted" and "measured" differ only by its seeded noise. It stands in where no
predictor bundle was trained for the device; it is not a learned predictor.

**MCU fit.** :func:`mcu_limits` turns a device's SRAM and flash into the search's limits
(the runtime's own share taken off), and :func:`run_on_mcu` runs a candidate as an int8
``.tflite`` on an MCU device through its Device protocol (``sim://cortex_m7`` computes peak
SRAM by tensor liveness and flash as weights + runtime; over either is an out-of-memory
failure): the proof that what a search returns fits.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from farm.errors import InputError
from farm.ir.graph import Graph
from farm.sim.profile import SimProfile

__all__ = ["Fallback", "FallbackModel", "FallbackPenalty", "SimLatencyModel", "McuFit", "device_profile",
           "mcu_limits", "run_on_mcu"]


def device_profile(device: str, *, registry: str | os.PathLike[str] = "devices.yaml") -> SimProfile:
    """The simulator profile that models ``device``: a simulated device's own; a real Edge TPU
    (a LiteRT ``edgetpu`` delegate) is modelled by the ``edgetpu`` profile's placement rules."""
    from farm.devices.caps import device_caps
    from farm.registry.spec import load_registry
    from farm.sim.profile import load_profile

    caps = device_caps(load_registry(registry).get(device))
    if caps.profile is not None:
        return load_profile(caps.profile)
    if caps.accelerator == "edgetpu":
        return load_profile("edgetpu")
    raise InputError(f"device {device!r}: no simulator profile models it (only simulated devices and Edge TPUs "
                     f"have one)")


# ---------------------------------------------------------------------------- fallback


@dataclass(frozen=True)
class Fallback:
    """Where one graph's operators run on an accelerator: ``op_names`` fall back to the host
    CPU (nodes of the graph, in order); ``compiles`` is False where no compute op maps (a
    float model on an int8-only chip: the whole graph runs on the CPU, or not at all)."""

    accelerator: str
    op_names: tuple[str, ...]
    ops: int  # nodes in the graph
    fallback_macs: int
    macs: int
    compiles: bool = True

    @property
    def fallback_ops(self) -> int:
        return len(self.op_names)

    @property
    def fallback_macs_share(self) -> float:
        """Share of the graph's MACs computed on the CPU (0 … 1)."""
        return self.fallback_macs / self.macs if self.macs else 0.0

    @property
    def first(self) -> str | None:
        """The first node on the CPU (with ``rest_of_graph`` fallback: where the accelerator stops)."""
        return self.op_names[0] if self.op_names else None

    def to_json(self) -> dict[str, Any]:
        return {"accelerator": self.accelerator, "fallback_ops": self.fallback_ops, "ops": self.ops,
                "fallback_macs_share": round(self.fallback_macs_share, 6), "first": self.first,
                "compiles": self.compiles}


class FallbackModel:
    """Predicted operator fallback of graphs on an accelerator profile (see the module doc)."""

    def __init__(self, profile: SimProfile) -> None:
        if profile.accelerator is None:
            raise InputError(f"profile {profile.name!r} has no accelerator: nothing falls back to a CPU")
        self.profile = profile

    @classmethod
    def for_device(cls, device: str, *, registry: str | os.PathLike[str] = "devices.yaml") -> FallbackModel:
        p = device_profile(device, registry=registry)
        if p.accelerator is None:
            raise InputError(f"device {device!r} ({p.name}) has no accelerator: there is no operator fallback to "
                             f"limit")
        return cls(p)

    def predict(self, graph: Graph) -> Fallback:
        from farm.ir.kernels import form_kernels
        from farm.sim.model import place_kernels

        p = self.profile
        assert p.accelerator is not None
        kernels = form_kernels(graph, p.fusion, p.vector_width, fold_constants=p.fold_constants)
        placement = place_kernels(kernels, p)
        cpu = [k for k, where in zip(kernels, placement, strict=True) if where == "cpu"]
        mac = [where for k, where in zip(kernels, placement, strict=True) if k.macs]
        return Fallback(p.accelerator.name, tuple(n for k in cpu for n in k.nodes), len(graph.nodes),
                        sum(k.macs for k in cpu), int(graph.macs), compiles=not mac or any(w != "cpu" for w in mac))

    def predict_batch(self, space: str, archs: Sequence[str], graphs: Sequence[Graph]) -> np.ndarray:
        """(n,) operators that fall back, per architecture (``graphs`` in the same order)."""
        return np.array([self.predict(graphs[i]).fallback_ops for i in range(len(archs))], dtype=float)


class FallbackPenalty:
    """A latency model plus a penalty for falling back: ``ms_per_op`` per operator on the CPU
    beyond ``free_ops``. Energy is passed through unchanged.

    A soft preference with a small ``ms_per_op``; a hard limit of ``free_ops`` operators with
    a large one (``HARD_MS_PER_OP``) and any latency limit of the search — graded, so that a
    constrained sampler (NSGA-II) is led towards fewer fallbacks rather than searching blind
    (the penalty method, for a :class:`~nas.objectives.Constraints` without a fallback limit)."""

    HARD_MS_PER_OP = 1e4

    def __init__(self, latency: Any, fallback: FallbackModel, *, ms_per_op: float, free_ops: int = 0):
        if not ms_per_op >= 0 or free_ops < 0:
            raise InputError(f"fallback penalty {ms_per_op} ms per op beyond {free_ops}: both must be >= 0")
        self.latency = latency
        self.fallback = fallback
        self.ms_per_op = ms_per_op
        self.free_ops = free_ops

    def predict_batch(self, space: str, archs: Sequence[str], graphs: Sequence[Graph]
                      ) -> tuple[np.ndarray, np.ndarray | None]:
        lat, en = self.latency.predict_batch(space, archs, graphs)
        ops = self.fallback.predict_batch(space, archs, graphs)
        return np.asarray(lat, dtype=float) + self.ms_per_op * np.maximum(ops - self.free_ops, 0.0), en


# ---------------------------------------------------------------------------- cost


class SimLatencyModel:
    """The simulator's noise-free latency (ms) and energy (mJ) for a profile, as a search's
    :class:`~nas.objectives.LatencyModel`. MCU memory limits are not applied here (a candidate
    over them still gets a price; the search's SRAM/flash limits decide); a model the device
    cannot compile at all (a float graph on an int8-only chip) is an InputError."""

    def __init__(self, profile: SimProfile, *, threads: int = 1) -> None:
        self.profile = profile.model_copy(update={"mcu": None}) if profile.mcu is not None else profile
        self.name = profile.name
        self.threads = threads

    @classmethod
    def for_device(cls, device: str, *, registry: str | os.PathLike[str] = "devices.yaml") -> SimLatencyModel:
        return cls(device_profile(device, registry=registry))

    @property
    def has_energy(self) -> bool:
        return self.profile.power is not None

    def predict_batch(self, space: str, archs: Sequence[str], graphs: Sequence[Graph]
                      ) -> tuple[np.ndarray, np.ndarray | None]:
        from farm.sim.model import CompileError, simulate

        lat, en = np.empty(len(archs)), np.empty(len(archs))
        for i in range(len(archs)):
            try:
                r = simulate(graphs[i], self.profile, threads=self.threads)
            except CompileError as err:
                raise InputError(f"{space} {archs[i]}: {err}") from None
            lat[i] = r.latency_ms
            en[i] = np.nan if r.energy_mj is None else r.energy_mj
        return lat, (en if self.has_energy else None)


# ---------------------------------------------------------------------------- MCU fit


def mcu_limits(device: str, *, registry: str | os.PathLike[str] = "devices.yaml", max_sram_kb: float | None = None,
               max_flash_kb: float | None = None) -> tuple[float, float]:
    """(SRAM KB, flash KB) a candidate's graph may use on an MCU device: the device's limits
    (or the tighter ``max_*``, also device totals) less what its runtime takes — what to pass
    as the search's ``max_sram_kb`` / ``max_flash_kb``, which bound the graph alone."""
    from farm.devices.caps import device_caps
    from farm.registry.spec import load_registry

    caps = device_caps(load_registry(registry).get(device))
    if caps.sram_kb is None or caps.flash_kb is None:
        raise InputError(f"device {device!r} has no SRAM/flash limits (not an MCU)")
    sram = min(caps.sram_kb, max_sram_kb if max_sram_kb is not None else math.inf)
    flash = min(caps.flash_kb, max_flash_kb if max_flash_kb is not None else math.inf)
    if sram <= caps.runtime_sram_kb or flash <= caps.runtime_flash_kb:
        raise InputError(f"device {device!r}: its runtime alone takes {caps.runtime_sram_kb:g} KB SRAM and "
                         f"{caps.runtime_flash_kb:g} KB flash; limits {sram:g} / {flash:g} KB leave nothing")
    return sram - caps.runtime_sram_kb, flash - caps.runtime_flash_kb


@dataclass(frozen=True)
class McuFit:
    """One candidate run on an MCU device. ``sram_kb`` / ``flash_kb``: peak SRAM and flash with
    the runtime's share, as the device reports them (computed from the model file where it
    refused the model); ``error``: the out-of-memory message where it did not fit."""

    name: str
    fits: bool
    sram_kb: float
    flash_kb: float
    sram_limit_kb: float
    flash_limit_kb: float
    latency_ms: float | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "fits": self.fits, "sram_kb": round(self.sram_kb, 1),
                "flash_kb": round(self.flash_kb, 1), "sram_limit_kb": self.sram_limit_kb,
                "flash_limit_kb": self.flash_limit_kb, "latency_ms": self.latency_ms, "error": self.error}


def run_on_mcu(graph: Graph, *, device: str, registry: str | os.PathLike[str] = "devices.yaml",
               name: str | None = None, seed: int = 0) -> McuFit:
    """Write ``graph`` as a full-integer int8 ``.tflite`` (what MCU runtimes take; needs
    ``ai-edge-litert``), load it as a workload and run it on ``device`` through the Device
    protocol. An out-of-memory refusal is a result (``fits=False``), not an error."""
    from farm.devices import open_device
    from farm.devices.caps import device_caps
    from farm.formats.tflite_export import graph_to_tflite
    from farm.ir.memory import flash_kb, peak_sram_kb
    from farm.measurement import Policy, Settings, resolve_runtime
    from farm.registry.spec import load_registry
    from farm.sim.model import OutOfMemoryError
    from farm.workload import workload_from_bytes

    spec = load_registry(registry).get(device)
    caps = device_caps(spec)
    if caps.sram_kb is None or caps.flash_kb is None:
        raise InputError(f"device {device!r} has no SRAM/flash limits (not an MCU)")
    label = name or graph.name
    try:
        data = graph_to_tflite(graph, dtype="int8", seed=seed)
    except ImportError:
        raise InputError("running a candidate on an MCU needs the .tflite schema: pip install 'hwfarm[litert]'") from None
    w = workload_from_bytes(data, fmt="tflite", name=label)
    sram = peak_sram_kb(w.graph)[0] + caps.runtime_sram_kb
    flash = flash_kb(w.graph) + caps.runtime_flash_kb
    dev = open_device(spec)
    settings = Settings(runtime=resolve_runtime(spec.default_runtime, w.format), threads=spec.threads,
                        policy=Policy(warmup=1, warmup_s=0, min_runs=3, min_time_s=0, max_runs=10, max_time_s=1.0))
    try:
        m = dev.run(w, settings)
    except OutOfMemoryError as err:
        return McuFit(label, False, sram, flash, caps.sram_kb, caps.flash_kb, error=str(err))
    finally:
        dev.close()
    prov = m.provenance
    return McuFit(label, True, float(prov.get("peak_sram_kb", sram)), float(prov.get("flash_kb", flash)),
                  caps.sram_kb, caps.flash_kb, float(m.latency_ms))
