"""Calibrating simulator profiles against measured latencies.

The kernel cost model is linear in its parameters — per kernel class, seconds per aligned
MAC (1/peak), per byte (1/bandwidth) and per kernel (overhead) — so fitting is a
non-negative least-squares problem on per-class feature sums. Rows are weighted by
1/latency, which minimises relative (percentage) error, the error that matters when
ranking architectures across a 10× latency range.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from numpy.typing import ArrayLike

from farm.ir.graph import Graph
from farm.ir.kernels import form_kernels
from farm.sim.profile import KernelCost, SimProfile

__all__ = ["split", "nnls", "spearman", "mape", "design_matrix", "fit_kernel_costs", "predict", "read_table",
           "CalibrationReport", "calibrate_on_table"]


def nnls(A: np.ndarray, b: np.ndarray, *, max_iter: int | None = None, tol: float = 1e-12) -> np.ndarray:
    """min ‖Ax − b‖₂ subject to x ≥ 0 (Lawson & Hanson 1974, active-set method)."""
    m, n = A.shape
    x = np.zeros(n)
    passive = np.zeros(n, dtype=bool)
    w = A.T @ (b - A @ x)
    for _ in range(max_iter or 3 * n):
        if passive.all() or w[~passive].max(initial=-np.inf) <= tol:
            break
        j = int(np.argmax(np.where(passive, -np.inf, w)))
        passive[j] = True
        while True:
            z = np.zeros(n)
            z[passive] = np.linalg.lstsq(A[:, passive], b, rcond=None)[0]
            if (z[passive] > tol).all():
                x = z
                break
            neg = passive & (z <= tol)
            alpha = np.min(x[neg] / (x[neg] - z[neg]))
            x = x + alpha * (z - x)
            passive &= x > tol
            x[~passive] = 0.0
        w = A.T @ (b - A @ x)
    return x


def _ranks(a: np.ndarray) -> np.ndarray:
    order = np.argsort(a, kind="mergesort")
    ranks = np.empty(len(a))
    ranks[order] = np.arange(len(a))
    # average ties
    vals, inv, counts = np.unique(a, return_inverse=True, return_counts=True)
    if len(vals) < len(a):
        sums = np.bincount(inv, weights=ranks)
        ranks = (sums / counts)[inv]
    return ranks


def spearman(a: ArrayLike, b: ArrayLike) -> float:
    ra, rb = _ranks(np.asarray(a, float)), _ranks(np.asarray(b, float))
    return float(np.corrcoef(ra, rb)[0, 1])


def mape(pred: ArrayLike, true: ArrayLike) -> float:
    """Median absolute percentage error (robust to the odd mis-measured row)."""
    p, t = np.asarray(pred, float), np.asarray(true, float)
    return float(np.median(np.abs(p - t) / t))


def _columns(profile: SimProfile) -> list[tuple[str, str]]:
    return [("invoke", "count")] + [(c, term) for c in sorted(profile.kernels) for term in ("macs", "bytes", "count")]


def design_matrix(graphs: Iterable[Graph], profile: SimProfile) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """One row per graph: per kernel class, summed aligned MACs, bytes and kernel count."""
    cols = _columns(profile)
    index = {c: i for i, c in enumerate(cols)}
    rows = []
    for g in graphs:
        row = np.zeros(len(cols))
        row[index[("invoke", "count")]] = 1
        for k in form_kernels(g, profile.fusion, profile.vector_width, fold_constants=profile.fold_constants):
            cls = k.kernel_class if k.kernel_class in profile.kernels else "default"
            row[index[(cls, "macs")]] += k.macs_aligned
            row[index[(cls, "bytes")]] += k.bytes
            row[index[(cls, "count")]] += 1
        rows.append(row)
    return np.array(rows), cols


def fit_kernel_costs(X: np.ndarray, y: np.ndarray, cols: list[tuple[str, str]], profile: SimProfile, *,
                     iterations: int = 8, huber: float = 0.1, prior_weight: float = 1e-4) -> SimProfile:
    """Fit per-class costs (ms units) by robust, relative-error-weighted NNLS (IRLS with
    Huber weights at ``huber`` relative error); returns the profile with the new costs.

    A search space rarely pins every cost down (NB201 always has exactly one Gemm, so the
    classifier's cost and the per-inference overhead are inseparable). Each cost the profile
    already has is a prior: a pseudo-row of weight ``prior_weight`` pulls it toward its
    current value, so what the data determines follows the data and the rest stays physical
    instead of collapsing to zero."""
    prior = _coefficients(cols, profile)
    used = np.asarray(X.any(axis=0), dtype=bool)
    scale = np.where(used, X.max(axis=0), 1.0)  # column scaling keeps the solver well conditioned
    A = X[:, used] / scale[used]
    p_used = prior[used] * scale[used]  # prior in scaled units
    has_prior = p_used > 0
    P = np.zeros((int(has_prior.sum()), A.shape[1]))
    P[np.arange(len(P)), np.flatnonzero(has_prior)] = np.sqrt(prior_weight * len(y)) / p_used[has_prior]
    q = np.full(len(P), np.sqrt(prior_weight * len(y)))
    robust = np.ones(len(y))
    coef = np.zeros(X.shape[1])
    for _ in range(iterations):
        # Relative residuals, Huber weights: rows the model cannot explain (a converter that
        # folded half a network, a mis-measured run) stop pulling the fit after a few rounds.
        w = robust / y
        coef[used] = nnls(np.vstack([A * w[:, None], P]), np.concatenate([y * w, q])) / scale[used]
        rel = np.abs(X @ coef - y) / y
        robust = np.minimum(1.0, huber / np.maximum(rel, 1e-12))
    kernels = {}
    invoke_us = round(float(coef[cols.index(("invoke", "count"))]) * 1e3, 3)
    for cls in profile.kernels:
        a, b, o = (coef[cols.index((cls, t))] for t in ("macs", "bytes", "count"))
        if not any(used[cols.index((cls, t))] for t in ("macs", "bytes", "count")):
            kernels[cls] = profile.kernels[cls]  # nothing of this class in the data: keep the prior
            continue
        kernels[cls] = KernelCost(gmacs=round(float(1 / (a * 1e6)), 4) if a > 0 else 0.0,
                                  gbs=round(float(1 / (b * 1e6)), 4) if b > 0 else 0.0,
                                  overhead_us=round(float(o * 1e3), 3))
    return profile.model_copy(update={"kernels": kernels, "invoke_overhead_us": invoke_us})


def predict(X: np.ndarray, cols: list[tuple[str, str]], profile: SimProfile) -> np.ndarray:
    """Noise-free 1-thread latency (ms) of each design-matrix row under ``profile``."""
    return X @ _coefficients(cols, profile)


def _coefficients(cols: list[tuple[str, str]], profile: SimProfile) -> np.ndarray:
    """The profile's costs as the linear model's coefficients (ms per unit of each column)."""
    coef = np.zeros(len(cols))
    for i, (cls, term) in enumerate(cols):
        if cls == "invoke":
            coef[i] = profile.invoke_overhead_us / 1e3
            continue
        c = profile.kernels[cls]
        if term == "macs" and c.gmacs > 0:
            coef[i] = 1 / (c.gmacs * 1e6)
        elif term == "bytes" and c.gbs > 0:
            coef[i] = 1 / (c.gbs * 1e6)
        elif term == "count":
            coef[i] = c.overhead_us / 1e3
    return coef


def read_table(path: str | Path, arch_column: str, target: str) -> tuple[list[str], np.ndarray]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or arch_column not in reader.fieldnames or target not in reader.fieldnames:
            raise ValueError(f"{path}: needs columns {arch_column!r} and {target!r}")
        archs, ys = [], []
        for row in reader:
            archs.append(row[arch_column])
            ys.append(float(row[target]))
    return archs, np.array(ys)


@dataclass(frozen=True)
class CalibrationReport:
    profile: str
    target: str
    n_fit: int
    n_eval: int
    spearman: float
    mape: float
    fitted: SimProfile

    def to_json(self) -> dict[str, object]:
        return {"profile": self.profile, "target": self.target, "n_fit": self.n_fit, "n_eval": self.n_eval,
                "spearman": round(self.spearman, 4), "mape": round(self.mape, 4)}


def split(n_rows: int, n_fit: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The calibration split: ``n_fit`` rows to fit on, the rest to report on (seeded)."""
    idx = np.random.default_rng(seed).permutation(n_rows)
    return idx[:n_fit], idx[n_fit:]


def calibrate_on_table(profile: SimProfile, graphs: Sequence[Graph], y: np.ndarray, *, target: str,
                       n_fit: int = 1000, seed: int = 0, refit: bool = True) -> CalibrationReport:
    """Fit on ``n_fit`` random rows (``refit``), report Spearman ρ and median APE on the rest."""
    X, cols = design_matrix(graphs, profile)
    fit, rest = split(len(y), n_fit, seed)
    fitted = fit_kernel_costs(X[fit], y[fit], cols, profile) if refit else profile
    pred = predict(X[rest], cols, fitted)
    return CalibrationReport(profile.name, target, len(fit), len(rest), spearman(pred, y[rest]),
                             mape(pred, y[rest]), fitted)
