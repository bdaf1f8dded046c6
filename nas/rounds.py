"""The active loop (``nas search --rounds R``): search, measure what it found, refit, search again.

Each round searches with the current latency model, measures the round's top candidates on
the device through the farm (the records go into the dataset like any other measurement),
and refits the cost model on everything measured so far: :class:`MeasuredLatencyModel` keeps
the predictor and learns its error on this device — few-shot transfer in its simplest honest
form: a ridge regression of log(measured / predicted) on the architecture's encoding, whose
strong prior is "no correction" and whose intercept (a device-wide scale) the first few
measurements already fix. Measured architectures answer with their measurement.

The answer is judged by the farm: the best candidate is the most accurate one whose
*measured* latency meets the limit; only when nothing measured does is it the last round's
predicted best (and the result says so).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from farm.errors import InputError
from farm.ir.graph import Graph
from nas.objectives import AccuracyEstimator, Candidate, LatencyModel
from nas.search import SearchConfig, SearchResult, Validation, measure_candidates, search

__all__ = ["MeasuredLatencyModel", "RoundRecord", "search_rounds"]


class MeasuredLatencyModel:
    """``base`` corrected by on-device measurements (see the module's docstring)."""

    def __init__(self, base: LatencyModel, space: str, measured: dict[str, float], predicted: dict[str, float], *,
                 alpha: float = 10.0):
        from nas.accuracy import ArchEncoder

        self.base = base
        self.space = space
        self.measured = dict(measured)
        self.encoder = ArchEncoder(space)
        archs = [a for a in measured if a in predicted and predicted[a] > 0 and measured[a] > 0]
        self.n = len(archs)
        self.intercept = 0.0
        self.coef = np.zeros(self.encoder.width)
        if archs:
            X = self.encoder(archs).astype(float)
            y = np.log([measured[a] / predicted[a] for a in archs])
            self.intercept = float(y.mean())
            Xc = X - X.mean(0)
            self.coef = np.linalg.solve(Xc.T @ Xc + alpha * np.eye(X.shape[1]), Xc.T @ (y - self.intercept))
            self._x_mean = X.mean(0)

    @property
    def scale(self) -> float:
        """The device-wide correction factor (measured / predicted, geometric mean)."""
        return float(np.exp(self.intercept))

    def predict_batch(self, space: str, archs: Sequence[str], graphs: Sequence[Graph]
                      ) -> tuple[np.ndarray, np.ndarray | None]:
        lat, en = self.base.predict_batch(space, archs, graphs)
        lat = np.asarray(lat, dtype=float)
        if self.n:
            X = self.encoder(archs).astype(float) - self._x_mean
            lat = lat * np.exp(self.intercept + X @ self.coef)
        for i, a in enumerate(archs):
            if a in self.measured:
                lat[i] = self.measured[a]
        return lat, en


@dataclass(frozen=True)
class RoundRecord:
    round: int
    best: Candidate | None  # this round's predicted best
    validated: tuple[Validation, ...]  # measured this round (predicted by this round's model)
    scale: float  # the correction the next round uses (measured / predicted)

    @property
    def mean_abs_error(self) -> float | None:
        errs = [abs(v.rel_error) for v in self.validated if v.rel_error is not None]
        return float(np.mean(errs)) if errs else None

    def to_json(self) -> dict[str, Any]:
        return {"round": self.round, "best": self.best.to_json() if self.best else None,
                "validated": [v.to_json() for v in self.validated], "scale": round(self.scale, 5),
                "mean_abs_error": None if self.mean_abs_error is None else round(self.mean_abs_error, 5)}


def search_rounds(space: str, *, latency: LatencyModel, accuracy: AccuracyEstimator, config: SearchConfig,
                  rounds: int, k: int, device: str, workdir: str | os.PathLike[str],
                  registry: str | os.PathLike[str] = "devices.yaml", db: str | os.PathLike[str] = "hwfarm.db",
                  energy: LatencyModel | None = None, fallback: Any | None = None,
                  on_trial: Callable[[int, int], None] | None = None,
                  on_round: Callable[[RoundRecord], None] | None = None, **profile_kwargs: Any) -> SearchResult:
    """``rounds`` rounds of search + measuring ``k`` new candidates; the last round's result
    with every measurement in ``validated``, its best judged on measured latency, and the
    rounds' records in ``extra["rounds"]``."""
    if rounds < 1:
        raise InputError(f"--rounds {rounds}: must be at least 1")
    if k < 1:
        raise InputError("--rounds needs candidates to measure each round (--validate K, K ≥ 1)")
    measured: dict[str, float] = {}
    predicted: dict[str, float] = {}
    validated: list[Validation] = []
    records: list[RoundRecord] = []
    model: LatencyModel = latency
    base_name = config.study_name or f"hwfarm-{space}-{config.strategy}"
    res: SearchResult | None = None
    for r in range(1, rounds + 1):
        cfg = replace(config, study_name=f"{base_name}-round{r}", seed=None if config.seed is None else config.seed + r - 1)
        res = search(space, latency=model, accuracy=accuracy, config=cfg, device=device, energy=energy, fallback=fallback,
                     on_trial=on_trial)
        ranked = sorted((c for c in res.candidates if c.feasible and c.arch not in measured),
                        key=lambda c: (-c.accuracy, c.latency_ms))
        front = [c for c in sorted(res.pareto, key=lambda c: (-c.accuracy, c.latency_ms)) if c.arch not in measured]
        top = (front + [c for c in ranked if c not in front])[:k]
        got = measure_candidates(space, top, device=device, workdir=Path(workdir) / f"round-{r}", registry=registry,
                                 db=db, **profile_kwargs) if top else []
        for c, v in zip(top, got, strict=True):
            if v.measured_ms is not None:
                measured[c.arch] = v.measured_ms
                base_ms = float(latency.predict_batch(space, [c.arch], _graphs(space, [c.arch]))[0][0])
                predicted[c.arch] = base_ms
        validated += got
        model = MeasuredLatencyModel(latency, space, measured, predicted)
        rec = RoundRecord(r, res.best, tuple(got), model.scale)
        records.append(rec)
        if on_round is not None:
            on_round(rec)
    assert res is not None
    limit = config.constraints.max_latency_ms
    by_arch = {c.arch: c for c in res.candidates}
    judged = [replace(by_arch.get(v.arch) or _from_validation(v, accuracy, space), latency_ms=v.measured_ms)
              for v in validated if v.measured_ms is not None and (limit is None or v.measured_ms <= limit)]
    extra = dict(res.extra, rounds=[x.to_json() for x in records], best_judged_by="measurement")
    best = res.best
    if judged:
        best = max(judged, key=lambda c: (c.accuracy, -c.latency_ms))
    else:
        extra["best_judged_by"] = "prediction (no measured candidate met the limits)"
    return replace(res, best=best, validated=tuple(validated), extra=extra)


def _graphs(space: str, archs: Sequence[str]) -> Any:
    from farm.zoo.spaces import get_space
    from nas.objectives import LazyGraphs

    return LazyGraphs(get_space(space), archs)


def _from_validation(v: Validation, accuracy: AccuracyEstimator, space: str) -> Candidate:
    acc = float(accuracy.estimate(space, [v.arch])[0])
    return Candidate(v.arch, acc, v.predicted_ms, None, None, None, None, None)
