"""The tabular hardware-aware NAS benchmark (``hwfarm nas bench``, issue #28).

A latency table (one row per architecture, one column per device, ms — see
:mod:`predictors.benchmark`) and an accuracy table (the same architectures, one column per
dataset, %) define a search task exactly: for a *target* device column and a latency budget
``B`` — the ``budget_percentile`` of the target's true latencies — the best answer is the most
accurate architecture whose true target latency is at most ``B``. The accuracy table stands in
for training; the target column stands in for the device. A search sees:

- every architecture's features (:func:`predictors.encodings.encode`) and accuracy;
- every *other* device column in full (the transfer sources);
- ``B`` in ms, and the target column only through a :class:`LatencyOracle` that answers at
  most ``measurements`` distinct rows (and raises past that): which rows to measure is the
  search's choice.

It returns one architecture. The harness then reports, per seed and as a mean over seeds, the
chosen architecture's true accuracy and latency, whether it truly meets ``B``, the best true
accuracy under ``B`` and the *regret* (that best minus the chosen accuracy, in accuracy
points), and the same for random search with the same number of target measurements.

Strategies (:data:`MEASURE_STRATEGIES`; every one returns the most accurate *measured* architecture
whose *measured* latency is within ``B``, so what it returns is feasible by measurement):

- ``cei`` (the default): model-guided search with *constrained expected improvement*. A small
  initial set (:func:`initial_design`: D²-sampling, as k-means++ seeds, in the space of the
  standardized log source latencies — chosen without the target) is measured; then, until the
  measurements are spent, :class:`predictors.transfer.TransferRegressor` (the few-shot latency
  transfer model: measured rows plus every source column and the architecture features) is
  refitted and the unmeasured architecture with the largest ``P(latency <= B) * (accuracy -
  incumbent)`` is measured, the incumbent being the most accurate architecture measured within
  ``B``. ``P`` takes the predictor's log-error as normal, with the mean (a bias: the search
  measures where the model predicts low, so its errors there lean one way) and the spread of
  the errors of the predictions made *before* each measurement (the predictor's leave-one-out
  error, unbiased, until there are :data:`SIGMA_MIN_ERRORS`). Accuracy is known here, so the
  improvement is exact and only the constraint is uncertain: this is the constrained EI of
  Gardner et al. (ICML 2014) and Gelbart et al. (UAI 2014) with a known objective.
- ``greedy``: the same loop, measuring the most accurate unmeasured architecture whose
  predicted latency is within ``B`` (no uncertainty); when no candidate that could beat the
  incumbent is predicted within ``B``, the one predicted fastest. (Development columns, 5
  seeds, p30: at 50 measurements both ``cei`` and ``greedy`` reach regret 0-0.04 on all ten;
  at 20, mean regret 0.06 for ``cei`` against 0.16 for ``greedy``, pixel3 0.47 against 1.41.)
- ``tpe``: the same loop, but the candidates come from an Optuna study (``TPESampler``, one
  categorical parameter per edge/layer) whose objective is the table accuracy and whose
  constraint (``trial.set_constraint``, Optuna 5's successor of ``constraints_func``) is the
  predicted latency relative to ``B`` — the measured latency once a row is measured. Each round
  the study is rebuilt from its archive with the refitted predictor's constraints and asked for
  :data:`TPE_TRIALS_PER_ROUND` more trials; its most accurate trial predicted within ``B``
  that could beat the incumbent is measured. (Picking among its trials by constrained EI
  instead was worse: raspi4, 5 seeds, regret 1.25 against 0.48.)
- ``random``: measure ``measurements`` random architectures (the baseline).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from farm.errors import InputError
from predictors.benchmark import LatencyTable, column_error, default_model, read_csv, resolve_sources
from predictors.encodings import ARCH_COLUMN

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["BenchTask", "LatencyOracle", "MeasurementBudgetExceeded", "Pick", "SeedResult", "BenchResult",
           "BenchSearch", "MEASURE_STRATEGIES", "DEFAULT_STRATEGY", "read_accuracy", "budget_ms",
           "initial_design", "tabular_bench", "bench_figure", "random_search", "cei_search", "greedy_search",
           "tpe_search"]

DEFAULT_STRATEGY = "cei"
INITIAL_FRACTION = 0.2     # share of the measurements spent on the initial design …
INITIAL_MAX = 10           # … at most this many
SIGMA_MIN = 0.02           # the predictor's log-error spread never counts as below 2%
SIGMA_MIN_ERRORS = 5       # prequential errors needed before they replace the leave-one-out error
TPE_TRIALS_PER_ROUND = 24  # Optuna trials asked per measurement in the tpe strategy
POOL_ROWS = 2000           # rows the predictor fits the sources' op-cost models on (a fixed sample)


class MeasurementBudgetExceeded(RuntimeError):
    """A search asked the oracle for more distinct target measurements than it was given."""


class LatencyOracle:
    """The target device, as the search sees it: ``measure(row)`` returns the row's target
    latency (ms) and counts it; a row measured before is answered again for free; a new row
    beyond ``limit`` raises :class:`MeasurementBudgetExceeded`."""

    def __init__(self, latency_ms: np.ndarray, *, limit: int) -> None:
        self._latency_ms = np.asarray(latency_ms, dtype=float)
        self._measured: dict[int, float] = {}
        self.limit = limit

    def measure(self, row: int) -> float:
        row = int(row)
        if row in self._measured:
            return self._measured[row]
        if not 0 <= row < len(self._latency_ms):
            raise IndexError(f"row {row} is outside the table (0..{len(self._latency_ms) - 1})")
        if len(self._measured) >= self.limit:
            raise MeasurementBudgetExceeded(f"measurement {len(self._measured) + 1} asked of a budget of {self.limit}")
        value = float(self._latency_ms[row])
        self._measured[row] = value
        return value

    @property
    def used(self) -> int:
        return len(self._measured)

    @property
    def remaining(self) -> int:
        return self.limit - len(self._measured)

    def measured(self) -> dict[int, float]:
        """Every row measured so far and its latency (ms), in measurement order (a copy)."""
        return dict(self._measured)


@dataclass(frozen=True)
class BenchTask:
    """What a search may read: everything but the target column."""

    space: str
    archs: tuple[str, ...]
    features: np.ndarray    # (n, p), predictors.encodings
    sources_ms: np.ndarray  # (n, d), every other device column
    source_names: tuple[str, ...]
    accuracy: np.ndarray    # (n,), % (the table stands in for training)
    budget_ms: float


BenchSearch = Callable[[BenchTask, LatencyOracle, int], int]
"""A search: (task, oracle, seed) -> the chosen row. Deterministic for a seed."""


# ------------------------------------------------------------------ inputs


def read_accuracy(path: str | Path, column: str, table: LatencyTable) -> np.ndarray:
    """The accuracy column of ``path`` aligned to ``table``'s architectures (joined on the
    space's architecture column, ``arch_str`` for nb201). Every architecture of the latency
    table needs a finite accuracy."""
    p = Path(path)
    header, rows = read_csv(p)
    key = ARCH_COLUMN[table.space]
    if key not in header:
        raise InputError(f"{p}: no {key!r} column to join on (space {table.space})")
    if column not in header:
        known = [h for h in header if h not in (key, "arch_idx")]
        raise InputError(f"{p}: no accuracy column {column!r} (columns: {', '.join(known)})")
    a, c = header.index(key), header.index(column)
    acc: dict[str, float] = {}
    for i, r in enumerate(rows):
        try:
            v = float(r[c])
        except ValueError:
            v = math.nan
        if not math.isfinite(v):
            raise InputError(f"{p}: line {i + 2}: {column} {r[c]!r} is not a number")
        acc[r[a]] = v
    missing = [s for s in table.archs if s not in acc]
    if missing:
        raise InputError(f"{p}: {len(missing)} architectures of {table.path} have no accuracy (first: {missing[0]})")
    return np.array([acc[s] for s in table.archs], dtype=float)


def budget_ms(latency_ms: np.ndarray, percentile: float) -> float:
    """The budget: the ``percentile`` (0 < p <= 100) of the target's true latencies."""
    if not 0 < percentile <= 100:
        raise InputError(f"budget percentile {percentile}: must be within (0, 100]")
    return float(np.percentile(latency_ms, percentile))


# ------------------------------------------------------------------ strategies


def _choose_measured(task: BenchTask, oracle: LatencyOracle) -> int:
    """The most accurate measured row within the budget (ties: the faster, then the first);
    with none within it, the fastest measured row."""
    measured = oracle.measured()
    if not measured:
        raise ValueError("the search measured nothing")
    rows = np.fromiter(measured, dtype=np.int64)
    lat = np.fromiter(measured.values(), dtype=float)
    ok = lat <= task.budget_ms
    if not ok.any():
        return int(rows[np.argmin(lat)])
    order = np.lexsort((lat[ok], -task.accuracy[rows[ok]]))
    return int(rows[ok][order[0]])


def random_search(task: BenchTask, oracle: LatencyOracle, seed: int) -> int:
    """Measure ``oracle.limit`` random architectures (``numpy.random.default_rng(seed)``);
    return the most accurate one measured within the budget."""
    rng = np.random.default_rng(seed)
    n = len(task.archs)
    for row in rng.choice(n, size=min(oracle.limit, n), replace=False):
        oracle.measure(int(row))
    return _choose_measured(task, oracle)


def _source_space(task: BenchTask) -> np.ndarray:
    """Standardized log source latencies (the architectures' coordinates for the design)."""
    if task.sources_ms.shape[1] == 0:
        z = np.asarray(task.features, dtype=float)
    else:
        z = np.log(task.sources_ms)
    sd = z.std(0)
    return np.asarray((z - z.mean(0)) / np.where(sd > 0, sd, 1.0))


def initial_design(task: BenchTask, size: int, rng: np.random.Generator) -> list[int]:
    """``size`` diverse rows chosen without the target: D²-sampling (k-means++ seeding,
    Arthur & Vassilvitskii 2007) over the standardized log source latencies (the features
    when there are no sources)."""
    z = _source_space(task)
    first = int(rng.integers(len(z)))
    chosen = [first]
    d2 = np.sum((z - z[first]) ** 2, axis=1)
    while len(chosen) < min(size, len(z)):
        total = float(d2.sum())
        nxt = int(rng.choice(len(z), p=d2 / total)) if total > 0 else int(rng.integers(len(z)))
        if nxt in chosen:
            continue
        chosen.append(nxt)
        d2 = np.minimum(d2, np.sum((z - z[nxt]) ** 2, axis=1))
    return chosen


def _initial_size(limit: int) -> int:
    return max(2, min(INITIAL_MAX, int(INITIAL_FRACTION * limit)))


class _Guide:
    """The state the model-guided strategies share: the few-shot latency model refitted on
    what was measured, and the log-error spread of its predictions."""

    def __init__(self, task: BenchTask, oracle: LatencyOracle, seed: int) -> None:
        self.task, self.oracle, self.seed = task, oracle, seed
        self._factory = default_model(task.space)
        self._errors: list[float] = []  # log(predicted / measured), predicted before measuring
        self.model: Any = None
        self.measured_mask = np.zeros(len(task.archs), dtype=bool)
        n = len(task.archs)
        # The sources' op-cost models are linear in ~70 features: a fixed sample of the table
        # fits them as well as every row, at a fraction of the cost of each refit.
        self._pool = np.sort(np.random.default_rng(0).choice(n, size=POOL_ROWS, replace=False)) \
            if n > POOL_ROWS else np.arange(n)

    def measure(self, row: int, predicted_ms: float | None = None) -> float:
        value = self.oracle.measure(row)
        self.measured_mask[row] = True
        if predicted_ms is not None and predicted_ms > 0:
            self._errors.append(math.log(predicted_ms / value))
        return value

    def fit(self) -> None:
        t = self.task
        measured = self.oracle.measured()
        rows = np.fromiter(measured, dtype=np.int64)
        y = np.fromiter(measured.values(), dtype=float)
        src = t.sources_ms if t.sources_ms.shape[1] else None
        self.model = self._factory(len(rows), self.seed).fit(
            t.features[rows], y, sources_ms=None if src is None else src[rows],
            pool_X=t.features[self._pool], pool_sources_ms=None if src is None else src[self._pool])

    def predict(self, rows: np.ndarray) -> np.ndarray:
        t = self.task
        src = t.sources_ms[rows] if t.sources_ms.shape[1] else None
        return np.asarray(self.model.predict(t.features[rows], sources_ms=src), dtype=float)

    def calibration(self) -> tuple[float, float]:
        """(bias, spread) of log(predicted / true) over the predictions made before each
        measurement (prequential: errors where the search looks, selection effect included);
        with fewer than :data:`SIGMA_MIN_ERRORS`, no bias and the model's leave-one-out RMSPE."""
        if len(self._errors) >= SIGMA_MIN_ERRORS:
            e = np.asarray(self._errors)
            return float(e.mean()), max(float(e.std()), SIGMA_MIN)
        return 0.0, max(float(getattr(self.model, "loo_rmspe_", 10.0)) / 100.0, SIGMA_MIN)

    def sigma(self) -> float:
        return self.calibration()[1]

    def incumbent_accuracy(self) -> float:
        measured = self.oracle.measured()
        accs = [self.task.accuracy[r] for r, v in measured.items() if v <= self.task.budget_ms]
        return float(max(accs)) if accs else -math.inf

    def candidates(self) -> np.ndarray:
        """Unmeasured rows more accurate than the incumbent (nothing else can improve it)."""
        return np.flatnonzero(~self.measured_mask & (self.task.accuracy > self.incumbent_accuracy()))

    def start(self) -> None:
        rng = np.random.default_rng(self.seed)
        for row in initial_design(self.task, min(_initial_size(self.oracle.limit), self.oracle.limit), rng):
            self.measure(row)


Acquire = Callable[[_Guide, np.ndarray, np.ndarray], int]  # (guide, candidate rows, predicted ms) -> index


def _guided_loop(task: BenchTask, oracle: LatencyOracle, seed: int, acquire: Acquire) -> int:
    guide = _Guide(task, oracle, seed)
    guide.start()
    while oracle.remaining > 0:
        cand = guide.candidates()
        if len(cand) == 0:
            break  # the most accurate architecture of all is measured within the budget
        guide.fit()
        pred = guide.predict(cand)
        i = acquire(guide, cand, pred)
        guide.measure(int(cand[i]), float(pred[i]))
    return _choose_measured(task, oracle)


def _cei(guide: _Guide, cand: np.ndarray, pred: np.ndarray) -> int:
    from scipy.stats import norm

    acc = guide.task.accuracy[cand]
    inc = guide.incumbent_accuracy()
    floor = float(guide.task.accuracy.min()) - 1.0 if inc == -math.inf else inc
    bias, sigma = guide.calibration()
    log_p = norm.logcdf((math.log(guide.task.budget_ms) - np.log(np.maximum(pred, 1e-12)) + bias) / sigma)
    score = log_p + np.log(acc - floor)
    return int(np.argmax(score))


def _greedy(guide: _Guide, cand: np.ndarray, pred: np.ndarray) -> int:
    ok = np.flatnonzero(pred <= guide.task.budget_ms)
    if len(ok) == 0:
        return int(np.argmin(pred))
    return int(ok[np.argmax(guide.task.accuracy[cand[ok]])])


def cei_search(task: BenchTask, oracle: LatencyOracle, seed: int) -> int:
    """Constrained expected improvement with the few-shot transfer predictor (module docstring)."""
    return _guided_loop(task, oracle, seed, _cei)


def greedy_search(task: BenchTask, oracle: LatencyOracle, seed: int) -> int:
    """Measure the most accurate architecture predicted within the budget, refit, repeat."""
    return _guided_loop(task, oracle, seed, _greedy)


def _op_matrix(space: str, archs: Sequence[str]) -> tuple[np.ndarray, int]:
    """(n, positions) op indices of the architectures and the number of ops per position."""
    from predictors.encodings import FBNET_OPS, fbnet_op_indices, nb201_op_indices

    if space == "nb201":
        from farm.zoo.nb201 import OPS

        return nb201_op_indices(archs), len(OPS)
    return fbnet_op_indices(archs), len(FBNET_OPS)


def tpe_search(task: BenchTask, oracle: LatencyOracle, seed: int) -> int:
    """Optuna TPE proposes, the transfer predictor constrains, the oracle decides (module
    docstring). Architectures the study proposes that are not in the table fail their trial."""
    import optuna

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # a study per measurement: no "study created" lines
    try:
        return _tpe_search(task, oracle, seed)
    finally:
        optuna.logging.set_verbosity(verbosity)


def _tpe_search(task: BenchTask, oracle: LatencyOracle, seed: int) -> int:
    import optuna
    from optuna.distributions import BaseDistribution, CategoricalDistribution
    from optuna.trial import TrialState, create_trial

    ops, n_ops = _op_matrix(task.space, task.archs)
    names = [f"pos{j}" for j in range(ops.shape[1])]
    dist: dict[str, BaseDistribution] = {n: CategoricalDistribution(list(range(n_ops))) for n in names}
    row_of = {tuple(int(v) for v in r): i for i, r in enumerate(ops)}
    guide = _Guide(task, oracle, seed)
    guide.start()
    archive: list[int] = list(oracle.measured())  # rows the study has seen, in order
    seen = set(archive)
    every = np.arange(len(task.archs))
    rnd = 0
    while oracle.remaining > 0 and len(guide.candidates()) > 0:
        guide.fit()
        lat = guide.predict(every)  # predicted latency (ms), the measured one where measured
        for r, v in oracle.measured().items():
            lat[r] = v
        excess = lat / task.budget_ms - 1.0  # the constraint: <= 0 is within the budget
        study = optuna.create_study(direction="maximize",
                                    sampler=optuna.samplers.TPESampler(seed=seed * 1000 + rnd, n_startup_trials=10))
        study.add_trials([create_trial(params={n: int(v) for n, v in zip(names, ops[r], strict=True)},
                                       distributions=dist, value=float(task.accuracy[r]),
                                       constraints={"latency": float(excess[r])}) for r in archive])
        for _ in range(TPE_TRIALS_PER_ROUND):
            trial = study.ask(dist)
            row = row_of.get(tuple(int(trial.params[n]) for n in names))
            if row is None:
                study.tell(trial, state=TrialState.FAIL)
                continue
            trial.set_constraint("latency", float(excess[row]))
            study.tell(trial, float(task.accuracy[row]))
            if row not in seen:
                seen.add(row)
                archive.append(row)
        # Measure the study's best trial predicted within the budget that could beat the
        # incumbent (with none, the least violating; with none at all, any candidate).
        inc = guide.incumbent_accuracy()
        rows = np.array([r for r in seen if not guide.measured_mask[r] and task.accuracy[r] > inc], dtype=np.int64)
        if len(rows) == 0:
            rows = guide.candidates()
        order = np.lexsort((rows, -task.accuracy[rows], np.maximum(excess[rows], 0.0)))
        row = int(rows[order[0]])
        guide.measure(row, float(lat[row]))
        rnd += 1
    return _choose_measured(task, oracle)


MEASURE_STRATEGIES: dict[str, BenchSearch] = {"cei": cei_search, "greedy": greedy_search, "tpe": tpe_search,
                                      "random": random_search}


# ------------------------------------------------------------------ the harness


@dataclass(frozen=True)
class Pick:
    """One search's answer, scored with the truth."""

    row: int
    arch_str: str
    accuracy: float
    latency_ms: float
    feasible: bool
    regret: float      # best accuracy within the budget minus this accuracy (points)
    measurements: int  # target measurements the search used


@dataclass(frozen=True)
class SeedResult:
    seed: int
    search: Pick
    random: Pick
    seconds: float


@dataclass(frozen=True)
class BenchResult:
    """A whole benchmark run; :meth:`to_json` is the ``--json`` object."""

    space: str
    target: str
    accuracy_column: str
    strategy: str
    budget_percentile: float
    budget_ms: float
    measurements: int
    best_accuracy: float  # the best true accuracy within the budget
    best_row: int
    best_arch_str: str
    n_feasible: int       # architectures truly within the budget
    sources: tuple[str, ...]
    seeds: tuple[SeedResult, ...]
    seconds: float

    def _mean(self, which: str, field: str) -> float:
        return float(np.mean([float(getattr(getattr(s, which), field)) for s in self.seeds]))

    @property
    def regret(self) -> float:
        return self._mean("search", "regret")

    @property
    def feasible_rate(self) -> float:
        return self._mean("search", "feasible")

    @property
    def random_regret(self) -> float:
        return self._mean("random", "regret")

    @property
    def random_feasible_rate(self) -> float:
        return self._mean("random", "feasible")

    def to_json(self) -> dict[str, Any]:
        return {"regret": self.regret, "feasible_rate": self.feasible_rate,
                "random_regret": self.random_regret, "random_feasible_rate": self.random_feasible_rate,
                "accuracy": self._mean("search", "accuracy"), "latency_ms": self._mean("search", "latency_ms"),
                "random_accuracy": self._mean("random", "accuracy"),
                "random_latency_ms": self._mean("random", "latency_ms"),
                "regret_std": float(np.std([s.search.regret for s in self.seeds])),
                "random_regret_std": float(np.std([s.random.regret for s in self.seeds])),
                "best_accuracy": self.best_accuracy, "best_arch_str": self.best_arch_str,
                "budget_ms": self.budget_ms, "budget_percentile": self.budget_percentile,
                "n_feasible": self.n_feasible, "target": self.target, "space": self.space,
                "accuracy_column": self.accuracy_column, "strategy": self.strategy,
                "measurements": self.measurements, "n_seeds": len(self.seeds), "sources": list(self.sources),
                "per_seed": [asdict(s) for s in self.seeds], "seconds": self.seconds}


def _pick(row: int, used: int, archs: Sequence[str], acc: np.ndarray, lat: np.ndarray, budget: float,
          best: float) -> Pick:
    return Pick(row=row, arch_str=archs[row], accuracy=float(acc[row]), latency_ms=float(lat[row]),
                feasible=bool(lat[row] <= budget), regret=float(best - acc[row]), measurements=used)


@contextlib.contextmanager
def _one_blas_thread() -> Iterator[None]:
    """One BLAS thread while searching: every matrix here is small, and on a busy machine a
    second BLAS thread made each refit ~10x slower (spinning against other processes)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # scikit-learn brings it; without it, BLAS keeps its own setting
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def tabular_bench(table: LatencyTable, accuracy: np.ndarray, target: str, *, accuracy_column: str = "cifar10-test",
                  strategy: str = DEFAULT_STRATEGY, budget_percentile: float = 30.0, measurements: int = 50,
                  seeds: int = 3, search: BenchSearch | None = None,
                  on_seed: Callable[[SeedResult], None] | None = None) -> BenchResult:
    """Run ``strategy`` (or ``search``, a custom :data:`BenchSearch` reported under the name
    ``strategy``) and random search for seeds ``0..seeds-1`` on ``target`` (module docstring).
    ``accuracy`` is aligned to ``table``'s rows (:func:`read_accuracy`); every other device
    column of ``table`` is a source."""
    t0 = time.perf_counter()
    if search is None and strategy not in MEASURE_STRATEGIES:
        raise InputError(f"--strategy {strategy!r}: choose one of {', '.join(MEASURE_STRATEGIES)}")
    if seeds < 1:
        raise InputError(f"--seeds {seeds}: must be >= 1")
    n = len(table.archs)
    if not 2 <= measurements <= n:
        raise InputError(f"--measurements {measurements}: must be between 2 and {n} (the table's rows)")
    if target not in table.devices:
        raise column_error(table, target, "target")
    src = resolve_sources(table, target, "all")
    y = table.column(target)
    if np.any(y <= 0):
        raise InputError(f"{table.path}: target column {target!r} has a non-positive latency at row "
                         f"{int(np.flatnonzero(y <= 0)[0])}")
    S = table.latency_ms[:, [table.devices.index(s) for s in src]] if src else np.zeros((n, 0))
    keep = [j for j in range(S.shape[1]) if np.all(S[:, j] > 0)]  # a source must be a latency (ms > 0)
    S, src = S[:, keep], tuple(src[j] for j in keep)
    acc = np.asarray(accuracy, dtype=float)
    if acc.shape != (n,):
        raise ValueError(f"accuracy must be ({n},), got {acc.shape}")
    b = budget_ms(y, budget_percentile)
    feasible = y <= b
    best_row = int(np.flatnonzero(feasible)[np.argmax(acc[feasible])])
    best = float(acc[best_row])
    task = BenchTask(space=table.space, archs=table.archs, features=table.features, sources_ms=S,
                     source_names=src, accuracy=acc, budget_ms=b)
    fn = search or MEASURE_STRATEGIES[strategy]
    results = []
    with _one_blas_thread():
        for seed in range(seeds):
            ts = time.perf_counter()
            picks = []
            for f in (fn, random_search):
                oracle = LatencyOracle(y, limit=measurements)
                row = f(task, oracle, seed)
                picks.append(_pick(row, oracle.used, table.archs, acc, y, b, best))
            res = SeedResult(seed=seed, search=picks[0], random=picks[1], seconds=time.perf_counter() - ts)
            results.append(res)
            if on_seed is not None:
                on_seed(res)
    return BenchResult(space=table.space, target=target, accuracy_column=accuracy_column, strategy=strategy,
                       budget_percentile=float(budget_percentile), budget_ms=b, measurements=measurements,
                       best_accuracy=best, best_row=best_row, best_arch_str=table.archs[best_row], n_feasible=int(feasible.sum()), sources=src,
                       seeds=tuple(results), seconds=time.perf_counter() - t0)


def bench_figure(result: BenchResult) -> Figure:
    """Per-seed regret of the strategy against random search, and their feasible rates
    (matplotlib, no pyplot state; the caller saves it)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3.6), layout="constrained")
    ax, ax2 = fig.subplots(1, 2, width_ratios=(3, 1))
    seeds = [s.seed for s in result.seeds]
    x = np.arange(len(seeds))
    ax.bar(x - 0.2, [s.search.regret for s in result.seeds], 0.4, label=result.strategy)
    ax.bar(x + 0.2, [s.random.regret for s in result.seeds], 0.4, label="random", color="0.6")
    ax.set_xticks(x, [str(s) for s in seeds])
    ax.set_xlabel("seed")
    ax.set_ylabel("regret (accuracy points)")
    ax.set_title(f"{result.target}: budget {result.budget_ms:.3g} ms (p{result.budget_percentile:g}), "
                 f"{result.measurements} measurements", fontsize=9)
    ax.legend(fontsize=8)
    ax2.bar([0, 1], [result.feasible_rate, result.random_feasible_rate], color=["C0", "0.6"])
    ax2.set_xticks([0, 1], [result.strategy, "random"])
    ax2.set_ylim(0, 1.05)
    ax2.set_ylabel("truly feasible (share of seeds)")
    return fig
