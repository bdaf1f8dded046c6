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

from farm.ir.graph import Graph
from predictors.boundary import IoBoundary, IoCost, fit_io_cost
from predictors.features import FALLBACK_FEATURES, FEATURES, feature_row
from predictors.kernels import DetectedKernel, FusionRules, detect_kernels
from predictors.metrics import accuracy_metrics
from predictors.runtimes import (
    BLOCKED_CONV_ACTIVATIONS,
    PLAIN_LAYOUT_TYPES,
    blocked_kb,
    blocked_layout,
    plane_aliased,
    reads_plain_input,
)

__all__ = ["KernelRegressor", "KernelLevelPredictor", "is_minimal_model", "chain_length", "KernelPrediction", "Prediction", "NotFittedError"]

_THREADED_ROWS = 20_000
_FOLDS = 3  # out-of-fold residuals calibrate the intervals
_TINY_NUMEL = 64  # ops on at most 64 numbers: minimal models that measure the per-inference overhead
_BOUNDARY_SHARE = 0.10  # a type pays a boundary when its chains show it as ≥10% of a kernel's cost…
_BOUNDARY_NOISE = 0.03  # …and ≥3% of the chain's intercept (below that it is timing noise)
_MIN_CHAINS = 3  # chain configurations a type needs for its own boundary coefficient
_MIN_CALIBRATION = 5  # calibration networks needed to fit the in-network boundary rate
_CHAIN_NOISE = 0.02  # a chain's intercept is known to about 2% of its longest model's time


@dataclass(frozen=True)
class _Domain:
    """A model's boundary domain: who produces and reads each tensor, which kernels run
    inside, each one's boundary coefficients, and which read the plain layout themselves."""

    producer: dict[str, int]
    readers: dict[str, list[int]]
    finals: set[str]
    inside: np.ndarray
    coef: list[tuple[float, float]]
    plain_in: np.ndarray


def chain_length(kernels: Sequence[DetectedKernel], threads: int = 1) -> int:
    """n when the kernels are n > 1 identical copies of one kernel (a chain model of the
    kernel dataset), else 0."""
    if len(kernels) < 2:
        return 0
    t = kernels[0].type
    row = feature_row(kernels[0], t if t in FEATURES else "fallback", threads)
    for k in kernels[1:]:
        if k.type != t or feature_row(k, t if t in FEATURES else "fallback", threads) != row:
            return 0
    return len(kernels)


def is_minimal_model(graph: Graph) -> bool:
    """A model of a few ops on at most 64 numbers and no MACs: what it costs is the
    per-inference overhead plus a dispatch per kernel (training data for both)."""
    return graph.macs == 0 and all(t.numel <= _TINY_NUMEL for n in graph.nodes for t in (*n.inputs, *n.outputs))


def _structure(graph: Graph) -> tuple[Any, ...]:
    """A graph's ops, wiring, shapes, dtypes and attributes without its names: the same
    model written under two names (two workloads) has one structure."""
    ids: dict[str, int] = {}  # tensor name -> order of first appearance
    return tuple((n.op, tuple((ids.setdefault(t.name, len(ids)), t.shape, t.dtype) for t in (*n.inputs, *n.outputs)),
                  repr(sorted(n.attrs.items()))) for n in graph.nodes)  # attributes keyed as dedupe keys them


# Cache sizes the weight term tries (KB): each core's L2 on today's CPUs is 256 KB–2 MB, a
# shared L3 or a phone's system cache 2–32 MB; inf: every convolution's weights count (no capacity).
_CACHE_KB = (256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0, math.inf)
# Kernels whose weights a network re-reads: a convolution reuses its weights across the output
# and runs from cache alone. A batch-1 Gemm reads each weight once per run: charging it the
# convolutions' rate put random MLPs of 0.3–10 MB 42–96% high; what it does pay, past a
# core's cache, is the streamed-weight term (_STREAM_TYPES).
_REREAD_TYPES = ("conv", "dwconv")
# Kernels that stream their weights once per run (a batch-1 Gemm): a lone one finds them in
# a per-core cache that a network whose weights outgrow it does not (a chain of n copies
# shows it: n·KB past the cache costs more per copy than one copy). Their rate and capacity
# come from the kernel dataset's Gemm chains (:meth:`KernelLevelPredictor._fit_stream`).
_STREAM_TYPES = ("gemm",)
_STREAM_CACHE_KB = tuple(float(round(256.0 * 2 ** (i / 4))) for i in range(31))  # 256 KB … 48 MB in steps of 2^¼
_STREAM_GAIN = 0.5  # the term must explain at least half of the chains' squared residual…
_STREAM_SHARE = 0.05  # …and ≥5% of the spilled chains' time (below that it is timing noise)


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


class NotFittedError(RuntimeError):
    """predict() before fit()."""


def _nnls(A: np.ndarray, y: np.ndarray, w: np.ndarray | None = None, upper: float | None = None) -> np.ndarray:
    """Weighted least squares with every coefficient in [0, ``upper``] (default: no upper bound)."""
    from scipy.optimize import lsq_linear, nnls

    if w is not None:
        A, y = A * w[:, None], y * w
    scale = np.maximum(np.abs(A).max(axis=0), 1e-12)
    if upper is None:
        coef, _ = nnls(A / scale, y)
    else:
        coef = lsq_linear(A / scale, y, bounds=(0.0, upper * scale), method="bvls").x
    return np.asarray(coef / scale)


_CAL_OUTLIER = 3.0  # a calibration network this many robust SDs off the fit (and ≥ _CAL_FLOOR) is left out
_CAL_FLOOR = 0.05
_CAL_MAX_OUT = 0.25  # at most this share of them


def _outliers(r: np.ndarray) -> np.ndarray:
    """Which relative residuals are outliers: more than :data:`_CAL_OUTLIER` robust standard
    deviations (1.4826 · MAD) and :data:`_CAL_FLOOR` from their median, the worst
    :data:`_CAL_MAX_OUT` at most."""
    dev = np.abs(r - np.median(r))
    out = dev > max(_CAL_OUTLIER * 1.4826 * float(np.median(dev)), _CAL_FLOOR)
    if out.sum() > _CAL_MAX_OUT * len(r):
        out = np.zeros_like(out)
        out[np.argsort(-dev)[: int(_CAL_MAX_OUT * len(r))]] = True
    return out


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
        self._set_booster(None)
        if len(y) >= self.min_samples_boost:
            self._set_booster(self._boost(X, r))
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

    def _set_booster(self, booster: Any) -> None:
        """Keep ``booster`` with its thread count set once: one thread, plus a two-thread copy
        for big batches. Predicting never changes a booster (``inplace_predict`` alone is
        thread-safe, ``set_param`` beside it is not), so one regressor serves many threads."""
        self.booster_: Any = booster
        self._booster_threaded: Any = None
        if booster is not None:
            booster.set_param({"nthread": 1})
            self._booster_threaded = booster.copy()
            self._booster_threaded.set_param({"nthread": 2})

    def predict_quantiles(self, X: Any) -> np.ndarray:
        """(n, 3): the low, point and high estimate of the cost, in the units of ``y``."""
        self._check()
        X = np.asarray(X, dtype=np.float64).reshape(-1, self.n_features_in_)
        if self.booster_ is not None:
            # Threads only pay off on big batches; on a few rows their start-up dominates.
            booster = self.booster_ if len(X) < _THREADED_ROWS else self._booster_threaded
            r = np.asarray(booster.inplace_predict(X))
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
        booster = None
        if raw is not None:
            booster = xgb.Booster()
            booster.load_model(bytearray(raw))
        self._set_booster(booster)
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

    boundary_types_: dict[str, tuple[float, float]]  # type → (per-tensor ms, per-KB ms) a boundary costs
    boundary_pooled_: tuple[float, float] | None
    boundary_alias_: float  # extra ms per KB a reorder of an aliased tensor costs (plane_aliased)
    weight_rate_: float  # ms per KB of weights a network re-reads at each inference (calibrated)

    def __init__(self, *, rules: FusionRules, target: str = "latency_ms", threads: int = 1,
                 min_samples: int = 3, regressor_params: dict[str, Any] | None = None,
                 boundary: bool = True, io_boundary: IoBoundary | None = None) -> None:
        self.rules = rules
        self.boundary = boundary  # learn boundary costs from the chains (False: ignore chains)
        self.io_boundary = io_boundary  # a host ↔ accelerator link: learn its boundary term (predictors.boundary)
        self.target = target
        self.threads = threads
        self.min_samples = min_samples
        self.regressor_params = regressor_params

    # ------------------------------------------------------------------ training
    def fit(self, graphs: Sequence[Graph], y: Sequence[float], *,
            calibration: Sequence[tuple[Graph, float]] | None = None) -> KernelLevelPredictor:
        """``calibration``: (graph, cost) of whole networks measured on the device, never
        evaluation networks; with enough of them (and a boundary the chains show), the
        in-network boundary rate is fitted on them (:meth:`_calibrate_boundary`)."""
        if len(graphs) != len(y):
            raise ValueError("KernelLevelPredictor.fit: one target per graph")
        singles: list[tuple[DetectedKernel, float]] = []
        single_graphs: list[Graph] = []
        # Minimal models by structure (not name): a model measured in two sittings (sampling.
        # second_sitting) keeps its faster one; contention only ever adds to an overhead.
        tiny_by: dict[tuple[Any, ...], tuple[int, float]] = {}
        chains: dict[tuple[str, tuple[float, ...]], tuple[DetectedKernel, dict[int, list[float]]]] = {}
        for g, v in zip(graphs, y, strict=True):
            if not (v > 0 and math.isfinite(v)):
                continue
            ks = detect_kernels(g, self.rules)
            if ks and is_minimal_model(g):
                key = _structure(g)
                prev = tiny_by.get(key)
                tiny_by[key] = (len(ks), float(v) if prev is None else min(prev[1], float(v)))
            elif len(ks) == 1:
                singles.append((ks[0], float(v)))
                single_graphs.append(g)
            elif self.boundary and (n := chain_length(ks, self.threads)) and ks[0].type in FEATURES:
                chains.setdefault(self._key(ks[0]), (ks[0], {}))[1].setdefault(n, []).append(float(v))
        if not singles:
            raise ValueError("no single-kernel measurements to train on (build a kernel dataset first: "
                             "hwfarm dataset build --device NAME)")
        for k, v in singles:  # a chain's one-kernel model is one of the singles
            if (key := self._key(k)) in chains:
                chains[key][1].setdefault(1, []).append(v)
        ys = np.array([v for _, v in singles])
        tiny = list(tiny_by.values())
        self.overhead_ = self._overhead(tiny, singles, ys)
        self.n_null_ = len(tiny)
        own_of_chain = self._fit_boundary(chains)
        for key in self._fit_stream(chains):  # a spilled chain's slope holds the stream cost
            own_of_chain.pop(key, None)
        self.io_ = (fit_io_cost([(k, g, v) for (k, v), g in zip(singles, single_graphs, strict=True)], self.base_ms,
                                self.io_boundary) if self.io_boundary is not None else IoCost())
        self.calibration_: dict[str, Any] | None = None
        self.weight_rate_ = 0.0  # weights a network re-reads each inference (calibrated)
        self.weight_cache_kb_ = math.inf  # the cache a lone kernel's weights stay in (calibrated)
        cal = [(g, float(v)) for g, v in (calibration or ()) if v > 0 and math.isfinite(v)]
        if self.boundary_types_ and len(cal) >= _MIN_CALIBRATION:
            self._calibrate_boundary(singles, single_graphs, cal)
            own_of_chain = {}  # the calibrated rate, not the chains', prices every lone kernel's boundary
        self._fit_models(singles, single_graphs, own_of_chain)
        return self

    def _fit_models(self, singles: list[tuple[DetectedKernel, float]], single_graphs: list[Graph],
                    own_of_chain: dict[tuple[str, tuple[float, ...]], float]) -> None:
        """One regressor per kernel type (and the fallback roofline) on each lone kernel's own
        cost: its time less the overhead, its boundary and its link transfers."""
        net = np.empty(len(singles))
        for i, ((k, v), g) in enumerate(zip(singles, single_graphs, strict=True)):
            own = own_of_chain.get(self._key(k))
            # what the kernel costs per copy, measured by its chain; else what is left of the
            # lone kernel's time (a kernel lost in the overhead's timing noise stays small:
            # a floor at 2% of the model's time made every tiny kernel cost that much)
            net[i] = own if own is not None else \
                max(v - self.base_ms - float(self.boundary_ms([k]).sum()) - self.io_.cost_ms(g), 0.002 * v)
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

    def _calibrate_boundary(self, singles: list[tuple[DetectedKernel, float]], single_graphs: list[Graph],
                            cal: list[tuple[Graph, float]]) -> None:
        """The in-network boundary rate and weight-cache term from calibration networks
        measured on the device.

        A lone kernel of a boundary type pays its layout conversions on every tensor; inside
        a network it pays them only where the layout changes (:meth:`boundary_ms`). The
        chains measure the conversions per type; the networks say what a network actually
        saves. A lone kernel run back to back also finds its weights in cache; inside a
        network the rest of the network has evicted them since the last inference.

        One boundary rate ``r`` per KB, shared by the boundary types, and one rate ``w`` per
        KB of weights, both kept within [0, the highest chain rate] (re-reading a KB costs no
        more than reordering it, a read and a write), are fitted on the
        calibration networks by least relative squares, once more without the networks that
        fit finds far off (a network measured in a slow spell is an outlier, not a rate;
        :func:`_outliers`, counted in ``n_outliers``): with the kernels trained on their
        time less the overhead (``r`` = 0), a network's prediction moves by ``-r · D + w · W``,
        D = Σ the lone kernels' boundary KB - the network's own boundary KB, W = the KB of
        convolution weights the network re-reads (:meth:`_weight_kb`: a cache keeps a lone
        kernel's weights; the capacity from :data:`_CACHE_KB` that fits the networks best);
        kernels the layout folds into a convolution count in neither. (onnxruntime on this
        project's host, five datasets: chains 21–27 ns/KB, the networks' fit 10–27, w 15–26
        ns/KB, the bound on one, cache 4 MB.) ``calibration_`` records both rates, the cache and the
        calibration networks' ±10% accuracy before and after. The per-tensor constant and the
        aliased planes' surcharge (:func:`plane_aliased`) are the chains' and are not refitted."""
        chain_types = dict(self.boundary_types_)
        pooled = self.boundary_pooled_
        # The per-tensor constant and the aliased planes' surcharge stay the chains': they are
        # what a reorder kernel itself costs, not a share of the traffic a network saves
        # (scaling the surcharge by the fitted rate left a lone 32×32 pool's own cost 30% high,
        # and NB201's 32×32 stage with it). (boundary_offset_ms_ stays the chains' too: the
        # per-tensor constant the overhead holds, which the kernels keep paying below.)
        alias = self.boundary_alias_
        self.boundary_types_ = {}
        self.boundary_pooled_ = None
        self.boundary_alias_ = 0.0
        self.weight_rate_ = 0.0
        self._fit_models(singles, single_graphs, {})
        graphs = [g for g, _ in cal]
        kernels = [detect_kernels(g, self.rules) for g in graphs]
        self.boundary_types_ = {t: (0.0, 1.0) for t in chain_types}  # the unit rate: boundaries in KB
        self.boundary_pooled_ = (0.0, 1.0)
        self.boundary_alias_ = 0.0
        fused = [self.fused_sums(ks) for ks in kernels]

        def saved() -> tuple[np.ndarray, np.ndarray]:
            """The network's boundary and Σ its lone kernels' (folded kernels free) at the current rates."""
            net = np.array([float(self.boundary_ms(ks).sum()) for ks in kernels])
            lone = np.array([sum(float(self.boundary_ms([k]).sum()) for k, f in zip(ks, fz, strict=True) if not f)
                             for ks, fz in zip(kernels, fused, strict=True)])
            return net, lone

        b_net, b_lone = saved()
        p0 = self.predict(graphs) - b_net  # Σ lone kernels less the overhead, folded kernels free
        d = b_lone - b_net
        # the per-tensor constant (a reorder's dispatch) stays the chains'
        c0 = pooled[0] if pooled else 0.0
        self.boundary_types_ = {t: (c0, 0.0) for t in chain_types}
        self.boundary_pooled_ = (c0, 0.0)
        self.boundary_alias_ = alias
        k_net, k_lone = saved()
        p0 -= k_lone - k_net
        y = np.array([v for _, v in cal])
        top = max(c1 for _, c1 in chain_types.values())
        wt = 1.0 / y

        def solve(cache_kb: float, keep: np.ndarray) -> tuple[float, float, float, np.ndarray, np.ndarray]:
            wkb = np.array([self._weight_kb(ks, fz, cache_kb).sum() for ks, fz in zip(kernels, fused, strict=True)])
            # both rates at most the chains' (re-reading a KB costs no more than reordering it)
            A = np.column_stack([-d, wkb])
            rate, wrate = (float(v) for v in _nnls(A[keep], (y - p0)[keep], wt[keep], upper=top))
            r = wt * (y - p0 + rate * d - wrate * wkb)
            return float(np.sum(r[keep] ** 2)), rate, wrate, wkb, r

        # the cache that keeps a lone kernel's weights: the capacity that best explains the
        # networks; then again without the networks that fit found measured in a slow spell
        # (a spike of 20–40% where the rest fit within a few %: two of them had put every
        # other network 10% high)
        keep = np.ones(len(y), dtype=bool)
        fits = {c: solve(c, keep) for c in _CACHE_KB}
        cache_kb = min(fits, key=lambda c: fits[c][0])
        if (out := _outliers(fits[cache_kb][4])).any():
            keep = ~out
            fits = {c: solve(c, keep) for c in _CACHE_KB}
            cache_kb = min(fits, key=lambda c: fits[c][0])
        _, rate, wrate, wkb, _ = fits[cache_kb]
        self.weight_cache_kb_ = cache_kb
        self.boundary_types_ = {t: (c0, rate) for t in chain_types}
        self.boundary_pooled_ = (c0, rate) if pooled else None
        self.boundary_alias_ = alias
        self.weight_rate_ = wrate
        before = accuracy_metrics(p0, y)["acc10"]
        after = accuracy_metrics(p0 - rate * d + wrate * wkb, y)["acc10"]
        self.calibration_ = {"n": len(cal), "rate_ns_per_kb": rate * 1e6, "per_tensor_us": c0 * 1e3, "chain_rates_ns_per_kb":
                             {t: c1 * 1e6 for t, (_, c1) in chain_types.items()},
                             "weights_ns_per_kb": wrate * 1e6, "aliased_ns_per_kb": alias * 1e6,
                             "weights_cache_kb": _finite_or_none(cache_kb), "n_outliers": int((~keep).sum()),
                             "acc10_uncalibrated": before, "acc10": after}

    def _weight_kb(self, kernels: Sequence[DetectedKernel], fused: np.ndarray, cache_kb: float | None = None
                   ) -> np.ndarray:
        """Each kernel's weights in KB that the network re-reads at each inference and its
        lone model does not: those of a convolution (:data:`_REREAD_TYPES`) that alone keeps
        them in a cache of ``cache_kb`` (default: the calibrated one), when the network's
        convolution weights together do not fit it (``cache_kb`` inf: every convolution's
        weights, always); 0 for a kernel folded into a convolution."""
        cache = getattr(self, "weight_cache_kb_", math.inf) if cache_kb is None else cache_kb
        kb = np.array([0.0 if f or k.type not in _REREAD_TYPES else k.kernel.weight_bytes / 1024.0
                       for k, f in zip(kernels, fused, strict=True)])
        if not math.isfinite(cache):
            return kb
        if kb.sum() <= cache:
            return np.zeros_like(kb)
        return np.where(kb <= cache, kb, 0.0)

    # ------------------------------------------------------------------ streamed weights
    def _fit_stream(self, chains: dict[tuple[str, tuple[float, ...]], tuple[DetectedKernel, dict[int, list[float]]]]
                    ) -> set[tuple[str, tuple[float, ...]]]:
        """The cost of weights a network streams from further out than its lone kernels do.

        A lone Gemm run back to back keeps its weights in a cache; in a chain of n copies
        (or a network) whose weights together outgrow it, every copy reads them from the
        next level. With ``T(n)`` a chain's median time and ``base`` the overhead, what the
        copies cost beyond n lone ones is ``r(n) = T(n) - n·T(1) + (n - 1)·base``, modelled
        as ``(n - 1)·e + Σ_level rate · n·KB`` (``e``: an error in the overhead, either
        sign) over the cache levels with ``n·KB > cache ≥ KB``: a core's own cache (L2)
        and a shared one (L3), each a capacity from :data:`_STREAM_CACHE_KB` and a
        non-negative rate, the pair that fits the chains best (relative least squares; of the
        capacities that fit them alike, the middle one). A
        level is kept where it is ≥ :data:`_STREAM_SHARE` of the time of the chains it
        applies to, on two configurations or more, and the term only where it explains
        :data:`_STREAM_GAIN` of the chains' squared residual. (onnxruntime on this
        project's host, one dataset: 1 MB at 2.3 ns/KB, 24 MB at 9.8 ns/KB; MLPs whose
        layers fit the core's 1 MB L2 and whose whole does not ran 23–39% slower than
        their lone Gemms.)
        Returns the chain configurations whose chains spill."""
        self.stream_levels_: list[tuple[float, float]] = []
        self.stream_fit_: dict[str, Any] | None = None
        rows = []  # (key, KB per copy, n, residual ms, T(n))
        base = self.base_ms
        for key, (k, by_n) in chains.items():
            if k.type not in _STREAM_TYPES or 1 not in by_n or not k.kernel.weight_bytes:
                continue
            t1 = float(np.median(by_n[1]))
            for n, vs in by_n.items():
                if n > 1:
                    t_n = float(np.median(vs))
                    rows.append((key, k.kernel.weight_bytes / 1024.0, n, t_n - n * t1 + (n - 1) * base, t_n))
        if len(rows) < _MIN_CHAINS:
            return set()
        kb = np.array([row[1] for row in rows])
        total = np.array([row[2] for row in rows], dtype=float) * kb
        res = np.array([row[3] for row in rows])
        times = np.array([row[4] for row in rows])
        wt = 1.0 / times
        # an error in the overhead leaves (n - 1)·error in every residual: a free-sign column
        copies = np.array([row[2] - 1.0 for row in rows])
        offset = np.column_stack([copies, -copies])

        def fit(X: np.ndarray) -> tuple[float, np.ndarray]:
            A = np.column_stack([offset, X])
            coef = _nnls(A, res, wt)
            return float(np.sum((wt * (res - A @ coef)) ** 2)), coef[2:]

        sse0, _ = fit(np.zeros((len(rows), 0)))

        def column(cache: float) -> np.ndarray:
            return np.where((total > cache) & (kb <= cache), total, 0.0)

        def solve(caches: tuple[float, ...]) -> tuple[float, list[tuple[float, float]]]:
            X = np.column_stack([column(c) for c in caches])
            if not X.any():
                return sse0, []
            sse, rates = fit(X)
            return sse, [(c, float(v)) for c, v in zip(caches, rates, strict=True)]

        def share(level: tuple[float, float]) -> float:
            x = column(level[0])
            return level[1] * float(x.sum()) / float(times[x > 0].sum()) if x.any() else 0.0

        grid = _STREAM_CACHE_KB
        fits: dict[tuple[float, ...], tuple[float, list[tuple[float, float]]]] = {cs: solve(cs) for cs in [(c,) for c in grid] + [(c1, c2) for i, c1 in enumerate(grid)
                                                                 for c2 in grid[i + 1:]]}
        sse, levels = min(fits.values(), key=lambda f: f[0])
        # The chains bound a capacity between the largest total that fits and the smallest
        # that does not; every capacity between fits them alike: take the middle one.
        caches = [c for c, _ in levels]
        for i in range(len(caches)):
            lo = caches[i - 1] if i else 0.0
            hi = caches[i + 1] if i + 1 < len(caches) else math.inf
            alike = [c for c in grid if lo < c < hi
                     and fits[tuple(caches[:i] + [c] + caches[i + 1:])][0] <= sse * (1 + 1e-9) + 1e-30]
            caches[i] = alike[len(alike) // 2] if alike else caches[i]
        sse, levels = fits.get(tuple(caches)) or (sse0, [])
        # a level must carry its chains' time (not noise) on at least two configurations
        kept = tuple(c for c, v in levels if v > 0 and share((c, v)) >= _STREAM_SHARE
                     and len({rows[i][0] for i in np.flatnonzero(column(c))}) >= 2)
        if kept != tuple(c for c, _ in levels):
            sse, levels = solve(kept) if kept else (sse0, [])
        self.stream_fit_ = {"chains": len(rows), "explained": 1.0 - sse / sse0 if sse0 > 0 else 0.0,
                            "levels": [{"cache_kb": c, "rate_ns_per_kb": v * 1e6, "share": share((c, v))}
                                       for c, v in levels]}
        if not levels or sse > (1.0 - _STREAM_GAIN) * sse0:
            return set()
        self.stream_levels_ = levels
        spilled = np.logical_or.reduce([column(c) > 0 for c, _ in levels])
        return {rows[i][0] for i in np.flatnonzero(spilled)}

    def _stream_ms(self, kernels: Sequence[DetectedKernel]) -> np.ndarray:
        """Each kernel's cost (ms) of the weights the network streams from beyond a cache
        level and its lone model did not (:meth:`_fit_stream`): a :data:`_STREAM_TYPES`
        kernel's whose own weights fit the level, when the network's weights together
        (every kernel's) do not."""
        out = np.zeros(len(kernels))
        levels = getattr(self, "stream_levels_", [])
        if not levels:
            return out
        kb = np.array([k.kernel.weight_bytes / 1024.0 if k.type in _STREAM_TYPES else 0.0 for k in kernels])
        if not kb.any():
            return out
        total = sum(k.kernel.weight_bytes for k in kernels) / 1024.0
        for cache, rate in levels:
            if total > cache:
                out += rate * np.where(kb <= cache, kb, 0.0)
        return out

    def _key(self, k: DetectedKernel) -> tuple[str, tuple[float, ...]]:
        return k.type, tuple(feature_row(k, k.type if k.type in FEATURES else "fallback", self.threads))

    @property
    def base_ms(self) -> float:
        """What every model pays besides its kernels and boundaries: the per-inference
        overhead, less the boundary the minimal models it was measured on already hold."""
        return self.overhead_ - getattr(self, "boundary_offset_ms_", 0.0)

    # ------------------------------------------------------------------ boundary costs
    def _fit_boundary(self, chains: dict[tuple[str, tuple[float, ...]], tuple[DetectedKernel, dict[int, list[float]]]]
                      ) -> dict[tuple[str, tuple[float, ...]], float]:
        """What a kernel pays once per model rather than per copy, from chains of n identical
        kernels: T(n) = intercept + n · kernel, intercept = overhead + boundary. One fit over
        all chains (and the minimal models' overhead) gives the overhead, a per-tensor
        constant ``c0`` and each type's per-KB boundary ``c1``. Under a blocked layout the
        boundary is the runtime's reorder kernels whatever the kernel between them: one
        ``c1`` for every blocked kernel, a per-reorder constant (the minimal models hold
        none), and ``c2`` more per KB on tensors whose planes alias (:func:`plane_aliased`);
        padded channels count (:func:`blocked_kb`). Types whose chains show a
        boundary are *boundary types*: in a model they pay ``c0 + c1 · KB`` for each tensor
        that enters or leaves their domain (the run of boundary types and the layout-
        types that run in any layout between them). Returns each chain configuration's per-copy cost;
        refines ``overhead_``."""
        block = self.rules.layout_block
        # (type, kernel, own per copy, intercept, boundary tensors - 2, boundary KB, noise scale, aliased KB, reorders)
        rows = []
        for (t, _), (k, by_n) in chains.items():
            if len(by_n) < 2:
                continue
            n = np.array(sorted(by_n), dtype=float)
            v = np.array([float(np.median(by_n[int(i)])) for i in n])
            slope, icpt = np.polyfit(n, v, 1)
            if block and reads_plain_input(k, block):
                continue  # each copy reorders its output for the next one's plain read: no once-per-model term
            if icpt < 0.5 * self.overhead_:
                # below the per-inference overhead: the copies slow each other down (a
                # chain of heavy kernels outgrowing the caches), not a boundary to learn
                continue
            tens = self._tensors(k)
            # aliased planes cost more to reorder (plane_aliased): only kernels that run blocked reorder
            reorders = bool(block) and blocked_layout(k, block) is True
            kb = [blocked_kb(k, name, b, block) if reorders else b / 1024.0 for name, b in tens]
            aliased_kb = sum(x for (name, _), x in zip(tens, kb, strict=True) if reorders and plane_aliased(k, name))
            own = max(float(slope), 0.02 * float(v[0]))
            # the intercept's timing noise grows with the chain's total time
            rows.append((t, k, own, max(float(icpt), 1e-9), len(tens) - 2.0,
                         sum(kb), float(icpt) + _CHAIN_NOISE * float(v[-1]), aliased_kb,
                         float(len(tens)) if reorders else 0.0))
        self.boundary_types_ = {}
        self.boundary_pooled_ = None
        self.boundary_offset_ms_ = 0.0
        self.boundary_alias_ = 0.0
        own_of = {self._key(r[1]): r[2] for r in rows}
        if len(rows) < _MIN_CHAINS:
            return own_of
        types = sorted({r[0] for r in rows})
        # Under a blocked layout every blocked kernel's boundary is the same reorder kernels:
        # one rate for all of them (the other types keep their own, for their graph I/O).
        column = {id(r): "reorder" if r[8] > 0 else r[0] for r in rows}
        columns = sorted(set(column.values()))
        reorder_types = {r[0] for r in rows if r[8] > 0}
        alias = bool(block) and any(r[7] > 0 for r in rows)

        def fit(overhead: float | None) -> tuple[float, float, dict[str, float], float]:
            """intercept = overhead + c0 · (tensors - 2) + c1[type] · KB + c2 · aliased KB
            (the overhead free, pinned by the minimal models, or given; c2 only under a
            blocked layout, see :func:`plane_aliased`)."""
            A = [[r[8] if block else max(r[4], 0.0)] + [r[5] if column[id(r)] == c else 0.0 for c in columns]
                 + ([r[7]] if alias else []) for r in rows]
            b = [r[3] - (overhead or 0.0) for r in rows]
            w = [1.0 / r[6] for r in rows]
            if overhead is None:
                A = [[1.0] + a for a in A] + [[1.0] + [0.0] * (len(columns) + 1 + alias)] * 3
                b += [self.overhead_] * 3
                w += [1.0 / self.overhead_] * 3 if self.overhead_ > 0 else [1.0] * 3
            coef = list(map(float, _nnls(np.array(A), np.array(b), np.array(w))))
            o = coef.pop(0) if overhead is None else overhead
            c2 = coef.pop() if alias else 0.0
            rate = dict(zip(columns, coef[1:], strict=True))
            return o, coef[0], {t: rate["reorder" if t in reorder_types else t] for t in types}, c2

        # The minimal models' overhead is an extrapolation to zero kernels; where the chains'
        # intercepts pin it better (within 10%), theirs is used.
        joint, _, _, _ = fit(None)
        overhead = float(np.clip(joint, 0.9 * self.overhead_, 1.1 * self.overhead_))
        overhead, c0, c1, c2 = fit(overhead)
        self.chain_fit_ = {"overhead": overhead, "c0": c0, "c1": c1, "c2_aliased": c2}  # for inspection
        # Does the device pay a boundary at all? The chains' boundary must be a real share
        # of their cost (≥10%) and above timing noise (≥3% of their intercepts).
        bnd = [c0 * (r[8] if block else max(r[4], 0.0)) + c1[r[0]] * r[5] + c2 * r[7] for r in rows]
        total = sum(bnd)
        if total < _BOUNDARY_SHARE * (total + sum(r[2] for r in rows)) or total < _BOUNDARY_NOISE * sum(r[3] for r in rows):
            # No boundary: each chain's intercept is the overhead itself, and their median pins
            # it better than the five minimal models alone where the overhead dwarfs a kernel
            # (a phone's 1.9 ms against 10 µs adds: 1% noise on it is the add's whole cost).
            self.overhead_ = float(np.clip(np.median([r[3] for r in rows]), 0.9 * self.overhead_,
                                           1.1 * self.overhead_))
            return own_of
        self.overhead_ = overhead
        # Which types pay it: those with at least half the highest per-KB rate. A type whose
        # chains are too small to tell (at that rate, below the noise) pays it where every
        # type that can tell does.
        top = max(c1.values())
        member: dict[str, bool | None] = {}
        for t in types:
            rs = [r for r in rows if r[0] == t]
            if max(top * r[5] / r[3] for r in rs) < _BOUNDARY_NOISE:
                member[t] = None
            else:
                member[t] = c1[t] >= 0.5 * top
        told = [m for m in member.values() if m is not None]
        device_wide = bool(told) and all(told)
        domain = [t for t, m in member.items() if m or (m is None and device_wide)]
        if not domain:
            return own_of
        pooled = float(np.median([c1[t] for t in domain]))
        self.boundary_pooled_ = (c0, pooled)
        self.boundary_alias_ = c2
        for t in domain:
            self.boundary_types_[t] = (c0, c1[t] if member[t] else pooled)
        if device_wide:  # the whole device pays it (an accelerator): types without chains too
            for t in FEATURES:
                self.boundary_types_.setdefault(t, self.boundary_pooled_)
        # The overhead is that of a two-tensor model: its boundary constant is already in it
        # (a copy to an accelerator and back; the minimal models run no reorders).
        self.boundary_offset_ms_ = 0.0 if block else 2.0 * c0
        return own_of

    def _tensors(self, k: DetectedKernel) -> list[tuple[str, int]]:
        """A lone kernel's boundary tensors: its activation inputs and its outputs (none
        when it runs in the plain layout; no input when it reads that layout itself)."""
        block = self.rules.layout_block
        if block and blocked_layout(k, block) is False:
            return []
        ins = [] if block and reads_plain_input(k, block) else list(k.kernel.inputs)
        return ins + list(k.kernel.outputs)

    def _domain(self, kernels: Sequence[DetectedKernel], graph_outputs: Sequence[str] | None = None) -> _Domain | None:
        """Which kernels run inside the boundary domain (:meth:`boundary_ms`), with the
        graph's producer/reader maps; None when the device pays no boundary."""
        types = getattr(self, "boundary_types_", None)
        if not types or not kernels:
            return None
        producer: dict[str, int] = {}
        readers: dict[str, list[int]] = {}
        for i, k in enumerate(kernels):
            for name, _ in k.kernel.inputs:
                readers.setdefault(name, []).append(i)
            for name, _ in k.kernel.outputs:
                producer[name] = i
        finals = set(graph_outputs) if graph_outputs is not None else \
            {n for k in kernels for n, _ in k.kernel.outputs if n not in readers}
        inside = np.zeros(len(kernels), dtype=bool)
        coef: list[tuple[float, float]] = []
        block = self.rules.layout_block
        for i, k in enumerate(kernels):
            layout = blocked_layout(k, block) if block else None
            if k.type in types and layout is not False:
                inside[i] = True
                coef.append(types[k.type])
                continue
            src = [producer.get(n) for n, _ in k.kernel.inputs]
            inside[i] = layout is None and k.type in FEATURES and k.type not in PLAIN_LAYOUT_TYPES and bool(src) and \
                all(p is not None and inside[p] for p in src)
            first = next((p for p in src if p is not None), None)
            coef.append(coef[first] if inside[i] and first is not None else (self.boundary_pooled_ or (0.0, 0.0)))
        plain_in = np.array([bool(block) and reads_plain_input(k, block) for k in kernels])
        return _Domain(producer, readers, finals, inside, coef, plain_in)

    def boundary_ms(self, kernels: Sequence[DetectedKernel], graph_outputs: Sequence[str] | None = None) -> np.ndarray:
        """Per kernel, the boundary cost it pays in this model: ``c0 + c1 · KB`` (plus the
        aliased-plane rate, :func:`plane_aliased`) for each tensor by which a boundary
        kernel enters its domain (from a graph input or a kernel outside it) or leaves it
        (to a graph output, a kernel outside it, or one that reads the plain layout itself).
        Kernels of the other types join the domain when all their inputs come from it,
        except those that need the plain layout (:data:`predictors.runtimes.PLAIN_LAYOUT_TYPES`). ``graph_outputs``
        default: tensors no kernel reads."""
        return self._boundary(kernels, self._domain(kernels, graph_outputs))

    def _boundary(self, kernels: Sequence[DetectedKernel], d: _Domain | None) -> np.ndarray:
        out = np.zeros(len(kernels))
        if d is None:
            return out
        charged: set[str] = set()
        alias = getattr(self, "boundary_alias_", 0.0)
        block = self.rules.layout_block
        for i, k in enumerate(kernels):
            if not d.inside[i]:
                continue
            c0, c1 = d.coef[i]
            for name, size in k.kernel.inputs:
                p = d.producer.get(name)
                if (p is None or not d.inside[p]) and name not in charged and not d.plain_in[i]:
                    charged.add(name)
                    out[i] += c0 + (c1 + alias * plane_aliased(k, name)) * blocked_kb(k, name, size, block)
            for name, size in k.kernel.outputs:
                rs = d.readers.get(name, [])
                if name in d.finals or any(not d.inside[j] or d.plain_in[j] for j in rs):
                    out[i] += c0 + (c1 + alias * plane_aliased(k, name)) * blocked_kb(k, name, size, block)
        return out

    def fused_sums(self, kernels: Sequence[DetectedKernel]) -> np.ndarray:
        """Kernels the blocked layout folds into a convolution (onnxruntime's NCHWc Sum
        fusion): a two-input Add of equal shapes inside the domain, one of whose inputs is the
        output of a blocked convolution without an activation that nothing else reads, is accumulated
        by that convolution; an activation that alone reads such an Add then fuses into
        the convolution too. True where a kernel costs nothing of its own."""
        return self._fused(kernels, self._domain(kernels))

    def _fused(self, kernels: Sequence[DetectedKernel], d: _Domain | None) -> np.ndarray:
        fused = np.zeros(len(kernels), dtype=bool)
        if d is None or not self.rules.layout_block:
            return fused
        taken: set[int] = set()
        into: dict[str, int] = {}  # an Add's output → the convolution it was folded into
        for i, k in enumerate(kernels):
            if not d.inside[i]:
                continue
            if k.type == "eltwise" and len(k.nodes) == 1 and k.nodes[0].op in ("Add", "Sum") and \
                    len(k.kernel.inputs) == 2 and len({tuple(t.shape) for t in k.nodes[0].inputs}) == 1:
                for name, _ in k.kernel.inputs:
                    p = d.producer.get(name)
                    if p is not None and p not in taken and kernels[p].type in ("conv", "dwconv") and d.inside[p] and \
                            not any(n.op in BLOCKED_CONV_ACTIVATIONS for n in kernels[p].nodes) and \
                            d.readers.get(name) == [i] and name not in d.finals:
                        fused[i] = True
                        taken.add(p)
                        into[k.kernel.outputs[0][0]] = p
                        break
            elif k.type == "act" and len(k.nodes) == 1 and k.nodes[0].op in BLOCKED_CONV_ACTIVATIONS and len(k.kernel.inputs) == 1:
                name = k.kernel.inputs[0][0]
                if name in into and d.readers.get(name) == [i] and name not in d.finals:
                    fused[i] = True
        return fused

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
        """Kernels of every graph, their (n, 3) cost quantiles (boundary costs included)
        and fallback flags, with each type's model run once over the unique feature rows of
        all graphs."""
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
        if getattr(self, "boundary_types_", None):
            wrate = getattr(self, "weight_rate_", 0.0)
            for gi, ks in enumerate(kernels):
                d = self._domain(ks)  # once per graph: the folded kernels and the boundary both read it
                fused = self._fused(ks, d)
                out[gi][fused] = 0.0
                out[gi] += (self._boundary(ks, d) + wrate * self._weight_kb(ks, fused))[:, None]
        if getattr(self, "stream_levels_", None):
            for gi, ks in enumerate(kernels):
                out[gi] += self._stream_ms(ks)[:, None]
        return kernels, out, fb

    def model_overhead(self, graphs: Sequence[Graph]) -> np.ndarray:
        """Each graph's cost outside its kernels: the per-inference overhead plus its boundary term."""
        self._check()
        io = getattr(self, "io_", IoCost())
        return np.array([self.base_ms + io.cost_ms(g) for g in graphs])

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
                 "io": getattr(self, "io_", IoCost()).to_dict(),
                 "boundary": {"types": {t: list(c) for t, c in self.boundary_types_.items()},
                              "pooled": list(self.boundary_pooled_) if self.boundary_pooled_ else None,
                              "offset_ms": self.boundary_offset_ms_,
                              "aliased_ms_per_kb": getattr(self, "boundary_alias_", 0.0),
                              "weights_ms_per_kb": getattr(self, "weight_rate_", 0.0),
                              "weights_cache_kb": _finite_or_none(getattr(self, "weight_cache_kb_", math.inf)),
                              "calibration": getattr(self, "calibration_", None)},
                 "stream": {"types": list(_STREAM_TYPES),
                            "levels": [{"cache_kb": c, "ms_per_kb": v} for c, v in getattr(self, "stream_levels_", [])],
                            "fit": getattr(self, "stream_fit_", None)}}
        return state, files

    @classmethod
    def from_state(cls, state: dict[str, Any], files: dict[str, bytes]) -> KernelLevelPredictor:
        self = cls(rules=FusionRules.from_dict(state["rules"]), target=state["target"], threads=int(state["threads"]))
        self.overhead_ = float(state["overhead"])
        self.n_null_ = int(state.get("n_null", 0))
        self.io_ = IoCost.from_dict(state.get("io"))
        b = state.get("boundary") or {}
        self.boundary_types_ = {str(t): (float(c[0]), float(c[1])) for t, c in (b.get("types") or {}).items()}
        pooled = b.get("pooled")
        self.boundary_pooled_ = (float(pooled[0]), float(pooled[1])) if pooled else None
        self.boundary_offset_ms_ = float(b.get("offset_ms", 0.0))
        self.boundary_alias_ = float(b.get("aliased_ms_per_kb", 0.0))
        self.weight_rate_ = float(b.get("weights_ms_per_kb", 0.0))
        cache = b.get("weights_cache_kb")
        self.weight_cache_kb_ = math.inf if cache is None else float(cache)  # JSON has no inf
        self.calibration_ = b.get("calibration")
        st = state.get("stream") or {}
        if list(st.get("types", _STREAM_TYPES)) != list(_STREAM_TYPES):
            raise ValueError("the bundle's streamed-weight kernel types differ from this hwfarm's")
        self.stream_levels_ = [(float(lv["cache_kb"]), float(lv["ms_per_kb"])) for lv in st.get("levels", [])]
        self.stream_fit_ = st.get("fit")
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
