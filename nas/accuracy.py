"""Accuracy estimators beyond the table: a learned accuracy predictor over any space's choices.

Once-for-All's recipe (Cai et al., ICLR 2020, §3.3): score a few hundred architectures with an
expensive estimator (there: the trained supernet on held-out images), fit a small regressor on
their encodings, then rank thousands with it for free. :class:`LearnedAccuracy` does that on
top of any :class:`~nas.objectives.AccuracyEstimator` — the NB201 table, a zero-cost proxy,
short training — over the one-hot encoding of the space's Optuna parameters
(:mod:`nas.params`), with numeric choices (resolution, width) also as their value.

The regressor is chosen by 5-fold Spearman ρ between a ridge on the encoding and gradient-
boosted trees (xgboost), and the winner's cross-validated ρ is kept as ``cv_rho`` so a user
sees how far to trust it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from farm.errors import InputError
from farm.zoo.spaces import get_space
from nas.objectives import AccuracyEstimator
from nas.params import choices, encode

__all__ = ["ArchEncoder", "LearnedAccuracy", "FitReport"]


class ArchEncoder:
    """An architecture → a float vector: one column per (parameter, option), plus the value
    of each numeric parameter scaled to [0, 1]."""

    def __init__(self, space: str):
        self.space = space
        self.params = choices(space)
        self._index: list[dict[Any, int]] = []
        col = 0
        for _, opts in self.params:
            self._index.append({o: col + i for i, o in enumerate(opts)})
            col += len(opts)
        self._numeric = [(k, min(opts), max(opts)) for k, (_, opts) in enumerate(self.params)
                         if all(isinstance(o, int | float) and not isinstance(o, bool) for o in opts) and len(opts) > 1]
        self.width = col + len(self._numeric)

    def __call__(self, archs: Sequence[str]) -> np.ndarray:
        X = np.zeros((len(archs), self.width), dtype=np.float32)
        names = [n for n, _ in self.params]
        base = self.width - len(self._numeric)
        for r, a in enumerate(archs):
            values = encode(self.space, a)
            for k, n in enumerate(names):
                X[r, self._index[k][values[n]]] = 1.0
            for j, (k, lo, hi) in enumerate(self._numeric):
                X[r, base + j] = (float(values[names[k]]) - lo) / (hi - lo)
        return X


@dataclass(frozen=True)
class FitReport:
    n: int
    model: str  # "ridge" | "xgboost"
    cv_rho: float  # 5-fold Spearman ρ of the chosen model on the scored architectures
    seconds: float


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    r = spearmanr(a, b).statistic
    return float(r) if np.isfinite(r) else 0.0


def _models(seed: int) -> dict[str, Any]:
    from sklearn.linear_model import RidgeCV
    from xgboost import XGBRegressor

    return {"ridge": RidgeCV(alphas=np.logspace(-3, 3, 13)),
            "xgboost": XGBRegressor(n_estimators=300, max_depth=4, learning_rate=0.05, subsample=0.8,
                                    colsample_bytree=0.8, random_state=seed, n_jobs=1, verbosity=0)}


class LearnedAccuracy:
    """Fit on ``n_fit`` architectures sampled from the space (seeded) and scored by ``base``;
    then estimate any number of architectures from their encoding. Fitting happens on first
    use for a space (or explicitly with :meth:`fit`)."""

    def __init__(self, base: AccuracyEstimator, *, n_fit: int = 300, seed: int = 0):
        if n_fit < 10:
            raise InputError(f"the accuracy predictor needs at least 10 scored architectures, not {n_fit}")
        self.base = base
        self.n_fit = n_fit
        self.seed = seed
        self.report: FitReport | None = None
        self._space: str | None = None
        self._encoder: ArchEncoder | None = None
        self._model: Any = None

    def fit(self, space: str, archs: Sequence[str] | None = None) -> FitReport:
        """Score ``archs`` (default: ``n_fit`` distinct random ones) with the base estimator and fit."""
        import time

        from sklearn.model_selection import KFold

        t0 = time.perf_counter()
        if archs is None:
            sp = get_space(space)
            rng = np.random.default_rng(self.seed)
            seen: dict[str, None] = {}
            for _ in range(self.n_fit * 20):
                seen.setdefault(sp.sample(rng))
                if len(seen) >= self.n_fit:
                    break
            archs = list(seen)
        enc = ArchEncoder(space)
        X = enc(archs)
        y = np.asarray(self.base.estimate(space, list(archs)), dtype=float)
        if not np.all(np.isfinite(y)):
            raise InputError("the base accuracy estimator returned non-finite scores")
        best_name, best_rho = "ridge", -np.inf
        folds = KFold(n_splits=5, shuffle=True, random_state=self.seed)
        for name in ("ridge", "xgboost"):
            pred = np.zeros_like(y)
            for tr, te in folds.split(X):
                m = _models(self.seed)[name].fit(X[tr], y[tr])
                pred[te] = m.predict(X[te])
            rho = _spearman(pred, y)
            if rho > best_rho + 1e-9:
                best_name, best_rho = name, rho
        self._model = _models(self.seed)[best_name].fit(X, y)
        self._space, self._encoder = space, enc
        self.report = FitReport(len(archs), best_name, round(best_rho, 4), time.perf_counter() - t0)
        return self.report

    def estimate(self, space: str, archs: Sequence[str]) -> np.ndarray:
        if self._space != space:
            self.fit(space)
        assert self._encoder is not None
        return np.asarray(self._model.predict(self._encoder(archs)), dtype=float)


class TrainAccuracy:
    """Top-1 % on held-out images after a short training run of each architecture's torch
    module (:mod:`nas.modules`) on a shared dataset (:mod:`nas.data`). Honest but slow
    (seconds per architecture on two cores): a search uses it directly for a few dozen
    candidates, or as the base of :class:`LearnedAccuracy` to rank thousands."""

    def __init__(self, data: str = "digits", *, input_size: int | None = 16, channels: int = 3, steps: int = 150,
                 train_images: int | None = 1000, seed: int = 0):
        from nas.data import load_dataset

        self.data, self.steps, self.seed = data, steps, seed
        self.train = load_dataset(data, "train", input_size=input_size, channels=channels)
        if train_images is not None:
            self.train = self.train.take(train_images, seed=seed)
        self.test = load_dataset(data, "test", input_size=input_size, channels=channels)
        self.cache: dict[tuple[str, str], float] = {}

    def estimate(self, space: str, archs: Sequence[str]) -> np.ndarray:
        from nas.modules import build_module
        from nas.train import TrainConfig, evaluate, fit

        out = []
        for a in archs:
            if (space, a) not in self.cache:
                import torch

                torch.manual_seed(self.seed)
                m = build_module(f"{space}:{a}", num_classes=self.train.num_classes, in_channels=self.train.channels,
                                 input_size=self.train.input_size)
                fit(m, self.train, TrainConfig(epochs=10_000, max_steps=self.steps, seed=self.seed))
                self.cache[(space, a)] = evaluate(m, self.test)
            out.append(self.cache[(space, a)])
        return np.asarray(out, dtype=float)


ACCURACY_KINDS = ("table", "proxy", "train", "predictor")


def make_accuracy(kind: str, space: str, *, data: str = "mnist_5k", proxy: str = "vote", fit: int = 300,
                  base: str | None = None, seed: int = 0) -> AccuracyEstimator:
    """The estimator behind ``nas search --accuracy KIND``: ``table`` (the space's trained
    table), ``proxy`` (a zero-cost proxy, :mod:`nas.proxies`), ``train`` (short training,
    :class:`TrainAccuracy`) or ``predictor`` (:class:`LearnedAccuracy` fitted on ``fit``
    architectures scored by ``base``: the table where the space has one, else the proxy)."""
    from nas.data import DATASETS
    from nas.objectives import ACCURACY_TABLES, TableAccuracy, find_accuracy_table

    if kind in ("proxy", "train") and data not in DATASETS:
        raise InputError(f"--data: unknown dataset {data!r}; known: {', '.join(DATASETS)}")
    if kind == "table":
        return TableAccuracy.from_csv(find_accuracy_table(space), space=space)
    if kind == "proxy":
        from nas.proxies import ProxyAccuracy

        return ProxyAccuracy(proxy, dataset=data, seed=seed, threads=1)
    if kind == "train":
        return TrainAccuracy(data, seed=seed)
    if kind == "predictor":
        base = base or ("table" if space in ACCURACY_TABLES else "proxy")
        if base == "predictor":
            raise InputError("--accuracy predictor: its base cannot be the predictor itself")
        return LearnedAccuracy(make_accuracy(base, space, data=data, proxy=proxy, seed=seed), n_fit=fit, seed=seed)
    raise InputError(f"--accuracy {kind!r}: expected one of {', '.join(ACCURACY_KINDS)}")
