"""Kernel-level predictors: one gradient-boosted regressor per kernel type, summed.

:class:`KernelRegressor` follows the scikit-learn estimator contract (``__init__`` stores
hyperparameters, ``fit`` returns ``self``, learned state ends in ``_``). It predicts a
positive cost (ms or mJ) as a non-negative linear roofline on MACs and bytes — which
extrapolates sensibly beyond the training range — times a correction XGBoost learns on the
log ratio; every prediction comes with an interval calibrated on out-of-fold errors.

:class:`KernelLevelPredictor` turns graphs into kernels with a device's fusion rules,
trains one :class:`KernelRegressor` per kernel type from single-kernel measurements, learns
the per-inference overhead, and predicts a whole model as overhead + Σ kernels. Kernels of a
type it has no model for (LRN, Transpose, an unfused BatchNormalization…) are estimated by
a roofline fitted on the device's own measurements and flagged ``fallback`` — never zero,
never a crash. :meth:`KernelLevelPredictor.predict_many` extracts features for all graphs
at once and runs each type's model once on the unique rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from farm.graph import Graph

from .boundary import IoBoundary, IoCost, fit_io_cost
from .features import FALLBACK_FEATURES, FEATURES, feature_row
from .kernels import DetectedKernel, FusionRules, detect_kernels

__all__ = ["KernelRegressor", "KernelLevelPredictor", "is_minimal_model", "KernelPrediction", "Prediction", "NotFittedError"]

_THREADED_ROWS = 20_000
_FOLDS = 3  # out-of-fold residuals calibrate the intervals
_TINY_NUMEL = 64  # ops on at most 64 numbers: minimal models that measure the per-inference overhead


def is_minimal_model(graph: Graph) -> bool:
    """A model of a few ops on at most 64 numbers and no MACs: what it costs is the
    per-inference overhead plus a dispatch per kernel (training data for both)."""
    return graph.macs == 0 and all(t.numel <= _TINY_NUMEL for n in graph.nodes for t in (*n.inputs, *n.outputs))


class NotFittedError(RuntimeError):
    """predict() before fit()."""


def _nnls(A: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    from scipy.optimize import nnls

    if w is not None:
        A, y = A * w[:, None], y * w
    scale = np.maximum(np.abs(A).max(axis=0), 1e-12)
    coef, _ = nnls(A / scale, y)
    return np.asarray(coef / scale)


class KernelRegressor:
    """Cost of one kernel type from its feature row: roofline × learned correction.

    ``base_columns`` index the columns the linear roofline uses (MACs and bytes); the
    boosted correction sees every column. ``quantiles`` (low, point, high) set the interval:
    the low/high quantiles of out-of-fold log residuals. Predictions are in ``y``'s units.
    """

    def __init__(self, *, base_columns: tuple[int, ...] = (), n_estimators: int = 150, max_depth: int = 5,
                 learning_rate: float = 0.12, quantiles: tuple[float, float, float] = (0.05, 0.5, 0.95),
                 min_samples_boost: int = 12, random_state: int = 0) -> None:
        self.base_columns = base_columns
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.quantiles = quantiles
        self.min_samples_boost = min_samples_boost
        self.random_state = random_state

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("base_columns", "n_estimators", "max_depth", "learning_rate",
                                              "quantiles", "min_samples_boost", "random_state")}

    def set_params(self, **params: Any) -> KernelRegressor:
        for k, v in params.items():
            setattr(self, k, v)
        return self

    # ------------------------------------------------------------------ fit / predict
    def _base(self, X: np.ndarray) -> np.ndarray:
        cols = list(self.base_columns)
        lin = X[:, cols] @ self.coef_[:-1] if cols else np.zeros(len(X))
        return np.maximum(lin + self.coef_[-1], self.floor_)

    def _boost(self, X: np.ndarray, r: np.ndarray) -> Any:
        import xgboost as xgb

        params = {"objective": "reg:squarederror", "tree_method": "hist", "max_depth": self.max_depth,
                  "eta": self.learning_rate, "min_child_weight": 1.0, "subsample": 0.9, "seed": self.random_state,
                  "nthread": 1 if len(r) < _THREADED_ROWS else 2, "base_score": float(np.median(r))}
        return xgb.train(params, xgb.DMatrix(X, label=r), num_boost_round=self.n_estimators)

    def fit(self, X: Any, y: Any) -> KernelRegressor:
        """Learn the roofline and its correction; the interval is calibrated on out-of-fold
        residuals (3-fold), so it reflects model error on unseen kernels, not just noise."""
        import xgboost as xgb

        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if X.ndim != 2 or len(X) != len(y) or len(y) == 0:
            raise ValueError(f"KernelRegressor.fit: X must be 2-D with one row per target (X {X.shape}, y {y.shape})")
        if not np.all(np.isfinite(y)) or np.any(y <= 0):
            raise ValueError("KernelRegressor.fit: targets must be positive and finite")
        self.n_features_in_ = X.shape[1]
        cols = list(self.base_columns)
        A = np.column_stack([X[:, cols], np.ones(len(X))]) if cols else np.ones((len(X), 1))
        self.coef_ = _nnls(A, y, 1.0 / y)  # relative error: small kernels count as much as big ones
        self.floor_ = float(y.min() * 0.05)
        r = np.log(y) - np.log(self._base(X))
        self.offset_ = float(np.median(r))
        self.booster_: Any = None
        if len(y) >= self.min_samples_boost:
            self.booster_ = self._boost(X, r)
            folds = np.random.default_rng(self.random_state).permutation(len(y)) % _FOLDS
            oof = np.empty(len(y))
            for f in range(_FOLDS):
                test = folds == f
                oof[test] = self._boost(X[~test], r[~test]).predict(xgb.DMatrix(X[test]))
            resid = r - oof
        else:
            resid = r - self.offset_
        lo_q, _, hi_q = self.quantiles
        self.resid_q_ = (float(np.quantile(resid, lo_q)), float(np.quantile(resid, hi_q))) if len(resid) > 1 \
            else (-0.25, 0.25)
        return self

    def _check(self) -> None:
        if not hasattr(self, "coef_"):
            raise NotFittedError("this KernelRegressor is not fitted yet; call fit() first")

    def predict_quantiles(self, X: Any) -> np.ndarray:
        """(n, 3): the low, point and high estimate of the cost, in the units of ``y``."""
        self._check()
        X = np.asarray(X, dtype=np.float64).reshape(-1, self.n_features_in_)
        if self.booster_ is not None:
            # Threads only pay off on big batches; on a few rows their start-up dominates.
            self.booster_.set_param({"nthread": 1 if len(X) < _THREADED_ROWS else 2})
            r = np.asarray(self.booster_.inplace_predict(X))
        else:
            r = np.full(len(X), self.offset_)
        point = np.log(self._base(X)) + r
        lo, hi = min(self.resid_q_[0], 0.0), max(self.resid_q_[1], 0.0)
        return np.asarray(np.exp(np.column_stack([point + lo, point, point + hi])))

    def predict(self, X: Any) -> np.ndarray:
        return self.predict_quantiles(X)[:, 1]

    # ------------------------------------------------------------------ persistence (data, never pickle)
    def to_state(self) -> tuple[dict[str, Any], bytes | None]:
        self._check()
        meta = {"params": {**self.get_params(), "base_columns": list(self.base_columns),
                           "quantiles": list(self.quantiles)},
                "coef": self.coef_.tolist(), "floor": self.floor_, "offset": self.offset_,
                "n_features_in": self.n_features_in_, "resid_q": list(self.resid_q_)}
        raw = bytes(self.booster_.save_raw("json")) if self.booster_ is not None else None
        return meta, raw

    @classmethod
    def from_state(cls, meta: dict[str, Any], raw: bytes | None) -> KernelRegressor:
        import xgboost as xgb

        p = dict(meta["params"])
        p["base_columns"] = tuple(p["base_columns"])
        p["quantiles"] = tuple(p["quantiles"])
        self = cls(**p)
        self.coef_ = np.asarray(meta["coef"], dtype=np.float64)
        self.floor_ = float(meta["floor"])
        self.offset_ = float(meta["offset"])
        self.n_features_in_ = int(meta["n_features_in"])
        self.resid_q_ = (float(meta["resid_q"][0]), float(meta["resid_q"][1]))
        self.booster_ = None
        if raw is not None:
            booster = xgb.Booster()
            booster.load_model(bytearray(raw))
            self.booster_ = booster
        return self


@dataclass(frozen=True)
class KernelPrediction:
    name: str
    type: str
    latency_ms: float
    fallback: bool = False
    energy_mj: float | None = None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "type": self.type, "latency_ms": self.latency_ms}
        if self.fallback:
            d["fallback"] = True
        if self.energy_mj is not None:
            d["energy_mj"] = self.energy_mj
        return d


@dataclass(frozen=True)
class Prediction:
    latency_ms: float
    latency_interval_ms: tuple[float, float]
    energy_mj: float | None = None
    kernels: tuple[KernelPrediction, ...] = field(default_factory=tuple)

    @property
    def fallback_kernels(self) -> list[KernelPrediction]:
        return [k for k in self.kernels if k.fallback]


def _base_cols(ktype: str) -> tuple[int, ...]:
    cols = FEATURES.get(ktype, FALLBACK_FEATURES)
    return tuple(i for i, c in enumerate(cols) if c in ("macs", "kbytes"))


class KernelLevelPredictor:
    """Whole-model cost = per-inference overhead + Σ per-kernel-type models.

    ``fit(graphs, y)`` learns from measurements of single-kernel models (graphs that form one
    kernel under ``rules``) plus tiny one-op models for the overhead; graphs with more kernels
    are ignored by ``fit`` (they are evaluation data). ``target`` names the unit of ``y``.
    """

    def __init__(self, *, rules: FusionRules, target: str = "latency_ms", threads: int = 1,
                 min_samples: int = 3, regressor_params: dict[str, Any] | None = None,
                 io_boundary: IoBoundary | None = None) -> None:
        self.rules = rules
        self.io_boundary = io_boundary  # a host ↔ accelerator link: learn its boundary term (predictors.boundary)
        self.target = target
        self.threads = threads
        self.min_samples = min_samples
        self.regressor_params = regressor_params

    # ------------------------------------------------------------------ training
    def fit(self, graphs: Sequence[Graph], y: Sequence[float]) -> KernelLevelPredictor:
        if len(graphs) != len(y):
            raise ValueError("KernelLevelPredictor.fit: one target per graph")
        singles: list[tuple[DetectedKernel, float]] = []
        single_graphs: list[Graph] = []
        tiny: list[tuple[int, float]] = []  # (kernels, latency) of minimal models
        for g, v in zip(graphs, y, strict=True):
            if not (v > 0 and math.isfinite(v)):
                continue
            ks = detect_kernels(g, self.rules)
            if ks and is_minimal_model(g):
                tiny.append((len(ks), float(v)))
            elif len(ks) == 1:
                singles.append((ks[0], float(v)))
                single_graphs.append(g)
        if not singles:
            raise ValueError("no single-kernel measurements to train on (build a kernel dataset first: "
                             "hwfarm dataset build --device NAME)")
        ys = np.array([v for _, v in singles])
        self.overhead_ = self._overhead(tiny, singles, ys)
        self.n_null_ = len(tiny)
        self.io_ = (fit_io_cost([(k, g, v) for (k, v), g in zip(singles, single_graphs, strict=True)], self.overhead_,
                                self.io_boundary) if self.io_boundary is not None else IoCost())
        io = np.array([self.io_.cost_ms(g) for g in single_graphs])
        net = np.maximum(ys - self.overhead_ - io, 0.02 * ys)
        by_type: dict[str, list[int]] = {}
        for i, (k, _) in enumerate(singles):
            by_type.setdefault(k.type, []).append(i)
        params = self.regressor_params or {}
        self.models_: dict[str, KernelRegressor] = {}
        self.n_samples_: dict[str, int] = {}
        for t, idx in sorted(by_type.items()):
            if len(idx) < self.min_samples or t not in FEATURES:
                continue
            X = np.array([feature_row(singles[i][0], t, self.threads) for i in idx])
            self.models_[t] = KernelRegressor(base_columns=_base_cols(t), **params).fit(X, net[idx])
            self.n_samples_[t] = len(idx)
        Xf = np.array([feature_row(k, "fallback", self.threads) for k, _ in singles])
        self.fallback_ = KernelRegressor(base_columns=(0, 1), min_samples_boost=10**9).fit(Xf, net)
        return self

    @staticmethod
    def _overhead(tiny: list[tuple[int, float]], singles: list[tuple[DetectedKernel, float]], ys: np.ndarray) -> float:
        """The per-inference cost outside any kernel. Minimal models of one and two tiny ops
        separate it from the per-kernel dispatch cost (T = overhead + n · dispatch); with
        one-op models only, their median (an upper bound); without any, the intercept of one
        roofline through all kernels, kept below the fastest."""
        counts = {n for n, _ in tiny}
        if len(counts) >= 2:
            n = np.array([c for c, _ in tiny], dtype=float)
            t = np.array([v for _, v in tiny])
            slope, intercept = np.polyfit(n, t, 1)
            return float(np.clip(intercept, 0.0, t.min()))
        if tiny:
            return float(np.median([v for _, v in tiny]))
        A = np.array([[k.kernel.macs, k.kernel.bytes / 1024.0, 1.0] for k, _ in singles])
        return float(min(_nnls(A, ys, 1.0 / ys)[2], 0.8 * ys.min()))

    # ------------------------------------------------------------------ prediction
    def _check(self) -> None:
        if not hasattr(self, "models_"):
            raise NotFittedError("this KernelLevelPredictor is not fitted yet; call fit() first")

    def kernel_quantiles(self, graphs: Sequence[Graph]) -> tuple[list[list[DetectedKernel]], list[np.ndarray],
                                                                list[np.ndarray]]:
        """Kernels of every graph, their (n, 3) cost quantiles and fallback flags, with each
        type's model run once over the unique feature rows of all graphs."""
        self._check()
        kernels = [detect_kernels(g, self.rules) for g in graphs]
        rows: dict[str, list[list[float]]] = {}
        where: dict[str, list[tuple[int, int]]] = {}
        for gi, ks in enumerate(kernels):
            for ki, k in enumerate(ks):
                t = k.type if k.type in self.models_ else "fallback"
                rows.setdefault(t, []).append(feature_row(k, t, self.threads))
                where.setdefault(t, []).append((gi, ki))
        out = [np.zeros((len(ks), 3)) for ks in kernels]
        fb = [np.zeros(len(ks), dtype=bool) for ks in kernels]
        for t, r in rows.items():
            X = np.asarray(r, dtype=np.float64)
            uniq, inverse = np.unique(X, axis=0, return_inverse=True)
            model = self.models_.get(t, self.fallback_)
            q = model.predict_quantiles(uniq)[np.asarray(inverse).reshape(-1)]
            for (gi, ki), v in zip(where[t], q, strict=True):
                out[gi][ki] = v
                fb[gi][ki] = t == "fallback"
        return kernels, out, fb

    def model_overhead(self, graphs: Sequence[Graph]) -> np.ndarray:
        """Each graph's cost outside its kernels: the per-inference overhead plus its boundary term."""
        self._check()
        io = getattr(self, "io_", IoCost())
        return np.array([self.overhead_ + io.cost_ms(g) for g in graphs])

    def predict_many(self, graphs: Sequence[Graph]) -> np.ndarray:
        """(n, 3): low, point and high whole-model cost for each graph."""
        _, q, _ = self.kernel_quantiles(graphs)
        base = self.model_overhead(graphs)
        return np.array([b + qi.sum(axis=0) if len(qi) else np.full(3, b) for b, qi in zip(base, q, strict=True)])

    def predict(self, graphs: Sequence[Graph]) -> np.ndarray:
        return self.predict_many(graphs)[:, 1]

    # ------------------------------------------------------------------ persistence
    def to_state(self) -> tuple[dict[str, Any], dict[str, bytes]]:
        self._check()
        files: dict[str, bytes] = {}
        types: dict[str, Any] = {}
        for t, m in {**self.models_, "fallback": self.fallback_}.items():
            meta, raw = m.to_state()
            if raw is not None:
                fname = f"{self.target}/{t}.json"
                files[fname] = raw
                meta["model_file"] = fname
            meta["features"] = list(FEATURES.get(t, FALLBACK_FEATURES))
            meta["n_samples"] = self.n_samples_.get(t)
            types[t] = meta
        state = {"target": self.target, "threads": self.threads, "overhead": self.overhead_,
                 "n_null": self.n_null_, "rules": self.rules.to_dict(), "types": types,
                 "io": getattr(self, "io_", IoCost()).to_dict()}
        return state, files

    @classmethod
    def from_state(cls, state: dict[str, Any], files: dict[str, bytes]) -> KernelLevelPredictor:
        self = cls(rules=FusionRules.from_dict(state["rules"]), target=state["target"], threads=int(state["threads"]))
        self.overhead_ = float(state["overhead"])
        self.n_null_ = int(state.get("n_null", 0))
        self.io_ = IoCost.from_dict(state.get("io"))
        self.models_, self.n_samples_ = {}, {}
        for t, meta in state["types"].items():
            if list(meta["features"]) != list(FEATURES.get(t, FALLBACK_FEATURES)):
                raise ValueError(f"kernel type {t!r}: the bundle's features differ from this hwfarm's feature table")
            m = KernelRegressor.from_state(meta, files.get(meta.get("model_file", "")) if "model_file" in meta else None)
            if t == "fallback":
                self.fallback_ = m
            else:
                self.models_[t] = m
                if meta.get("n_samples"):
                    self.n_samples_[t] = int(meta["n_samples"])
        return self
