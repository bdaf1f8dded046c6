"""Few-shot latency transfer to a new device (issue #5's answer to HELP).

:class:`TransferRegressor` predicts a target device's latency (ms) from k measurements on it,
the architectures' features (:mod:`predictors.encodings`) and, optionally, the full latencies
of *source* devices for every architecture. It is a Gaussian-process / Bayesian linear model
on the target latency scaled by the median of the k shots, with a kernel that is a sum of
groups, each with its own prior variance:

- ``add``: the sources' *additive* part — each source fitted, on every architecture it has,
  by least squares on the architecture features (a per-device op-cost model), normalized by
  the source's mean. The prior mean is the average of these normalized op-cost models, so the
  target's op costs are a combination of the sources' op costs (plus what the other groups add);
- ``res``: the sources' non-additive residuals (shared interactions, folding, caching);
- ``cost``: the analytic cost features (MACs, parameters, traffic, op counts), standardized;
- ``onehot``: the op one-hot features (a free per-op cost with a small prior);
- a constant.

The group variances, the noise level and an optional emphasis of one source are chosen among
a fixed grid by the closed-form leave-one-out error on the k shots (relative squared error),
so nothing is tuned on the target's test rows; the grid itself was checked by letting each
source device play the target (the others its sources).

With sources and cost features, two more members (:class:`_CostPriorGP`) are averaged with
this one: Bayesian linear models on the few analytic cost features whose coefficient prior is
*meta-learned from the source devices* (each source's cost-feature coefficients over the whole
pool; their mean is the prior mean, their covariance the prior covariance) — one on the cost
features alone, one that also gets the sources' residuals and the one-hot ops. A device's
latency is close to linear in a handful of costs (MACs, depthwise MACs, traffic, live-op
counts), so a prior on those few coefficients pins the target down from 10 shots better than
one on every op's cost. The plain average was chosen by letting each source play the target
(the others its sources; mean Spearman, 10 shots): NB201 0.928, FBNet 0.831, against 0.914 /
0.831 for a blend weighted by leave-one-out and 0.920 / 0.809 for the source GP alone.

With sources, the ensemble is then blended with a *nearest-source* member: the target as one
source device scaled (``y ~ a * s_j``, least squares on the shots), the source with the smallest
leave-one-out relative error. The blend weight (:data:`NEAREST_WEIGHTS`, 0 = the ensemble only)
is chosen by the blend's leave-one-out relative error on the shots. A device that has a close
sibling among the sources (same kind of chip and runtime) is ranked by that sibling better than
by any 10-shot fit of op costs; where none is close, the leave-one-out error keeps the weight at
or near 0. Letting each source play the target (the others its sources; mean Spearman, 10 shots)
this moved NB201 from 0.928 to 0.934 and FBNet from 0.831 to 0.898; it costs a little on
targets whose nearest source looks good on the shots but ranks worse in the test band (NB201
gold_6226 0.972 -> 0.967, pixel2 0.850 -> 0.831, against raspi4 0.909 -> 0.944). The weight
stops at 3/4 (see :data:`NEAREST_WEIGHTS`): the ensemble always keeps a say.

With enough shots (``boost_min_shots``), an XGBoost model predicts the log-latency from the
architecture features, the source log-latencies, the sources' residuals from their own additive
op-cost models (what no op-cost model explains, which the target often shares) and the log of
the blend's leave-one-out prediction, kept within a factor e of that prediction. (The residuals
took NB201 raspi4 at 900 shots from 0.966 to 0.968; more or deeper trees, absolute-error loss,
bagging three boosters, fitting the log-ratio to the base instead, or a kernel ridge with an RBF
kernel on the features and source log-latencies did not help.)

The booster is blended with the base model in log space, its weight (:data:`BOOST_WEIGHTS`)
chosen by 5-fold cross-validation of the booster on the shots against the base model's
leave-one-out predictions; at weight 0 no booster is kept. At 100 and 300 shots a booster alone
ranked worse than the base model on most targets (NB201 pixel2 at 100 shots 0.854 -> 0.829,
FBNet samsung_s7 0.704 -> 0.621); the cross-validated weight keeps the base there and the
booster where it earns its place (NB201 raspi4 at 900 shots: weight 1 on every seed).

Two baselines with the same interface are here for the benchmark: :class:`SourceRidgeRegressor`
(ridge on the sources' log-latencies, the issue's baseline) and :class:`OneHotForestRegressor`
(random forest on the one-hot ops).

``fit(X, y, *, sources_ms=None, pool_X=None, pool_sources_ms=None)``: ``X`` (k, p) features of
the k measured architectures, ``y`` (k,) their target latency in ms, ``sources_ms`` (k, d) their
source latencies; ``pool_X``/``pool_sources_ms`` every architecture's features and source
latencies (unlabeled on the target; used to fit the sources' op-cost models — defaults to the
training rows). ``predict(X, *, sources_ms=None)`` returns the target latency in ms.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

__all__ = ["TransferRegressor", "SourceRidgeRegressor", "OneHotForestRegressor", "NotFittedError"]


_FLOOR = 0.01  # predictions never go below 1% of the shots' median latency
_MAX_LOG_CORRECTION = 1.0  # the boosted correction stays within a factor e of the base model


class NotFittedError(RuntimeError):
    """``predict`` before ``fit``."""


def _check_fit_args(X: np.ndarray, y: np.ndarray, sources_ms: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    if X.ndim != 2 or y.ndim != 1 or len(X) != len(y):
        raise ValueError(f"X must be (n, p) and y (n,), got {X.shape} and {y.shape}")
    if len(y) < 2:
        raise ValueError(f"need at least 2 target measurements, got {len(y)}")
    if np.any(~np.isfinite(y)) or np.any(y <= 0):
        raise ValueError("target latencies must be finite and positive (ms)")
    if sources_ms is not None:
        s = np.asarray(sources_ms)
        if s.ndim != 2 or len(s) != len(y):
            raise ValueError(f"sources_ms must be (n, d) with n = {len(y)}, got {s.shape}")
        if np.any(~np.isfinite(s)) or np.any(s <= 0):
            raise ValueError("source latencies must be finite and positive (ms)")
    return X, y


# Prior variances of the cost group. 10.0 was measured too: it loses when each source device in
# turn plays the target (NB201 0.925 -> 0.917, FBNet 0.802 -> 0.787 mean Spearman, 10 shots).
GRID_COST: tuple[float, ...] = (0.1, 1.0)

# The booster's weight in its blend with the base model, chosen by BOOST_FOLDS-fold
# cross-validation on the shots (0: the base model alone).
BOOST_WEIGHTS: tuple[float, ...] = (0.0, 0.5, 1.0)
BOOST_FOLDS = 5

# Weights of the nearest-source member in its blend with the ensemble (chosen by leave-one-out
# on the shots). Never 1: the member alone ranks exactly as its one source does, so more shots
# could never improve on it, and once that source is well scaled its leave-one-out error wins
# (NB201 raspi4: weight 1 on pixel3 from 30 shots on held ρ at pixel3's 0.940 through 300
# shots; without it 0.948 / 0.952 / 0.960 at 10 / 100 / 300). With each source device in turn
# playing the target, grids (0, 1/2), (0, 1/3, 2/3), (0, 1/4, 1/2, 3/4) and (0, ..., 1) all
# give the same mean Spearman within 0.001 (10 and 100 shots, NB201 and FBNet).
NEAREST_WEIGHTS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75)


def _default_grid(n_sources: int) -> list[dict[str, Any]]:
    grid: list[dict[str, Any]] = []
    for res, cost, onehot, noise in itertools.product((0.1, 1.0), GRID_COST, (0.01, 0.1), (0.01, 0.1)):
        base: dict[str, Any] = {"add": 1.0 if n_sources else 0.0, "res": res if n_sources else 0.0,
                                "cost": cost, "onehot": onehot, "const": 1.0, "noise": noise, "emphasis": -1}
        grid.append(base)
        grid.extend({**base, "emphasis": j} for j in range(n_sources) if n_sources > 1)
    return grid


# The cost-prior members (see _CostPriorGP): group variances (cost, res, add, onehot) and noise.
_GRID_COST_ONLY = [{"cost": c, "noise": n} for c, n in itertools.product((0.3, 1.0, 3.0, 10.0), (0.001, 0.01, 0.1))]
_GRID_COST_SOURCES = [{"cost": c, "res": r, "onehot": o, "add": a, "noise": n} for c, r, o, a, n in itertools.product(
    (0.3, 1.0, 3.0), (0.1, 1.0), (0.001, 0.01, 0.1), (0.1, 1.0), (0.001, 0.01, 0.1))]


def _solve(P: np.ndarray, t: np.ndarray, noise: float) -> tuple[np.ndarray, np.ndarray]:
    """Ridge in weight space or kernel space (whichever is smaller): weights, LOO residuals."""
    n, p = P.shape
    if n <= p:
        Kinv = np.linalg.inv(P @ P.T + noise * np.eye(n))
        alpha = Kinv @ t
        return P.T @ alpha, alpha / np.diag(Kinv)
    Ainv = np.linalg.inv(P.T @ P + noise * np.eye(p))
    w = Ainv @ (P.T @ t)
    h = np.einsum("ij,jk,ik->i", P, Ainv, P)
    return w, (t - P @ w) / np.maximum(1.0 - h, 1e-9)


class _CostPriorGP:
    """An ensemble member: Bayesian linear model on the standardized cost features (plus a
    constant) whose coefficient prior is *meta-learned from the source devices*: each source's
    normalized latency is regressed on the cost features over the whole pool, and the target's
    coefficients get the sources' mean as prior mean and their covariance (plus ``shrink`` times
    its mean variance on the diagonal) as prior covariance. With ``groups`` beyond ``cost`` it
    also gets the sources' residuals from their cost models (``res``), the residuals of their
    one-hot op-cost models (``add``) and the one-hot ops (``onehot``). Group variances and noise
    come from ``grid`` by leave-one-out on the shots. Works on the normalized target."""

    def __init__(self, *, grid: list[dict[str, float]], shrink: float) -> None:
        self.grid = grid
        self.shrink = shrink

    def fit(self, blocks: dict[str, np.ndarray], phi: np.ndarray, source_cost_coef: np.ndarray,
            t: np.ndarray) -> _CostPriorGP:
        B = source_cost_coef  # (d, p): each source's coefficients on the cost features
        mu = B.mean(0)
        cov = (B - mu).T @ (B - mu) / len(B)
        cov += self.shrink * max(float(np.mean(np.diag(cov))), 1e-12) * np.eye(len(cov))
        self.prior_mean_ = mu
        self.prior_chol_ = np.linalg.cholesky(cov)
        m = phi @ mu
        best: tuple[float, dict[str, float], np.ndarray, np.ndarray] | None = None
        for hp in self.grid:
            w, loo = _solve(self._design(blocks, phi, hp), t - m, hp["noise"])
            score = float(np.mean((loo / t) ** 2))
            if best is None or score < best[0]:
                best = (score, hp, w, loo)
        assert best is not None
        self.hyperparams_, self.coef_ = best[1], best[2]
        self.loo_ = t - best[3]
        return self

    def _design(self, blocks: dict[str, np.ndarray], phi: np.ndarray, hp: dict[str, float]) -> np.ndarray:
        parts = [np.sqrt(hp["cost"]) * phi @ self.prior_chol_]
        parts += [np.sqrt(hp[k]) * blocks[k] for k in ("res", "add", "onehot") if hp.get(k, 0.0) > 0]
        return np.hstack(parts)

    def predict(self, blocks: dict[str, np.ndarray], phi: np.ndarray) -> np.ndarray:
        return np.asarray(phi @ self.prior_mean_ + self._design(blocks, phi, self.hyperparams_) @ self.coef_)


class TransferRegressor:
    """Few-shot transfer regressor (see the module docstring). Latency in ms.

    Hyperparameters: ``n_cost_features`` (how many leading columns of X are cost features,
    :func:`predictors.encodings.n_cost_features`), ``emphasis_weight`` (the other sources' share
    when one source is emphasized), ``boost_min_shots`` (use the XGBoost correction from this
    many shots on; 0 disables), ``boost_trees`` (the booster's number of trees),
    ``boost_weights`` (the booster's candidate weights in its blend with the base model, chosen
    by cross-validation on the shots; default :data:`BOOST_WEIGHTS`; ``(1.0,)`` uses the
    booster alone, as before that choice),
    ``n_average`` (average the predictions of this many best grid points; 1 = the best only —
    averaging 5 or 20 did not help on NB201),
    ``nearest_source`` (blend in the nearest-source member), ``random_state``.
    Learned state: ``hyperparams_`` and ``coef_`` (the source GP's chosen grid points and their
    weights), ``members_`` (the fitted cost-prior members; empty without sources or cost
    features), ``loo_rmspe_`` (leave-one-out RMSPE of the ensemble on the shots, %),
    ``n_sources_``, ``nearest_source_`` (the nearest source's column, -1 without sources),
    ``nearest_coef_`` (its scale: the member predicts ``nearest_coef_ * sources_ms[:, j]`` ms),
    ``nearest_weight_`` (its weight in the blend), ``boost_weight_`` (the booster's weight in
    its blend with the base model, 0 without one), ``booster_`` (or None).
    """

    def __init__(self, *, n_cost_features: int = 0, emphasis_weight: float = 0.05, boost_min_shots: int = 100,
                 boost_trees: int = 1000, boost_weights: tuple[float, ...] | None = None, n_average: int = 1,
                 nearest_source: bool = True, random_state: int | None = 0) -> None:
        self.n_cost_features = n_cost_features
        self.nearest_source = nearest_source
        self.emphasis_weight = emphasis_weight
        self.boost_min_shots = boost_min_shots
        self.boost_trees = boost_trees
        self.boost_weights = boost_weights
        self.n_average = n_average
        self.random_state = random_state

    # -- feature groups
    def _groups(self, X: np.ndarray, S: np.ndarray | None) -> dict[str, np.ndarray]:
        nc = self.n_cost_features
        g: dict[str, np.ndarray] = {}
        if S is not None and self.n_sources_:
            d = S.shape[1]
            add = self._design(X) @ self.source_coef_ / self.source_mean_ms_
            g["add"] = add / np.sqrt(d)
            g["res"] = (S / self.source_mean_ms_ - add) / np.sqrt(d)
        if nc:
            g["cost"] = (X[:, :nc] - self.cost_mean_) / self.cost_scale_ / np.sqrt(nc)
        g["onehot"] = X[:, nc:]
        g["const"] = np.ones((len(X), 1))
        return g

    @staticmethod
    def _design(X: np.ndarray) -> np.ndarray:
        return np.hstack([X, np.ones((len(X), 1))])

    def _source_weights(self, hp: dict[str, Any], d: int) -> np.ndarray:
        """Per-source prior weights summing to d: uniform, or one source emphasized."""
        w = np.ones(d)
        if hp.get("emphasis", -1) >= 0:
            w = np.full(d, self.emphasis_weight)
            w[int(hp["emphasis"])] = 1.0
        return w / w.sum() * d

    def _phi(self, g: dict[str, np.ndarray], hp: dict[str, Any]) -> np.ndarray:
        parts = []
        for name, block in g.items():
            scale = float(hp.get(name, 0.0))
            if scale <= 0:
                continue
            if name in ("add", "res"):
                block = block * np.sqrt(self._source_weights(hp, block.shape[1]))[None, :]
            parts.append(np.sqrt(scale) * block)
        return np.hstack(parts)

    @staticmethod
    def _prior_mean(g: dict[str, np.ndarray], hp: dict[str, Any]) -> np.ndarray | float:
        """The mean of the sources' normalized op-cost models. (Weighting it like an emphasized
        source was measured too: the leave-one-out choice then overfits, pixel2 on NB201 drops.)"""
        if "add" not in g:
            return 0.0
        return g["add"].sum(1) / np.sqrt(g["add"].shape[1])  # the blocks were scaled by 1/sqrt(d)

    def fit(self, X: np.ndarray, y: np.ndarray, *, sources_ms: np.ndarray | None = None,
            pool_X: np.ndarray | None = None, pool_sources_ms: np.ndarray | None = None) -> TransferRegressor:
        X, y = _check_fit_args(X, y, sources_ms)
        self._boost_weight_grid()  # bad weights fail at once, not only once there are shots enough to boost
        nc = self.n_cost_features
        if not 0 <= nc <= X.shape[1]:
            raise ValueError(f"n_cost_features {nc} is outside 0..{X.shape[1]}")
        S = None if sources_ms is None else np.asarray(sources_ms, dtype=float)
        PX = X if pool_X is None else np.asarray(pool_X, dtype=float)
        PS = S if pool_sources_ms is None else np.asarray(pool_sources_ms, dtype=float)
        self.n_sources_ = 0 if S is None else S.shape[1]
        if S is not None and S.shape[1]:
            if PS is None or PS.shape[1] != S.shape[1] or len(PS) != len(PX):
                raise ValueError("pool_sources_ms must be (n_pool, d) matching pool_X and sources_ms")
            self.source_mean_ms_ = PS.mean(0)
            self.source_coef_ = np.linalg.lstsq(self._design(PX), PS, rcond=None)[0]
        self.cost_mean_ = PX[:, :nc].mean(0)
        self.cost_scale_ = PX[:, :nc].std(0) + 1e-12
        self.scale_ms_ = float(np.median(y))
        t = y / self.scale_ms_
        g = self._groups(X, S)
        fits = []
        for hp in _default_grid(self.n_sources_):
            w, loo = _solve(self._phi(g, hp), t - self._prior_mean(g, hp), float(hp["noise"]))
            fits.append((float(np.mean((loo / t) ** 2)), hp, w, loo))
        fits.sort(key=lambda f: f[0])
        top = fits[:max(1, self.n_average)]
        self.hyperparams_ = [f[1] for f in top]
        self.coef_ = [f[2] for f in top]
        loo_fits = [t - np.mean([f[3] for f in top], axis=0)]
        self.members_ = []
        if nc and S is not None and PS is not None and self.n_sources_:  # cost-prior members, from the sources
            self.source_cost_coef_ = np.linalg.lstsq(self._cost_design(PX), PS / self.source_mean_ms_, rcond=None)[0].T
            blocks, phi = self._member_inputs(X, S)
            for grid, shrink in ((_GRID_COST_ONLY, 10.0), (_GRID_COST_SOURCES, 0.1)):
                member = _CostPriorGP(grid=grid, shrink=shrink).fit(blocks, phi, self.source_cost_coef_, t)
                self.members_.append(member)
                loo_fits.append(member.loo_)
        ens_loo = np.mean(loo_fits, axis=0)  # the ensemble's leave-one-out predictions (normalized)
        self.nearest_source_, self.nearest_coef_, self.nearest_weight_ = -1, 0.0, 0.0
        if self.nearest_source and S is not None and self.n_sources_:
            ens_loo = self._fit_nearest(S, t, ens_loo)
        loo = t - ens_loo
        self.loo_rmspe_ = 100.0 * float(np.sqrt(np.mean((loo / t) ** 2)))
        self.booster_, self.boost_weight_ = None, 0.0
        if self.boost_min_shots and len(y) >= self.boost_min_shots:
            base_loo_ms = np.maximum((t - loo) * self.scale_ms_, _FLOOR * self.scale_ms_)
            r = np.clip(np.log(y / base_loo_ms), -_MAX_LOG_CORRECTION, _MAX_LOG_CORRECTION)
            F, log_base = self._boost_features(X, S, base_loo_ms), np.log(base_loo_ms)
            self.boost_weight_ = self._boost_weight(F, log_base + r, log_base)
            if self.boost_weight_ > 0:
                self.booster_ = self._fit_booster(F, log_base + r)
        return self

    def _boost_weight_grid(self) -> tuple[float, ...]:
        weights = BOOST_WEIGHTS if self.boost_weights is None else tuple(self.boost_weights)
        if not weights or any(not 0.0 <= w <= 1.0 for w in weights):
            raise ValueError(f"boost_weights {weights}: give weights within 0..1")
        return weights

    def _boost_weight(self, F: np.ndarray, log_y: np.ndarray, log_base: np.ndarray) -> float:
        """The booster's weight in its (log-space) blend with the base model, from
        :data:`BOOST_WEIGHTS` by :data:`BOOST_FOLDS`-fold cross-validation on the shots: squared
        log error of the blend, the base model's part its leave-one-out prediction."""
        weights = self._boost_weight_grid()
        if len(weights) == 1:
            return float(weights[0])
        folds = np.random.default_rng(self.random_state or 0).permutation(len(log_y)) % BOOST_FOLDS
        cv = np.empty(len(log_y))
        for f in range(BOOST_FOLDS):
            held = folds == f
            booster = self._fit_booster(F[~held], log_y[~held])
            cv[held] = np.clip(booster.predict(F[held]), log_base[held] - _MAX_LOG_CORRECTION,
                               log_base[held] + _MAX_LOG_CORRECTION)
        scores = [float(np.mean((w * cv + (1 - w) * log_base - log_y) ** 2)) for w in weights]
        return float(weights[int(np.argmin(scores))])

    def _fit_nearest(self, S: np.ndarray, t: np.ndarray, ens_loo: np.ndarray) -> np.ndarray:
        """The nearest-source member: the target as one source scaled (``t ~ a * s_j``, least
        squares), the source ``j`` with the smallest leave-one-out relative error on the shots;
        then its weight in the blend with the ensemble, from :data:`NEAREST_WEIGHTS` by the
        blend's leave-one-out relative error. Returns the blend's leave-one-out predictions."""
        best: tuple[float, int, float, np.ndarray] | None = None
        for j in range(S.shape[1]):
            base = S[:, j] / np.median(S[:, j])
            a = float(base @ t / (base @ base))
            loo_pred = t - (t - a * base) / np.maximum(1.0 - base ** 2 / (base @ base), 1e-9)
            score = float(np.mean(((t - loo_pred) / t) ** 2))
            if best is None or score < best[0]:
                best = (score, j, a / float(np.median(S[:, j])), loo_pred)
        assert best is not None
        _, j, coef, near_loo = best
        scores = [float(np.mean(((w * near_loo + (1 - w) * ens_loo - t) / t) ** 2)) for w in NEAREST_WEIGHTS]
        w = NEAREST_WEIGHTS[int(np.argmin(scores))]
        self.nearest_source_, self.nearest_coef_, self.nearest_weight_ = j, coef * self.scale_ms_, w
        return np.asarray(w * near_loo + (1 - w) * ens_loo)

    def _boost_features(self, X: np.ndarray, S: np.ndarray | None, base_ms: np.ndarray) -> np.ndarray:
        """Architecture features, the base model's log-latency and, with sources, their
        log-latencies and their residuals from their own additive op-cost models."""
        parts = [X, np.log(base_ms)[:, None]]
        if S is not None and S.shape[1]:
            add = self._design(X) @ self.source_coef_ / self.source_mean_ms_
            parts += [np.log(S), S / self.source_mean_ms_ - add]
        return np.hstack(parts)

    def _fit_booster(self, F: np.ndarray, log_y: np.ndarray) -> Any:
        import xgboost as xgb

        model = xgb.XGBRegressor(n_estimators=self.boost_trees, max_depth=6, learning_rate=0.03, subsample=0.8,
                                 colsample_bytree=0.8, n_jobs=2, random_state=self.random_state or 0)
        return model.fit(F, log_y)

    def _cost_design(self, X: np.ndarray) -> np.ndarray:
        """Standardized cost features and a constant: the cost-prior members' basis."""
        nc = self.n_cost_features
        return np.hstack([(X[:, :nc] - self.cost_mean_) / self.cost_scale_, np.ones((len(X), 1))])

    def _member_inputs(self, X: np.ndarray, S: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        phi = self._cost_design(X)
        on_cost = phi @ self.source_cost_coef_.T  # each source's cost model
        add = self._design(X) @ self.source_coef_ / self.source_mean_ms_  # each source's op-cost model
        d = np.sqrt(S.shape[1])
        blocks = {"res": (S / self.source_mean_ms_ - on_cost) / d, "add": (add - on_cost) / d,
                  "onehot": X[:, self.n_cost_features:]}
        return blocks, phi

    def _base_predict(self, X: np.ndarray, S: np.ndarray | None) -> np.ndarray:
        g = self._groups(X, S)
        fits = [np.mean([self._prior_mean(g, hp) + self._phi(g, hp) @ w
                         for hp, w in zip(self.hyperparams_, self.coef_, strict=True)], axis=0)]
        if self.members_ and S is not None:
            blocks, phi = self._member_inputs(X, S)
            fits += [m.predict(blocks, phi) for m in self.members_]
        ens_ms = np.mean(fits, axis=0) * self.scale_ms_
        if self.nearest_weight_ > 0 and S is not None:
            w = self.nearest_weight_
            return np.asarray((1 - w) * ens_ms + w * self.nearest_coef_ * S[:, self.nearest_source_])
        return np.asarray(ens_ms)

    def predict(self, X: np.ndarray, *, sources_ms: np.ndarray | None = None) -> np.ndarray:
        if not hasattr(self, "coef_"):
            raise NotFittedError("TransferRegressor: call fit before predict")
        X = np.asarray(X, dtype=float)
        S = None if sources_ms is None else np.asarray(sources_ms, dtype=float)
        if self.n_sources_ and (S is None or S.ndim != 2 or S.shape != (len(X), self.n_sources_)):
            raise ValueError(f"fitted with {self.n_sources_} sources: sources_ms must be ({len(X)}, {self.n_sources_})")
        base = np.maximum(self._base_predict(X, S), _FLOOR * self.scale_ms_)
        if self.booster_ is None:
            return base
        log_base = np.log(base)
        log_ms = np.clip(self.booster_.predict(self._boost_features(X, S, base)), log_base - _MAX_LOG_CORRECTION,
                         log_base + _MAX_LOG_CORRECTION)
        return np.asarray(np.exp(self.boost_weight_ * log_ms + (1 - self.boost_weight_) * log_base))


class SourceRidgeRegressor:
    """Baseline: ridge regression of the target's log-latency on the sources' standardized
    log-latencies (architecture features unused)."""

    def __init__(self, *, alpha: float = 1.0) -> None:
        self.alpha = alpha

    def fit(self, X: np.ndarray, y: np.ndarray, *, sources_ms: np.ndarray | None = None,
            pool_X: np.ndarray | None = None, pool_sources_ms: np.ndarray | None = None) -> SourceRidgeRegressor:
        from sklearn.linear_model import Ridge

        X, y = _check_fit_args(X, y, sources_ms)
        if sources_ms is None or np.asarray(sources_ms).shape[1] == 0:
            raise ValueError("SourceRidgeRegressor needs source latencies")
        pool = np.log(np.asarray(sources_ms if pool_sources_ms is None else pool_sources_ms, dtype=float))
        self.mean_ = pool.mean(0)
        self.scale_ = pool.std(0) + 1e-12
        self.model_ = Ridge(alpha=self.alpha).fit((np.log(sources_ms) - self.mean_) / self.scale_, np.log(y))
        return self

    def predict(self, X: np.ndarray, *, sources_ms: np.ndarray | None = None) -> np.ndarray:
        if not hasattr(self, "model_"):
            raise NotFittedError("SourceRidgeRegressor: call fit before predict")
        if sources_ms is None:
            raise ValueError("SourceRidgeRegressor needs sources_ms")
        return np.exp(self.model_.predict((np.log(sources_ms) - self.mean_) / self.scale_))


class OneHotForestRegressor:
    """Baseline: random forest (100 trees) on the one-hot op features (sources unused)."""

    def __init__(self, *, n_cost_features: int = 0, n_estimators: int = 100, random_state: int | None = 0) -> None:
        self.n_cost_features = n_cost_features
        self.n_estimators = n_estimators
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray, *, sources_ms: np.ndarray | None = None,
            pool_X: np.ndarray | None = None, pool_sources_ms: np.ndarray | None = None) -> OneHotForestRegressor:
        from sklearn.ensemble import RandomForestRegressor

        X, y = _check_fit_args(X, y, None)
        self.model_ = RandomForestRegressor(n_estimators=self.n_estimators, n_jobs=2,
                                            random_state=self.random_state).fit(X[:, self.n_cost_features:], y)
        return self

    def predict(self, X: np.ndarray, *, sources_ms: np.ndarray | None = None) -> np.ndarray:
        if not hasattr(self, "model_"):
            raise NotFittedError("OneHotForestRegressor: call fit before predict")
        return np.asarray(self.model_.predict(np.asarray(X, dtype=float)[:, self.n_cost_features:]))
