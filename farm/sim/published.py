"""Calibrating accelerator/MCU profiles on published figures.

A profile's ``calibration`` block lists **figures**: each is a network (a reference net of
:mod:`farm.zoo.nets` by name, or one layer for per-layer figures) with the settings it was
published at, and where its number comes from — a row of the shared
``published-latency/published_latency.csv`` selected by substrings of its columns (the
value is read from the CSV, never copied into the profile), or, for sources outside that
table, the value with its citation in the figure itself.

A handful of figures cannot pin down per-kernel-class costs, so the fit is deliberately
small: the profile's physically set costs are the prior, and calibration fits one scale
factor per term of the latency — ``compute`` (all MAC rates), ``memory`` (bandwidths),
``overhead`` (per-kernel and per-inference costs) and ``link`` (host transfers and
streamed parameters) — by non-negative least squares on relative error, with a pull of
``prior_weight`` toward 1 (no change). Host-CPU fallback time is not scaled. Where figures
carry energy (MLPerf Tiny), static and dynamic power are fitted the same way afterwards.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from farm.errors import InputError
from farm.ir.graph import Graph
from farm.sim.calibrate import nnls
from farm.sim.model import SimResult, simulate
from farm.sim.profile import SimProfile

__all__ = ["Figure", "load_figures", "fit_published", "figure_report", "summary", "TERMS", "find_published_table", "layer_graph"]

TERMS = ("compute", "memory", "overhead", "link")
_TABLE = Path("data") / "published-latency" / "published_latency.csv"


def find_published_table(explicit: Path | None = None) -> Path:
    import os

    if explicit is not None:
        if not explicit.is_file():
            raise InputError(f"{explicit}: no such file")
        return explicit
    env = os.environ.get("HWFARM_PUBLISHED_CSV")
    candidates = [Path(env)] if env else []
    repo = Path(__file__).resolve().parents[2]
    candidates += [Path.cwd() / "../shared" / _TABLE, repo.parent / "shared" / _TABLE]
    for c in candidates:
        if c.is_file():
            return c.resolve()
    raise InputError("cannot find the published latency table (../shared/data/published-latency/published_latency.csv); "
                     "pass --published PATH or set HWFARM_PUBLISHED_CSV")


@dataclass(frozen=True)
class Figure:
    """One published number and the simulated setting that reproduces it."""

    label: str
    graph: Graph
    latency_ms: float
    energy_mj: float | None
    source: str
    threads: int = 1
    latency_scale: float = 1.0  # the published board ran at another clock: simulated × this


def layer_graph(spec: dict[str, Any]) -> Graph:
    """One conv or fully connected layer (batch ``batch``) with ``w_bits``/``a_bits`` attrs:
    how per-layer figures (BitFusion's simulator tables) are described."""
    from farm.ir.builder import IRBuilder

    kind = spec.get("layer")
    batch = int(spec.get("batch", 1))
    w, a = int(spec.get("w_bits", 8)), int(spec.get("a_bits", 8))
    if kind == "conv":
        cin, cout, hw, k = (int(spec[x]) for x in ("cin", "cout", "hw", "k"))
        b = IRBuilder((batch, cin, hw, hw), dtype=spec.get("dtype", "int8"))
        x = b.conv("layer", "input", cout, k, int(spec.get("stride", 1)))
    elif kind == "fc":
        b = IRBuilder((batch, int(spec["cin"])), dtype=spec.get("dtype", "int8"))
        x = b.gemm("layer", "input", int(spec["cout"]))
    else:
        raise InputError(f"layer figure: 'layer' must be conv or fc, got {kind!r}")
    g = b.build(f"{kind}-layer", x)
    from farm.ir.bits import with_bit_widths

    return with_bit_widths(g, w, a)


def _read_rows(table: Path) -> list[dict[str, str]]:
    with open(table, newline="") as f:
        return list(csv.DictReader(f))


def load_figures(profile: SimProfile, table: Path | None, *, key: str = "figures") -> list[Figure]:
    """The profile's calibration figures with their published values (CSV rows resolved).
    ``key="checks"``: the figures a profile is compared with but not fitted on (the
    NB201-calibrated CPU profiles against published ImageNet-size latencies)."""
    from farm.zoo.nets import build_net

    specs = profile.calibration.get(key) or []
    rows: list[dict[str, str]] | None = None
    out = []
    for i, spec in enumerate(specs):
        where = f"profile {profile.name!r} calibration {key[:-1]} #{i + 1}"
        if not isinstance(spec, dict):
            raise InputError(f"{where}: must be a mapping")
        try:
            if "net" in spec:
                graph = build_net(str(spec["net"]), **dict(spec.get("options") or {}))
                if spec.get("bits"):
                    from farm.ir.bits import with_bit_widths

                    graph = with_bit_widths(graph, *spec["bits"])
            elif "layer" in spec:
                graph = layer_graph(dict(spec["layer"]))
            else:
                raise InputError(f"{where}: needs 'net' or 'layer'")
        except (KeyError, TypeError, ValueError) as err:
            raise InputError(f"{where}: {err}") from None
        if "row" in spec:
            if rows is None:
                rows = _read_rows(find_published_table(table))
            match = [r for r in rows if all(str(v) in r.get(k, "") for k, v in spec["row"].items())]
            if len(match) != 1:
                raise InputError(f"{where}: 'row' {spec['row']} matches {len(match)} rows of the published table, "
                                 "needs exactly 1")
            r = match[0]
            latency = float(r["latency_ms"])
            energy = float(r["energy_mj"]) if r.get("energy_mj") else None
            source = r["source"].split(" ; ")[0]
            threads = f", {spec['threads']} thread{'s' if int(spec['threads']) > 1 else ''}" if "threads" in spec else ""
            label = spec.get("label") or (f"{spec.get('net', 'layer')} ({r['device'].split(' (')[0]}, "
                                          f"{r['runtime'].split(' (')[0]}{threads})")
        elif "value" in spec:
            v = spec["value"]
            if "cycles" in v:
                latency = float(v["cycles"]) / (float(v["clock_mhz"]) * 1e3)
            else:
                latency = float(v["latency_ms"])
            energy = float(v["energy_mj"]) if v.get("energy_mj") is not None else None
            source = str(v.get("source") or "")
            if not source:
                raise InputError(f"{where}: a 'value' needs its 'source'")
            label = spec.get("label") or str(spec.get("net", "layer"))
        else:
            raise InputError(f"{where}: needs 'row' (published table) or 'value' (with its source)")
        out.append(Figure(str(label), graph, latency, energy, source, int(spec.get("threads", 1)),
                          float(spec.get("latency_scale", 1.0))))
    return out


def _simulate(fig: Figure, profile: SimProfile) -> SimResult:
    return simulate(fig.graph, profile, threads=fig.threads)


def fit_published(profile: SimProfile, figures: list[Figure]) -> tuple[SimProfile, dict[str, float]]:
    """Fit the scale factors named in ``calibration.fit`` on ``profile`` as written (its
    :func:`~farm.sim.profile.base_profile`, so refitting is reproducible: the same file and
    table give the same factors), and power when figures have energy and
    ``calibration.fit_energy``; returns the scaled profile and the factors."""
    fit = [t for t in profile.calibration.get("fit", ["compute", "overhead"]) if t in TERMS]
    lam = float(profile.calibration.get("prior_weight", 0.05))
    if not figures:
        return profile, {}
    sums = [_simulate(f, profile).sums() for f in figures]
    y = np.array([f.latency_ms for f in figures])
    scale = np.array([f.latency_scale for f in figures])
    A = np.array([[s[t] for t in fit] for s in sums]) * scale[:, None]
    fixed = np.array([sum(s[t] for t in TERMS if t not in fit) + s["host"] for s in sums]) * scale
    w = 1 / y
    P = np.sqrt(lam) * np.eye(len(fit))
    x = nnls(np.vstack([A * w[:, None], P]), np.concatenate([(y - fixed) * w, np.sqrt(lam) * np.ones(len(fit))]))
    factors = {t: max(float(v), 0.01) for t, v in zip(fit, x, strict=True)}  # 0 would mean free compute
    fitted = profile.scaled(factors)
    energies = [(f, _simulate(f, fitted)) for f in figures if f.energy_mj is not None]
    if energies and profile.power is not None and profile.calibration.get("fit_energy", True):
        p = profile.power
        rows, target = [], []
        for f, r in energies:
            moved = sum(k.bytes for k in r.kernels) * 1e-9
            link = sum(k.link_bytes for k in r.kernels) * 1e-9
            rest = (p.pj_per_byte * moved + p.link_pj_per_byte * link) * f.latency_scale
            rows.append([r.latency_ms * f.latency_scale, sum(k.compute_ms for k in r.kernels) * f.latency_scale])
            target.append((f.energy_mj or 0.0) - rest)
        E = np.array(rows)
        t = np.array(target)
        ew = 1 / np.array([f.energy_mj or 1.0 for f, _ in energies])
        sw = nnls(E * ew[:, None], t * ew)
        fitted = fitted.model_copy(update={"power": p.model_copy(update={
            "static_w": round(float(sw[0]), 5), "dynamic_w": round(float(sw[1]), 5)})})
        factors["static_w"], factors["dynamic_w"] = float(sw[0]), float(sw[1])
    return fitted, factors


def figure_report(profile: SimProfile, figures: list[Figure]) -> list[dict[str, Any]]:
    """Simulated vs published, per figure: latency (and energy) with the relative error."""
    out = []
    for f in figures:
        r = _simulate(f, profile)
        sim = r.latency_ms * f.latency_scale
        row: dict[str, Any] = {"figure": f.label, "published_ms": round(f.latency_ms, 4), "simulated_ms": round(sim, 4),
                               "error": round((sim - f.latency_ms) / f.latency_ms, 4), "source": f.source}
        if f.energy_mj is not None and r.energy_mj is not None:
            e = r.energy_mj * f.latency_scale
            row |= {"published_mj": round(f.energy_mj, 4), "simulated_mj": round(e, 4),
                    "energy_error": round((e - f.energy_mj) / f.energy_mj, 4)}
        out.append(row)
    return out


def summary(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    lat = [abs(r["error"]) for r in rows]
    en = [abs(r["energy_error"]) for r in rows if "energy_error" in r]
    return {"mape": round(float(np.median(lat)), 4) if lat else None,
            "max_ape": round(float(max(lat)), 4) if lat else None,
            "energy_mape": round(float(np.median(en)), 4) if en else None,
            "log_rmse": round(float(math.sqrt(np.mean([math.log1p(r["error"]) ** 2 for r in rows]))), 4) if rows else None}
