"""The few-shot latency benchmark protocol (HELP's, as issue #5 states it).

A *latency table* is a CSV with one row per architecture: the space's architecture column
(``arch_str`` for nb201, ``op_idx`` for fbnet), optionally ``arch_idx`` and other text
columns, and one numeric column per device (latency in ms). For a target column and a shot
count k, for each seed:

- train: k random architectures of the sampling pool with their target latency (nb201: the
  pool is every row; fbnet: HELP's split, rows 0–3999), plus the full latencies of the source
  columns for every architecture (unless sources are ``none``);
- test: the test rows (nb201: every row not trained on; fbnet: rows 4000–4999) whose target
  latency lies within the 10th–90th percentile of the test rows' target latency;
- metrics: Spearman ρ, Kendall τ, ±10% accuracy (fraction of predictions within ±10% of the
  truth) and RMSPE (root mean squared percentage error, in %), averaged over seeds.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from farm.errors import InputError
from predictors.encodings import ARCH_COLUMN, SPACES, encode, n_cost_features

__all__ = ["LatencyTable", "read_csv", "read_table", "resolve_sources", "split", "percentile_mask", "metrics",
           "run_bench", "default_model", "FBNET_POOL_ROWS", "FBNET_TEST_ROWS", "METRICS"]

FBNET_POOL_ROWS = (0, 4000)    # HELP: sample from rows 0–3999 …
FBNET_TEST_ROWS = (4000, 5000)  # … and test on rows 4000–4999.
METRICS = ("spearman", "kendall", "acc10", "rmspe")
_NOT_DEVICES = {"arch_idx"}


@dataclass(frozen=True)
class LatencyTable:
    """A latency table read from a CSV: architectures, their features, one column per device."""

    path: str
    space: str
    archs: tuple[str, ...]
    devices: tuple[str, ...]
    latency_ms: np.ndarray  # (n_archs, n_devices)
    features: np.ndarray    # (n_archs, n_features), from predictors.encodings

    def column(self, device: str) -> np.ndarray:
        return self.latency_ms[:, self.devices.index(device)]


def _float(text: str) -> float | None:
    try:
        v = float(text)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def read_csv(path: str | Path) -> tuple[list[str], list[list[str]]]:
    """A CSV file's header and rows (blank lines skipped); one-line InputErrors for a missing,
    unreadable, empty or ragged file (naming the line)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file")
    try:
        with p.open(newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            rows = [r for r in reader if r]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise InputError(f"{p}: cannot read as CSV ({err})") from None
    if not header:
        raise InputError(f"{p}: empty file")
    for i, r in enumerate(rows):
        if len(r) != len(header):
            raise InputError(f"{p}: line {i + 2} has {len(r)} fields, the header has {len(header)}")
    return header, rows


def read_table(path: str | Path, space: str) -> LatencyTable:
    """Read a latency CSV. Every column that parses as numbers in every row, other than
    ``arch_idx``, is a device; a column with any positive-latency violation is an error."""
    if space not in SPACES:
        raise InputError(f"unknown space {space!r}: expected one of {', '.join(SPACES)}")
    p = Path(path)
    header, rows = read_csv(p)
    arch_col = ARCH_COLUMN[space]
    if arch_col not in header:
        raise InputError(f"{p}: no {arch_col!r} column (space {space} reads its architectures from it)")
    a = header.index(arch_col)
    archs = tuple(r[a] for r in rows)
    devices: list[str] = []
    values: list[list[float]] = []
    for j, name in enumerate(header):
        if j == a or name in _NOT_DEVICES:
            continue
        col = [_float(r[j]) for r in rows]
        if not rows or any(v is None for v in col):
            continue  # a text column (e.g. FBNet's `arch`), not a device
        devices.append(name)
        values.append([v for v in col if v is not None])
    if not rows:
        raise InputError(f"{p}: no rows")
    if not devices:
        raise InputError(f"{p}: no numeric device columns")
    lat = np.asarray(values, dtype=float).T
    try:
        features = encode(space, archs)
    except InputError as err:
        raise InputError(f"{p}: {err}") from None
    return LatencyTable(str(p), space, archs, tuple(devices), lat, features)


def column_error(table: LatencyTable, name: str, what: str) -> InputError:
    """The error for a column that is not a usable device column."""
    with Path(table.path).open(newline="") as f:
        header = next(csv.reader(f), [])
    if name in header:
        return InputError(f"{table.path}: {what} column {name!r} is not numeric in every row")
    return InputError(f"{table.path}: no {what} column {name!r} (device columns: {', '.join(table.devices)})")


def resolve_sources(table: LatencyTable, target: str, sources: str | Sequence[str]) -> tuple[str, ...]:
    """``"all"`` (every device but the target), ``"none"``, or a comma list / sequence of columns.
    The target is left out of an explicit list (a device is never its own transfer source)."""
    if target not in table.devices:
        raise column_error(table, target, "target")
    if isinstance(sources, str):
        s = sources.strip()
        if s == "all":
            return tuple(d for d in table.devices if d != target)
        if s == "none" or s == "":
            return ()
        names = [x.strip() for x in s.split(",") if x.strip()]
    else:
        names = list(sources)
    for n in names:
        if n not in table.devices:
            raise column_error(table, n, "source")
    if len(set(names)) != len(names):
        raise InputError(f"sources list a column twice: {','.join(names)}")
    return tuple(n for n in names if n != target)


def _pool_and_test(space: str, n_rows: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Rows training samples come from, and the fixed test rows (None: every untrained row)."""
    if space == "fbnet":
        if n_rows < FBNET_TEST_ROWS[1]:
            raise InputError(f"fbnet protocol needs {FBNET_TEST_ROWS[1]} rows (sample 0-3999, test 4000-4999), "
                             f"the table has {n_rows}")
        return np.arange(*FBNET_POOL_ROWS), np.arange(*FBNET_TEST_ROWS)
    return np.arange(n_rows), None


def split(space: str, n_rows: int, shots: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, test rows before the percentile filter) for one seed."""
    pool, test = _pool_and_test(space, n_rows)
    limit = len(pool) - (1 if test is None else 0)
    if shots < 2 or shots > limit:
        raise InputError(f"shots {shots}: must be between 2 and {limit} for this table ({space}, {n_rows} rows)")
    train = np.sort(rng.choice(pool, size=shots, replace=False))
    if test is None:
        keep = np.ones(n_rows, dtype=bool)
        keep[train] = False
        test = np.flatnonzero(keep)
    return train, test


def percentile_mask(y_test: np.ndarray, low_pct: float = 10.0, high_pct: float = 90.0) -> np.ndarray:
    """Rows whose latency lies within the [low, high] percentiles of ``y_test`` (inclusive)."""
    lo, hi = np.percentile(y_test, [low_pct, high_pct])
    return (y_test >= lo) & (y_test <= hi)


def metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Spearman ρ, Kendall τ (τ-b), ±10% accuracy (fraction) and RMSPE (%)."""
    from scipy.stats import kendalltau, spearmanr

    t = np.asarray(y_true, dtype=float)
    p = np.asarray(y_pred, dtype=float)
    if t.shape != p.shape or t.ndim != 1 or len(t) < 2:
        raise ValueError(f"metrics need two equal 1-D arrays of length >= 2, got {t.shape} and {p.shape}")
    rel = (p - t) / t
    rho = float(spearmanr(t, p).statistic)
    tau = float(kendalltau(t, p).statistic)
    return {"spearman": rho if math.isfinite(rho) else 0.0, "kendall": tau if math.isfinite(tau) else 0.0,
            "acc10": float(np.mean(np.abs(rel) <= 0.10)), "rmspe": float(100.0 * np.sqrt(np.mean(rel ** 2)))}


class _Regressor(Protocol):
    def fit(self, X: np.ndarray, y: np.ndarray, *, sources_ms: np.ndarray | None = ...,
            pool_X: np.ndarray | None = ..., pool_sources_ms: np.ndarray | None = ...) -> object: ...

    def predict(self, X: np.ndarray, *, sources_ms: np.ndarray | None = ...) -> np.ndarray: ...


ModelFactory = Callable[[int, int], _Regressor]  # (shots, seed) -> unfitted regressor


def default_model(space: str) -> ModelFactory:
    """The benchmark's model: :class:`predictors.transfer.TransferRegressor`, seeded per run."""
    from predictors.transfer import TransferRegressor

    nc = n_cost_features(space)
    return lambda shots, seed: TransferRegressor(n_cost_features=nc, random_state=seed)


def run_bench(table: LatencyTable, target: str, shots: Sequence[int], *, seeds: int = 5,
              sources: str | Sequence[str] = "all", make_model: ModelFactory | None = None,
              on_step: Callable[[], None] | None = None, keep_seeds: bool = False) -> dict[str, dict[str, Any]]:
    """The protocol: ``{"<shots>": {"spearman", "kendall", "acc10", "rmspe", "std_spearman",
    "seeds", "n_test"}}``, metrics averaged over ``seeds`` seeds (seed s draws its training rows
    with ``numpy.random.default_rng(s)``). ``on_step`` is called after every (shots, seed);
    ``keep_seeds`` adds ``"per_seed"``, each seed's metrics in seed order."""
    if seeds < 1:
        raise InputError(f"seeds {seeds}: must be >= 1")
    if not shots:
        raise InputError("shots: give at least one shot count")
    src = resolve_sources(table, target, sources)
    y_all = table.column(target)
    if np.any(y_all <= 0):
        bad = int(np.flatnonzero(y_all <= 0)[0])
        raise InputError(f"{table.path}: target column {target!r} has a non-positive latency at row {bad}")
    S_all = table.latency_ms[:, [table.devices.index(s) for s in src]] if src else None
    if S_all is not None and np.any(S_all <= 0):
        r, c = (int(v[0]) for v in np.nonzero(S_all <= 0))
        raise InputError(f"{table.path}: source column {src[c]!r} has a non-positive latency at row {r}")
    for k in shots:  # validate every shot count before any work
        split(table.space, len(y_all), k, np.random.default_rng(0))
    factory = make_model or default_model(table.space)
    pool_rows, _ = _pool_and_test(table.space, len(y_all))
    out: dict[str, dict[str, Any]] = {}
    for k in shots:
        per_seed: list[dict[str, float]] = []
        n_test = 0
        for seed in range(seeds):
            train, test = split(table.space, len(y_all), k, np.random.default_rng(seed))
            test = test[percentile_mask(y_all[test])]
            n_test = len(test)
            model = factory(k, seed)
            model.fit(table.features[train], y_all[train],
                      sources_ms=None if S_all is None else S_all[train],
                      pool_X=table.features[pool_rows] if S_all is None else table.features,
                      pool_sources_ms=None if S_all is None else S_all)
            pred = np.asarray(model.predict(table.features[test],
                                            sources_ms=None if S_all is None else S_all[test]), dtype=float)
            per_seed.append(metrics(y_all[test], pred))
            if on_step is not None:
                on_step()
        row: dict[str, Any] = {m: float(np.mean([r[m] for r in per_seed])) for m in METRICS}
        row["std_spearman"] = float(np.std([r["spearman"] for r in per_seed]))
        row["seeds"] = seeds
        row["n_test"] = n_test
        if keep_seeds:
            row["per_seed"] = per_seed
        out[str(k)] = row
    return out
