"""What a search scores: candidates, constraints, the injected cost and accuracy models, and
the evaluator that puts them together.

The latency (and energy) model is always passed in — a :class:`LatencyModel` — never loaded
globally: :class:`PredictorLatencyModel` wraps a device's predictor bundle (the graph-level
model of the space where the bundle has one: one vectorized call per batch), and
:class:`TableLatencyModel` reads a column of a measured table (the tabular benchmark's ground
truth). Accuracy comes from an :class:`AccuracyEstimator`; :class:`TableAccuracy` looks cells
up in NAS-Bench-201's table. Peak SRAM, flash, MACs and parameters come from the candidate's
graph IR (:mod:`farm.ir.memory`), built without torch.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from farm.errors import InputError
from farm.ir.graph import Graph
from farm.ir.memory import flash_kb, peak_sram_kb
from farm.zoo.spaces import SearchSpace

__all__ = ["Candidate", "Constraints", "LatencyModel", "AccuracyEstimator", "PredictorLatencyModel", "LazyGraphs",
           "TableLatencyModel", "TableAccuracy", "Evaluator", "find_accuracy_table", "shared_table", "ACCURACY_TABLES"]


@dataclass(frozen=True)
class Candidate:
    """One scored architecture. ``accuracy`` is top-1 in %; ``feasible`` is under the search's
    constraints. ``energy_mj`` is None where no energy model priced it; the graph's figures
    (``sram_kb``, ``flash_kb``, ``macs``, ``params``) are None where the search did not need
    them (building a graph costs more than predicting its latency): a search reports them for
    the Pareto front and the best, and for every candidate under a memory constraint."""

    arch: str
    accuracy: float
    latency_ms: float
    energy_mj: float | None
    sram_kb: float | None
    flash_kb: float | None
    macs: int | None
    params: int | None
    feasible: bool = True
    trial: int | None = None  # the Optuna trial number that first scored it
    fallback_ops: int | None = None  # operators an accelerator leaves to its host CPU (None: not predicted)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Constraints:
    """Upper bounds; None leaves a quantity free."""

    max_latency_ms: float | None = None
    max_energy_mj: float | None = None
    max_sram_kb: float | None = None
    max_flash_kb: float | None = None
    max_fallback_ops: int | None = None  # operators on an accelerator's host CPU (needs a fallback model)

    def _pairs(self, c: Candidate) -> list[tuple[str, float | None, float]]:
        out: list[tuple[str, float | None, float]] = []
        for name, value, limit in (("latency_ms", c.latency_ms, self.max_latency_ms),
                                   ("energy_mj", c.energy_mj, self.max_energy_mj),
                                   ("sram_kb", c.sram_kb, self.max_sram_kb),
                                   ("flash_kb", c.flash_kb, self.max_flash_kb),
                                   ("fallback_ops", c.fallback_ops, self.max_fallback_ops)):
            if limit is not None:
                out.append((name, value, limit))
        return out

    def violations(self, c: Candidate) -> list[float]:
        """Optuna's constraint values: ``value - limit`` per bound set (feasible when all ≤ 0)."""
        return [(math.inf if v is None else v) - limit for _, v, limit in self._pairs(c)]

    def named_violations(self, c: Candidate) -> dict[str, float]:
        """:meth:`violations` by quantity (``latency_ms``: value - limit, …)."""
        return {name: (math.inf if v is None else v) - limit for name, v, limit in self._pairs(c)}

    def feasible(self, c: Candidate) -> bool:
        return all(v <= 0 for v in self.violations(c))

    def describe(self) -> str:
        """``latency ≤ 12 ms, SRAM ≤ 320 KB`` (or ``none``)."""
        parts = [f"{label} ≤ {limit:g} {unit}" for label, unit, limit in
                 (("latency", "ms", self.max_latency_ms), ("energy", "mJ", self.max_energy_mj),
                  ("SRAM", "KB", self.max_sram_kb), ("flash", "KB", self.max_flash_kb),
                  ("CPU fallback", "ops", self.max_fallback_ops)) if limit is not None]
        return ", ".join(parts) or "none"

    def to_json(self) -> dict[str, float | None]:
        return asdict(self)


@runtime_checkable
class LatencyModel(Protocol):
    """Predicted cost of a batch of one space's architectures."""

    def predict_batch(self, space: str, archs: Sequence[str], graphs: Sequence[Graph]
                      ) -> tuple[np.ndarray, np.ndarray | None]:
        """(n,) latency in ms, and (n,) energy in mJ or None where the model has none.
        ``graphs`` are the architectures' graph IR in the same order, built on first access
        (:class:`LazyGraphs`): a model that answers from the architecture alone never pays
        for them."""
        ...


@runtime_checkable
class AccuracyEstimator(Protocol):
    """Accuracy estimate (top-1, %) of a batch of one space's architectures."""

    def estimate(self, space: str, archs: Sequence[str]) -> np.ndarray:
        ...


class PredictorLatencyModel:
    """A device's predictor bundle (:class:`predictors.api.DevicePredictor`) as the cost of a
    search. Latency comes from the bundle's graph-level model of the space when it has one
    (one vectorized call per batch), else from its kernel-level model on the graphs; energy
    from its kernel-level energy model when the device measured energy."""

    def __init__(self, predictor: Any, *, energy: bool = True):
        self.predictor = predictor
        self.energy = energy and getattr(predictor, "energy", None) is not None

    @property
    def has_energy(self) -> bool:
        return self.energy

    def fast_path(self, space: str) -> bool:
        return space in getattr(self.predictor, "spaces", {})

    def predict_batch(self, space: str, archs: Sequence[str], graphs: Sequence[Graph]
                      ) -> tuple[np.ndarray, np.ndarray | None]:
        kernel = None
        if self.fast_path(space):
            lat = self.predictor.predict_archs([_space_model_spelling(space, a) for a in archs], space=space)[:, 1]
        else:
            kernel = self.predictor.predict_many(list(graphs))
            lat = np.array([p.latency_ms for p in kernel], dtype=float)
        if not self.energy:
            return np.asarray(lat, dtype=float), None
        if kernel is None:
            kernel = self.predictor.predict_many(list(graphs))
        en = np.array([np.nan if p.energy_mj is None else p.energy_mj for p in kernel], dtype=float)
        return np.asarray(lat, dtype=float), en


def _space_model_spelling(space: str, arch: str) -> str:
    """The spelling a bundle's graph-level model reads (FBNet: ``op_idx``)."""
    if space == "fbnet":
        from farm.zoo import fbnet

        return fbnet.op_idx_str(fbnet.parse_arch(arch))
    return arch


def _read_table(path: Path, key: str, column: str) -> dict[str, float]:
    """``column`` of a CSV keyed by ``key``; one-line InputErrors for what is missing or not a number."""
    from predictors.benchmark import read_csv

    header, rows = read_csv(path)
    if key not in header or column not in header:
        have = ", ".join(c for c in header if c not in ("arch_idx", key))
        raise InputError(f"{path}: no column {column!r} (or no {key!r}); columns: {have}")
    k, c = header.index(key), header.index(column)
    out = {}
    for i, r in enumerate(rows):
        try:
            out[r[k]] = float(r[c])
        except ValueError:
            raise InputError(f"{path}: line {i + 2}: {column} {r[c]!r} is not a number") from None
    return out


class TableLatencyModel:
    """Latency looked up in a measured table (e.g. ``../shared/data/nb201-latency``'s
    ``raspi4`` column): the tabular benchmark's ground truth, and a cost model for tests."""

    def __init__(self, table: dict[str, float]):
        self.table = table

    @classmethod
    def from_csv(cls, path: str | os.PathLike[str], column: str, *, key: str = "arch_str") -> TableLatencyModel:
        return cls(_read_table(Path(path), key, column))

    def predict_batch(self, space: str, archs: Sequence[str], graphs: Sequence[Graph]
                      ) -> tuple[np.ndarray, np.ndarray | None]:
        try:
            return np.array([self.table[a] for a in archs], dtype=float), None
        except KeyError as err:
            raise InputError(f"latency table has no architecture {err.args[0]!r}") from None


class TableAccuracy:
    """Accuracy looked up in a table of trained architectures (NAS-Bench-201's)."""

    def __init__(self, table: dict[str, float], *, space: str = "nb201", source: str = ""):
        self.table = table
        self.space = space
        self.source = source

    @classmethod
    def from_csv(cls, path: str | os.PathLike[str], *, column: str = "cifar10-test", space: str = "nb201"
                 ) -> TableAccuracy:
        return cls(_read_table(Path(path), "arch_str", column), space=space, source=f"{path}:{column}")

    def estimate(self, space: str, archs: Sequence[str]) -> np.ndarray:
        if space != self.space:
            raise InputError(f"the accuracy table {self.source or ''} is of space {self.space}, not {space}")
        try:
            return np.array([self.table[a] for a in archs], dtype=float)
        except KeyError as err:
            raise InputError(f"accuracy table {self.source}: no architecture {err.args[0]!r}") from None


# Where each space's accuracy table lives (relative to the shared data folder), and its env override.
ACCURACY_TABLES = {"nb201": ("nb201-accuracy/accuracy_200ep.csv", "HWFARM_NB201_ACCURACY_CSV")}


def find_accuracy_table(space: str) -> Path:
    """The accuracy table of ``space`` (:func:`shared_table`); InputError naming what is missing."""
    if space not in ACCURACY_TABLES:
        raise InputError(f"--accuracy table: space {space} has no accuracy table (only "
                         f"{', '.join(ACCURACY_TABLES)} has one); use --accuracy proxy, train or predictor")
    rel, env = ACCURACY_TABLES[space]
    return shared_table(rel, env, f"the {space} accuracy table")


def shared_table(rel: str, env: str, what: str) -> Path:
    """A file of the shared data folder: ``$ENV``, ``./../shared/data/REL``, or the ``shared``
    folder next to this checkout; InputError naming ``what`` and where it was looked for."""
    found = [Path(os.environ[env])] if os.environ.get(env) else []
    repo = Path(__file__).resolve().parents[1]
    found += [Path.cwd() / "../shared/data" / rel, repo.parent / "shared/data" / rel]
    for p in found:
        if p.is_file():
            return p.resolve()
    raise InputError(f"cannot find {what} (../shared/data/{rel}); set {env}")


class LazyGraphs(Sequence[Graph]):
    """The graphs of a batch of architectures, each built when first read."""

    def __init__(self, space: SearchSpace, archs: Sequence[str]):
        self.space = space
        self.archs = list(archs)
        self._built: dict[int, Graph] = {}

    def __len__(self) -> int:
        return len(self.archs)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = range(len(self))[i]
        if i not in self._built:
            self._built[i] = self.space.to_graph(self.archs[i])
        return self._built[i]

    def built(self, i: int) -> Graph | None:
        return self._built.get(i)


@dataclass(frozen=True)
class _Static:
    sram_kb: float
    flash_kb: float
    macs: int
    params: int


class Evaluator:
    """Scores architectures of one space: accuracy, injected latency/energy, and what the
    graph says (peak SRAM, flash, MACs, parameters). Each architecture is scored once (a
    search revisits some); a batch costs one call of each model. Graphs are built only where
    something reads them: the latency model, a memory constraint, or :meth:`complete`."""

    def __init__(self, space: SearchSpace, *, latency: LatencyModel, accuracy: AccuracyEstimator,
                 constraints: Constraints | None = None, fallback: Any | None = None):
        self.space = space
        self.latency = latency
        self.accuracy = accuracy
        self.constraints = constraints or Constraints()
        self.fallback = fallback  # nas.accelerator.FallbackModel: each candidate's operators on the host CPU
        if self.constraints.max_fallback_ops is not None and fallback is None:
            raise InputError("--max-fallback-ops: the device has no accelerator whose fallback could be predicted")
        self._cache: dict[str, Candidate] = {}
        self.n_scored = 0

    def evaluate(self, archs: Sequence[str]) -> list[Candidate]:
        todo = list(dict.fromkeys(a for a in archs if a not in self._cache))
        if todo:
            graphs = LazyGraphs(self.space, todo)
            lat, en = self.latency.predict_batch(self.space.name, todo, graphs)
            acc = self.accuracy.estimate(self.space.name, todo)
            fb = None if self.fallback is None else self.fallback.predict_batch(self.space.name, todo, graphs)
            memory = self.constraints.max_sram_kb is not None or self.constraints.max_flash_kb is not None
            for i, a in enumerate(todo):
                g = graphs[i] if memory else graphs.built(i)
                e = None if en is None or not np.isfinite(en[i]) else float(en[i])
                c = Candidate(a, float(acc[i]), float(lat[i]), e, None, None, None, None,
                              fallback_ops=None if fb is None else int(fb[i]))
                self._cache[a] = c if g is None else _with_static(c, g)
            self.n_scored += len(todo)
        return [self._with_feasibility(self._cache[a]) for a in archs]

    def complete(self, cands: Sequence[Candidate], *, energy: LatencyModel | None = None) -> list[Candidate]:
        """``cands`` with their graph's figures filled in, and with ``energy``'s energy where
        they have none (their latency stays the search's)."""
        out = [c if c.macs is not None else _with_static(c, self.space.to_graph(c.arch)) for c in cands]
        need = [i for i, c in enumerate(out) if c.energy_mj is None]
        if energy is not None and need:
            archs = [out[i].arch for i in need]
            _, en = energy.predict_batch(self.space.name, archs, LazyGraphs(self.space, archs))
            if en is not None:
                for j, i in enumerate(need):
                    if np.isfinite(en[j]):
                        out[i] = replace(out[i], energy_mj=float(en[j]))
        for c in out:
            if c.arch in self._cache and self._cache[c.arch].macs is None:
                self._cache[c.arch] = replace(self._cache[c.arch], sram_kb=c.sram_kb, flash_kb=c.flash_kb,
                                              macs=c.macs, params=c.params)
        return out

    def _with_feasibility(self, c: Candidate) -> Candidate:
        ok = self.constraints.feasible(c)
        return c if ok == c.feasible else replace(c, feasible=ok)


def _static(g: Graph) -> _Static:
    return _Static(round(peak_sram_kb(g)[0], 3), round(flash_kb(g), 3), int(g.macs), int(g.params))


def _with_static(c: Candidate, g: Graph) -> Candidate:
    s = _static(g)
    return replace(c, sram_kb=s.sram_kb, flash_kb=s.flash_kb, macs=s.macs, params=s.params)
