"""`hwfarm nas bench`: the tabular hardware-aware NAS benchmark (nas.bench)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from farm.errors import InputError
from farm.zoo.nb201 import OPS, arch_str_from_ops
from nas.bench import (
    MEASURE_STRATEGIES,
    BenchTask,
    LatencyOracle,
    MeasurementBudgetExceeded,
    budget_ms,
    read_accuracy,
    tabular_bench,
)
from predictors.benchmark import read_table

from ..conftest import run_cli

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
LATENCY_CSV = SHARED / "nb201-latency" / "latency_ms.csv"
ACCURACY_CSV = SHARED / "nb201-accuracy" / "accuracy.csv"
DEVICES = ("alpha", "beta", "gamma", "delta")


def _synthetic(tmp_path: Path, n: int = 400, seed: int = 0) -> tuple[Path, Path]:
    """A small NB201 table: four devices whose latency is a device-specific mix of per-op
    costs (with noise), and an accuracy that grows with convolutions."""
    rng = np.random.default_rng(seed)
    every = list(itertools.product(range(len(OPS)), repeat=6))
    ops = np.array([every[i] for i in rng.choice(len(every), size=n, replace=False)])
    archs = [arch_str_from_ops([OPS[o] for o in row]) for row in ops]
    counts = np.stack([(ops == o).sum(1) for o in range(len(OPS))], axis=1).astype(float)  # (n, 5)
    op_cost = np.array([0.0, 0.1, 1.0, 3.0, 0.6])
    lat = {}
    for j, d in enumerate(DEVICES):
        w = op_cost * rng.uniform(0.6, 1.4, size=len(OPS))
        lat[d] = (2.0 + j + counts @ w) * rng.lognormal(0.0, 0.03, size=n)
    acc = 60 + 4 * counts[:, 3] + 2.5 * counts[:, 2] + counts[:, 1] - 5 * counts[:, 0] + rng.normal(0, 1.0, n)
    lpath, apath = tmp_path / "lat.csv", tmp_path / "acc.csv"
    with lpath.open("w") as f:
        f.write("arch_idx,arch_str," + ",".join(DEVICES) + "\n")
        for i, a in enumerate(archs):
            f.write(f"{i},{a}," + ",".join(f"{lat[d][i]:.5f}" for d in DEVICES) + "\n")
    with apath.open("w") as f:
        f.write("arch_idx,arch_str,cifar10-test,other\n")
        for i in rng.permutation(n):  # another row order: the join is on arch_str
            f.write(f"{i},{archs[i]},{acc[i]:.3f},{-acc[i]:.3f}\n")
    return lpath, apath


@pytest.fixture()
def synthetic(tmp_path: Path) -> tuple[Path, Path]:
    return _synthetic(tmp_path)


def _inputs(paths: tuple[Path, Path]):
    table = read_table(paths[0], "nb201")
    return table, read_accuracy(paths[1], "cifar10-test", table)


def test_cli_json_contract(synthetic):
    lat, acc = synthetic
    p = run_cli("nas", "bench", "--space", "nb201", "--latency-csv", str(lat), "--accuracy-csv", str(acc),
                "--target", "gamma", "--measurements", "20", "--seeds", "2", "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    for key in ("regret", "feasible_rate", "random_regret", "random_feasible_rate", "budget_ms", "target",
                "strategy", "measurements", "seconds", "per_seed", "best_accuracy"):
        assert key in out, key
    assert out["target"] == "gamma" and out["strategy"] == "cei" and out["measurements"] == 20
    assert len(out["per_seed"]) == 2 and "gamma" not in out["sources"]
    assert out["budget_ms"] == pytest.approx(np.percentile(read_table(lat, "nb201").column("gamma"), 30))
    for s in out["per_seed"]:
        for pick in (s["search"], s["random"]):
            assert pick["measurements"] <= 20
            assert pick["feasible"] == (pick["latency_ms"] <= out["budget_ms"])
            assert pick["regret"] == pytest.approx(out["best_accuracy"] - pick["accuracy"])
            assert pick["regret"] >= 0 or not pick["feasible"]
    assert out["regret"] == pytest.approx(np.mean([s["search"]["regret"] for s in out["per_seed"]]))


def test_cli_table_and_plot(synthetic, tmp_path):
    lat, acc = synthetic
    png = tmp_path / "bench.png"
    p = run_cli("nas", "bench", "--space", "nb201", "--latency-csv", str(lat), "--accuracy-csv", str(acc),
                "--target", "beta", "--measurements", "12", "--seeds", "1", "--strategy", "greedy",
                "--plot", str(png))
    assert p.returncode == 0, p.stderr
    assert "regret" in p.stdout and "random" in p.stdout
    assert png.stat().st_size > 1000 and json.loads(png.with_suffix(".json").read_text())["strategy"] == "greedy"


@pytest.mark.parametrize("strategy", sorted(MEASURE_STRATEGIES))
def test_pick_is_measured_within_budget_and_truly_feasible(synthetic, strategy):
    table, acc = _inputs(synthetic)
    y = table.column("alpha")
    b = budget_ms(y, 30)
    task = BenchTask(space="nb201", archs=table.archs, features=table.features,
                     sources_ms=table.latency_ms[:, 1:], source_names=table.devices[1:], accuracy=acc, budget_ms=b)
    for seed in range(2):
        oracle = LatencyOracle(y, limit=15)
        row = MEASURE_STRATEGIES[strategy](task, oracle, seed)
        measured = oracle.measured()
        assert oracle.used <= 15
        assert row in measured and measured[row] <= b and y[row] <= b
        better = [r for r, v in measured.items() if v <= b and acc[r] > acc[row]]
        assert not better  # the most accurate measured architecture within the budget


def test_oracle_counts_distinct_reads_and_refuses_past_the_limit():
    oracle = LatencyOracle(np.arange(1.0, 11.0), limit=3)
    assert [oracle.measure(r) for r in (4, 4, 0, 9)] == [5.0, 5.0, 1.0, 10.0]
    assert oracle.used == 3 and oracle.remaining == 0
    assert oracle.measure(0) == 1.0  # asked again: free
    with pytest.raises(MeasurementBudgetExceeded):
        oracle.measure(1)


def test_harness_gives_searches_only_the_oracle(synthetic):
    table, acc = _inputs(synthetic)
    seen: list[BenchTask] = []

    def greedy_reader(task: BenchTask, oracle: LatencyOracle, seed: int) -> int:
        seen.append(task)
        for row in range(len(task.archs)):  # tries to read the whole target column
            oracle.measure(row)
        return 0

    with pytest.raises(MeasurementBudgetExceeded):
        tabular_bench(table, acc, "delta", strategy="reader", search=greedy_reader, measurements=7, seeds=1)
    task = seen[0]
    assert task.source_names == ("alpha", "beta", "gamma")
    target = table.column("delta")
    assert not any(np.allclose(task.sources_ms[:, j], target) for j in range(task.sources_ms.shape[1]))

    counts: list[int] = []

    def counting(task: BenchTask, oracle: LatencyOracle, seed: int) -> int:
        row = MEASURE_STRATEGIES["cei"](task, oracle, seed)
        counts.append(oracle.used)
        return row

    res = tabular_bench(table, acc, "delta", strategy="cei", search=counting, measurements=9, seeds=2)
    assert counts == [9, 9] and all(s.search.measurements == 9 and s.random.measurements == 9 for s in res.seeds)


def test_deterministic_per_seed(synthetic):
    table, acc = _inputs(synthetic)
    for strategy in ("cei", "tpe"):
        a = tabular_bench(table, acc, "beta", strategy=strategy, measurements=14, seeds=2).to_json()
        b = tabular_bench(table, acc, "beta", strategy=strategy, measurements=14, seeds=2).to_json()
        assert [s["search"] for s in a["per_seed"]] == [s["search"] for s in b["per_seed"]]
        assert [s["random"] for s in a["per_seed"]] == [s["random"] for s in b["per_seed"]]


def test_bad_input_is_one_line_exit_2(synthetic, tmp_path):
    lat, acc = synthetic
    base = ["nas", "bench", "--space", "nb201", "--latency-csv", str(lat), "--accuracy-csv", str(acc)]
    cases = [(["--target", "epsilon"], "alpha, beta, gamma, delta"),
             (["--target", "alpha", "--accuracy-column", "mnist"], "cifar10-test, other"),
             (["--target", "alpha", "--budget-percentile", "0"], "percentile"),
             (["--target", "alpha", "--budget-percentile", "101"], "percentile"),
             (["--target", "alpha", "--strategy", "magic"], "cei"),
             (["--target", "alpha", "--measurements", "1"], "--measurements")]
    for args, match in cases:
        p = run_cli(*base, *args, "--json")
        assert p.returncode == 2 and match in p.stderr, (args, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1 and not p.stdout.strip()
    p = run_cli("nas", "bench", "--space", "nb201", "--latency-csv", str(tmp_path / "nope.csv"),
                "--accuracy-csv", str(acc), "--target", "alpha")
    assert p.returncode == 2 and "no such file" in p.stderr


def test_library_errors(synthetic):
    table, acc = _inputs(synthetic)
    with pytest.raises(InputError, match="device columns: alpha"):
        tabular_bench(table, acc, "omega")
    with pytest.raises(InputError, match="percentile"):
        budget_ms(table.column("alpha"), -5)


@pytest.mark.skipif(not (LATENCY_CSV.is_file() and ACCURACY_CSV.is_file()), reason="../shared/data is absent")
def test_default_strategy_beats_random_on_a_real_column():
    table = read_table(LATENCY_CSV, "nb201")
    acc = read_accuracy(ACCURACY_CSV, "cifar10-test", table)
    res = tabular_bench(table, acc, "samsung_s7", measurements=50, seeds=2)
    assert res.feasible_rate == 1.0
    assert res.regret < 1.0 and res.regret < res.random_regret
