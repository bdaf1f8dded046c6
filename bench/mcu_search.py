"""The MCU space under hard memory limits, and accelerator-aware search (issue #28).

**MCU.** ``nas search --space mcu --device sim-cortex-m7`` through the Python API: the search's
SRAM and flash limits are the device's (1024 KB / 2048 KB on the Cortex-M7 profile) less
what its runtime takes (:func:`nas.accelerator.mcu_limits`); then every returned
architecture (the Pareto front and the best) is written as an int8 ``.tflite`` and run on
the simulated MCU (:func:`nas.accelerator.run_on_mcu`), which refuses what does not fit.
Target: 100 % of them fit. The same search without memory limits is the control: what
share of *its* front would have fit.

**Accelerator.** The same space on ``sim-edgetpu`` (Edge TPU: everything after the first
operator its compiler does not map runs on the host CPU) and ``sim-hexagon-npu`` (per-op
fallback), under a latency limit, three ways: cost alone; cost plus a penalty per fallback
operator; and at most 0 fallback operators. For the chosen architecture it reports the
predicted fallback (graph nodes on the CPU, share of MACs) and what the simulated device
reports running its int8 ``.tflite`` (TFLite operators on the CPU, latency).

Cost model (stated in the output): the simulator's analytical, noise-free latency of the
device's profile (:class:`nas.accelerator.SimLatencyModel`) — no predictor bundle is
trained here; on these simulated devices it is their own model, so prediction and
measurement differ by the device's seeded noise only.

Accuracy (stated in the output): **a stand-in**, not an estimate — no accuracy table exists
for this space. ``31 + 7.2·ln(MMACs)``, monotone in MACs, fitted through two MobileNetV2
ImageNet points (0.35-224: 59 M MACs, 60.3 %; 1.0-224: 300 M MACs, 72.0 %), plus an assumed
``--hswish-bonus`` points per h-swish stage (so that the accelerator runs have a reason to
want the operator the Edge TPU lacks). Replace with a zero-cost proxy or a learned accuracy
predictor (:mod:`nas.accuracy`) for real use.

    .venv/bin/python bench/mcu_search.py [--trials 300] [--seeds 3] [--strategy nsga2] [--json]

(about 10 minutes on 2 shared cores; ``--skip-mcu`` / ``--skip-accelerators`` run one half.)
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from farm.zoo.mcu_space import MCUSpace, parse_arch
from farm.zoo.spaces import SPACES
from nas.accelerator import FallbackModel, FallbackPenalty, SimLatencyModel, mcu_limits, run_on_mcu
from nas.objectives import Constraints
from nas.search import SearchConfig, SearchResult, search

REGISTRY = """\
devices:
  - {name: sim-cortex-m7, url: "sim://cortex_m7?seed=0", runtime: sim}
  - {name: sim-cortex-m4, url: "sim://cortex_m4?seed=0", runtime: sim}
  - {name: sim-edgetpu, url: "sim://edgetpu?seed=0", runtime: sim}
  - {name: sim-hexagon-npu, url: "sim://hexagon_npu?seed=0", runtime: sim}
"""
STANDIN = "stand-in: 31 + 7.2 ln(MMACs) + {bonus:g} per h-swish stage (not an accuracy estimate)"
COST = "simulator's analytical noise-free latency of the device's profile (not a trained predictor)"


class MacsStandIn:
    """The stand-in accuracy of the module doc (top-1 %-like; monotone in MACs)."""

    def __init__(self, space: MCUSpace, *, hswish_bonus: float):
        self.space = space
        self.hswish_bonus = hswish_bonus
        self._macs = lru_cache(maxsize=None)(lambda a: space.to_graph(a).macs)

    def estimate(self, space: str, archs: Sequence[str]) -> np.ndarray:
        out = []
        for a in archs:
            hs = sum(act == "hswish" for act, _ in parse_arch(a).stages)
            out.append(31.0 + 7.2 * math.log(self._macs(a) / 1e6) + self.hswish_bonus * hs)
        return np.array(out)


def _native_fallback_limit() -> bool:
    """Whether :class:`Constraints` limits fallback itself (``max_fallback_ops``)."""
    return "max_fallback_ops" in getattr(Constraints, "__dataclass_fields__", {})


def mcu_rows(space: MCUSpace, registry: Path, a: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    acc = MacsStandIn(space, hswish_bonus=a.hswish_bonus)
    for device in a.mcus:
        sram, flash = mcu_limits(device, registry=registry)
        cost = SimLatencyModel.for_device(device, registry=registry)
        for limited in (True, False):
            cons = Constraints(max_sram_kb=sram, max_flash_kb=flash) if limited else Constraints()
            for seed in range(a.seeds):
                t0 = time.perf_counter()
                res = search("mcu", latency=cost, accuracy=acc, config=SearchConfig(
                    strategy=a.strategy, trials=a.trials, seed=seed, constraints=cons,
                    study_name=f"mcu-{device}-{limited}-{seed}"))
                secs = time.perf_counter() - t0
                shown = {c.arch: c for c in (*res.pareto, *([res.best] if res.best else []))}
                fits: list[dict[str, Any]] = []
                for arch, c in shown.items():
                    f = run_on_mcu(space.to_graph(arch), device=device, registry=registry)
                    runtime_kb = f.sram_limit_kb - sram  # the runtime's share of SRAM
                    fits.append({"arch": arch, "fits": f.fits, "search_sram_kb": c.sram_kb, "search_flash_kb": c.flash_kb,
                                 "device_sram_kb": round(f.sram_kb, 1), "device_flash_kb": round(f.flash_kb, 1),
                                 "device_activations_kb": round(f.sram_kb - runtime_kb, 1),
                                 "predicted_ms": round(c.latency_ms, 3), "measured_ms": f.latency_ms})
                n_fit = sum(x["fits"] for x in fits)
                best = res.best
                rows.append({
                    "device": device, "memory_limits": limited, "seed": seed, "search_sram_limit_kb": sram,
                    "search_flash_limit_kb": flash, "returned": len(fits), "fit": n_fit,
                    "fit_share": n_fit / len(fits) if fits else None, "seconds": round(secs, 2),
                    "feasible_candidates": sum(c.feasible for c in res.candidates), "candidates": len(res.candidates),
                    "best": None if best is None else {"arch": best.arch, "accuracy_standin": round(best.accuracy, 2),
                                                       "latency_ms": round(best.latency_ms, 3), "sram_kb": best.sram_kb,
                                                       "flash_kb": best.flash_kb, "mmacs": round((best.macs or 0) / 1e6, 1)},
                    # activations on the device (fused int8 .tflite) over the search's graph pass (BN and
                    # activations as their own tensors), median over the returned archs: the pass's margin
                    "sram_device_over_search": _median([x["device_activations_kb"] / x["search_sram_kb"]
                                                        for x in fits if x["search_sram_kb"]]),
                    "archs": fits})
                if not a.json:
                    r = rows[-1]
                    b = r["best"] or {}
                    print(f"{device:15s} {'limits' if limited else 'no limits':9s} seed {seed}: {r['fit']}/{r['returned']} "
                          f"returned fit ({r['feasible_candidates']}/{r['candidates']} feasible, {secs:.1f} s); best "
                          f"{b.get('mmacs')} M MACs {b.get('latency_ms')} ms, search SRAM {b.get('sram_kb')} KB "
                          f"flash {b.get('flash_kb')} KB", flush=True)
    return rows


def _median(xs: list[float]) -> float | None:
    return round(float(np.median(xs)), 3) if xs else None


def _report_best(space: MCUSpace, res: SearchResult, cost: SimLatencyModel, fm: FallbackModel, device: str,
                 registry: Path) -> dict[str, Any]:
    from farm.agent.measure import Policy
    from farm.devices import open_device
    from farm.formats.tflite_export import graph_to_tflite
    from farm.measurement import Settings
    from farm.registry.spec import load_registry
    from farm.workload import workload_from_bytes

    best = res.best
    if best is None:
        return {"best": None, "why": res.infeasible_message()}
    g = space.to_graph(best.arch)
    fb = fm.predict(g)
    w = workload_from_bytes(graph_to_tflite(g, dtype="int8"), fmt="tflite", name="best")
    dev = open_device(load_registry(registry).get(device))
    try:
        m = dev.run(w, Settings(runtime="sim", policy=Policy(warmup=1, warmup_s=0, min_runs=5, min_time_s=0,
                                                              max_runs=20, max_time_s=1.0)))
    finally:
        dev.close()
    predicted = float(cost.predict_batch("mcu", [best.arch], [g])[0][0])
    return {"arch": best.arch, "accuracy_standin": round(best.accuracy, 2), "predicted_ms": round(predicted, 3),
            "search_ms": round(best.latency_ms, 3),  # what the search saw: with a penalty where there is one
            "hswish_stages": [i for i, (act, _) in enumerate(parse_arch(best.arch).stages, start=1) if act == "hswish"],
            "predicted_fallback": fb.to_json(), "device_fallback_ops": len(m.provenance.get("fallback_ops", [])),
            "device_ops": len(w.graph.nodes), "measured_ms": round(float(m.latency_ms), 3),
            "feasible_candidates": sum(c.feasible for c in res.candidates), "candidates": len(res.candidates)}


def accelerator_rows(space: MCUSpace, registry: Path, a: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    acc = MacsStandIn(space, hswish_bonus=a.hswish_bonus)
    native = _native_fallback_limit()
    for device, budget in zip(a.accelerators, a.budgets_ms, strict=True):
        cost = SimLatencyModel.for_device(device, registry=registry)
        fm = FallbackModel.for_device(device, registry=registry)
        modes: list[tuple[str, Any, Constraints, dict[str, Any]]] = [
            ("cost only", cost, Constraints(max_latency_ms=budget), {}),
            (f"penalty {a.penalty_ms:g} ms/op", FallbackPenalty(cost, fm, ms_per_op=a.penalty_ms),
             Constraints(max_latency_ms=budget), {})]
        if native:
            limit = Constraints(max_latency_ms=budget, max_fallback_ops=0)  # type: ignore[call-arg]
            modes.append(("limit 0 ops", cost, limit, {"fallback": fm}))
        else:  # until nas.objectives has the limit: a penalty no latency limit admits (the penalty method)
            hard = FallbackPenalty(cost, fm, ms_per_op=FallbackPenalty.HARD_MS_PER_OP)
            modes.append(("limit 0 ops (penalty method)", hard, Constraints(max_latency_ms=budget), {}))
        for label, model, cons, kw in modes:
            for seed in range(a.seeds):
                t0 = time.perf_counter()
                res = search("mcu", latency=model, accuracy=acc, config=SearchConfig(
                    strategy=a.strategy, trials=a.trials, seed=seed, constraints=cons,
                    study_name=f"acc-{device}-{label}-{seed}"), **kw)
                r = {"device": device, "mode": label, "seed": seed, "latency_limit_ms": budget,
                     "seconds": round(time.perf_counter() - t0, 2), **_report_best(space, res, cost, fm, device, registry)}
                rows.append(r)
                if not a.json:
                    pf = r.get("predicted_fallback") or {}
                    print(f"{device:15s} {label:28s} seed {seed}: best {r.get('accuracy_standin')} at "
                          f"{r.get('predicted_ms')} ms (device {r.get('measured_ms')} ms); fallback predicted "
                          f"{pf.get('fallback_ops')} of {pf.get('ops')} nodes ({pf.get('fallback_macs_share', 0):.1%} "
                          f"of MACs), device {r.get('device_fallback_ops')} of {r.get('device_ops')} ops; h-swish "
                          f"stages {r.get('hswish_stages')}", flush=True)
    return rows


def _summary(mcu: list[dict[str, Any]], accel: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for limited in (True, False):
        sel = [r for r in mcu if r["memory_limits"] == limited]
        if sel:
            key = "fit_share" if limited else "fit_share_without_limits"
            out[key] = round(sum(r["fit"] for r in sel) / max(1, sum(r["returned"] for r in sel)), 4)
            out[key.replace("fit_share", "returned")] = sum(r["returned"] for r in sel)
    ratios = [r["sram_device_over_search"] for r in mcu if r["memory_limits"] and r["sram_device_over_search"]]
    if ratios:
        out["sram_device_over_search_median"] = round(float(np.median(ratios)), 3)
    for r in accel:
        k = f"{r['device']} / {r['mode']}"
        pf = r.get("predicted_fallback") or {}
        out.setdefault("fallback_ops_of_best", {}).setdefault(k, []).append(pf.get("fallback_ops"))
        out.setdefault("accuracy_standin_of_best", {}).setdefault(k, []).append(r.get("accuracy_standin"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=300)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--strategy", default="nsga2")
    ap.add_argument("--mcus", nargs="+", default=["sim-cortex-m7", "sim-cortex-m4"])
    ap.add_argument("--accelerators", nargs="+", default=["sim-edgetpu", "sim-hexagon-npu"])
    ap.add_argument("--budgets-ms", nargs="+", type=float, default=[4.0, 6.0], help="latency limit per accelerator")
    ap.add_argument("--penalty-ms", type=float, default=0.5, help="penalty per fallback operator (penalty mode)")
    ap.add_argument("--hswish-bonus", type=float, default=0.5, help="stand-in accuracy points per h-swish stage")
    ap.add_argument("--skip-mcu", action="store_true")
    ap.add_argument("--skip-accelerators", action="store_true")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if len(a.budgets_ms) != len(a.accelerators):
        ap.error("--budgets-ms needs one limit per --accelerators device")
    space = MCUSpace()
    SPACES.setdefault("mcu", space)  # until farm.zoo.spaces registers it
    space = SPACES["mcu"]  # type: ignore[assignment]
    with tempfile.TemporaryDirectory() as tmp:
        registry = Path(tmp) / "devices.yaml"
        registry.write_text(REGISTRY)
        if not a.json:
            print(f"cost: {COST}\naccuracy: {STANDIN.format(bonus=a.hswish_bonus)}\nstrategy {a.strategy}, "
                  f"{a.trials} trials, {a.seeds} seeds; fallback limit: "
                  f"{'Constraints.max_fallback_ops' if _native_fallback_limit() else 'penalty method (FallbackPenalty)'}",
                  flush=True)
        mcu = [] if a.skip_mcu else mcu_rows(space, registry, a)
        accel = [] if a.skip_accelerators else accelerator_rows(space, registry, a)
    doc = {"cost": COST, "accuracy": STANDIN.format(bonus=a.hswish_bonus), "strategy": a.strategy,
           "trials": a.trials, "seeds": a.seeds, "summary": _summary(mcu, accel), "mcu": mcu, "accelerators": accel}
    if a.json:
        print(json.dumps(doc))
    else:
        print(json.dumps(doc["summary"], indent=1))


if __name__ == "__main__":
    main()
