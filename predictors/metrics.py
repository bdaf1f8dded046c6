"""Accuracy of predictions against measurements: the figures bundles, `predictor eval` and
the benchmarks report."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["accuracy_metrics"]


def accuracy_metrics(pred: Sequence[float] | np.ndarray, truth: Sequence[float] | np.ndarray) -> dict[str, float]:
    """±10% accuracy, median/mean absolute percentage error, RMSPE and Spearman ρ."""
    p, t = np.asarray(pred, dtype=float), np.asarray(truth, dtype=float)
    if len(t) == 0:
        return {"n": 0}
    ape = np.abs(p / t - 1.0)
    m = {"n": int(len(t)), "acc10": float(np.mean(ape <= 0.10)), "acc5": float(np.mean(ape <= 0.05)),
         "median_ape": float(np.median(ape)), "mape": float(np.mean(ape)),
         "rmspe": float(np.sqrt(np.mean(((p - t) / t) ** 2)))}
    if len(t) > 2:
        from scipy.stats import spearmanr

        rho = spearmanr(p, t).statistic
        m["spearman"] = float(rho) if not math.isnan(rho) else 0.0
    return m
