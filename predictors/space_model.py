"""Graph-level predictors for search spaces: whole-model cost straight from an architecture's
encoding, for searches that ask hundreds of thousands of times.

A :class:`SpaceModel` is an additive per-op cost model (non-negative least squares on the
encoding's analytic cost and one-hot op columns: latency = c + Σ cost of each chosen op)
times a gradient-boosted correction of what does not add up (fusion across ops, folded dead
branches, cache effects) — :class:`~predictors.kernel_model.KernelRegressor` on
:func:`predictors.encodings.encode`. It is trained from whole-model measurements of the
space's architectures in the dataset and, where those are few, from the device's
kernel-level predictor (distillation: sampled architectures built as graphs and predicted
kernel by kernel). Prediction is vectorized end to end: strings are parsed once per
distinct architecture, then one matrix product and one tree-ensemble pass for the batch.

*Folded* architectures get a model of their own (:func:`folded`): an NB201 cell with no live
edge makes the network's output a constant, which a runtime that folds constants computes
once, at load (on sim-raspi4 such a network costs 0.012 ms against >= 4 ms for any other).
They are 2.6% of NB201, yet one fit across both kinds bent the boosted correction around
that 300x step and missed cheap live cells: fidelity to the kernel-level model on sim-raspi4
(600 distilled architectures) was 74-79% within ±10%, 95-96% with the folded ones apart (two
samples of held-out cells; the demo's `predictor train --space nb201` reports one). Their model
is additive only (no boosting: there are few of them), used where the training set had at
least :data:`MIN_FOLDED` of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from farm.errors import InputError
from farm.ir.graph import Graph
from predictors.encodings import SPACES, encode, feature_names
from predictors.kernel_model import KernelRegressor

__all__ = ["SpaceModel", "arch_of_graph", "sample_archs", "build_arch", "folded"]

MIN_FOLDED = 3  # folded training architectures needed for a model of their own


def folded(space: str, X: np.ndarray) -> np.ndarray:
    """(n,) bool: architectures (rows of :func:`~predictors.encodings.encode`) whose
    network output does not depend on its input — NB201 cells with no live edge. FBNet has
    none (a skip layer still passes its input on)."""
    if space != "nb201":
        return np.zeros(len(X), dtype=bool)
    names = feature_names(space)
    live = [names.index(f"n_live_{op}") for op in ("skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")]
    return np.asarray(X[:, live].sum(1) == 0)


def arch_of_graph(graph: Graph) -> tuple[str, str] | None:
    """(space, architecture) of a graph built by a space's builder (its name says so:
    ``nb201|…|`` or ``fbnet-7-8-1-…``), else None."""
    name = graph.name
    if name.startswith("nb201|"):
        return "nb201", name[len("nb201"):]
    if name.startswith("fbnet-") and name[6:7].isdigit():
        return "fbnet", name[len("fbnet-"):]
    return None


def sample_archs(space: str, n: int, seed: int = 0) -> list[str]:
    """``n`` distinct random architectures of ``space`` in the tables' spelling."""
    rng = np.random.default_rng(seed)
    if space == "nb201":
        from farm.zoo.nb201 import OPS, arch_str_from_ops

        size = len(OPS) ** 6
        picks = rng.choice(size, min(n, size), replace=False)
        return [arch_str_from_ops([OPS[(int(i) // len(OPS) ** e) % len(OPS)] for e in range(6)]) for i in picks]
    if space == "fbnet":
        from predictors.encodings import FBNET_LAYERS, FBNET_OPS

        out: set[str] = set()
        while len(out) < n:
            out.add("-".join(str(int(i)) for i in rng.integers(0, len(FBNET_OPS), FBNET_LAYERS)))
        return sorted(out)
    raise InputError(f"unknown space {space!r}: expected one of {', '.join(SPACES)}")


def build_arch(space: str, arch: str) -> Graph:
    from farm.zoo.spaces import get_space

    return get_space(space).to_graph(arch)


class SpaceModel:
    """Whole-model cost of a space's architectures (units of the training targets)."""

    def __init__(self, *, space: str, n_estimators: int = 120, random_state: int = 0) -> None:
        self.space = space
        self.n_estimators = n_estimators
        self.random_state = random_state

    def fit(self, archs: Sequence[str], y: Sequence[float]) -> SpaceModel:
        if self.space not in SPACES:
            raise InputError(f"unknown space {self.space!r}: expected one of {', '.join(SPACES)}")
        X = encode(self.space, list(archs))
        t = np.asarray(y, dtype=float)
        if len(t) != len(X):
            raise ValueError(f"SpaceModel.fit: {len(X)} architectures, {len(t)} targets")
        cols = tuple(range(X.shape[1]))
        fold = folded(self.space, X)
        self.folded_: KernelRegressor | None = None
        if fold.sum() >= MIN_FOLDED and (~fold).any():
            self.folded_ = KernelRegressor(base_columns=cols, min_samples_boost=len(t) + 1,
                                           random_state=self.random_state).fit(X[fold], t[fold])
            X, t = X[~fold], t[~fold]
        self.regressor_ = KernelRegressor(base_columns=cols, n_estimators=self.n_estimators,
                                          max_depth=4, random_state=self.random_state).fit(X, t)
        self.n_train_ = len(archs)
        return self

    def predict_quantiles(self, archs: Sequence[str]) -> np.ndarray:
        """(n, 3): low, point and high cost of each architecture."""
        if not hasattr(self, "regressor_"):
            from predictors.kernel_model import NotFittedError

            raise NotFittedError("this SpaceModel is not fitted yet; call fit() first")
        X = encode(self.space, list(archs))
        out = self.regressor_.predict_quantiles(X)
        if self.folded_ is not None:
            fold = folded(self.space, X)
            if fold.any():
                out[fold] = self.folded_.predict_quantiles(X[fold])
        return out

    def predict(self, archs: Sequence[str]) -> np.ndarray:
        return self.predict_quantiles(archs)[:, 1]

    def to_state(self) -> tuple[dict[str, Any], bytes | None]:
        meta, raw = self.regressor_.to_state()
        state = {"space": self.space, "n_train": self.n_train_, "regressor": meta, "features": feature_names(self.space),
                 "params": {"n_estimators": self.n_estimators, "random_state": self.random_state}}
        if self.folded_ is not None:
            fmeta, fraw = self.folded_.to_state()
            assert fraw is None  # additive only: the whole model is in the JSON
            state["folded"] = fmeta
        return state, raw

    @classmethod
    def from_state(cls, state: dict[str, Any], raw: bytes | None) -> SpaceModel:
        self = cls(space=state["space"], **state.get("params", {}))
        if list(state.get("features") or []) != feature_names(self.space):
            # the encoding changed since this model was trained: its columns would be misread
            raise ValueError(f"its architecture features are not this hwfarm's encoding of {self.space!r}; "
                             "train the predictor again (hwfarm predictor train --space ...)")
        self.regressor_ = KernelRegressor.from_state(state["regressor"], raw)
        self.folded_ = KernelRegressor.from_state(state["folded"], None) if state.get("folded") else None
        self.n_train_ = int(state.get("n_train", 0))
        return self
