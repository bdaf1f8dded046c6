"""Few-shot transfer: encodings, the estimator contract, the benchmark protocol, the CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from farm.errors import InputError
from farm.zoo.nb201 import OPS, arch_str_from_ops
from predictors.benchmark import metrics, percentile_mask, read_table, resolve_sources, run_bench, split
from predictors.encodings import encode, feature_names, n_cost_features
from predictors.transfer import (
    NEAREST_WEIGHTS,
    NotFittedError,
    OneHotForestRegressor,
    SourceRidgeRegressor,
    TransferRegressor,
)

from ..conftest import run_cli

NB201_CSV = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "nb201-latency" / "latency_ms.csv"


# ----------------------------------------------------------------------------- encodings

def test_nb201_encoding_one_hot_live_edges_and_costs():
    all_conv = arch_str_from_ops(["nor_conv_3x3"] * 6)
    # node 2 gets only `none` edges, so the pool on edge 5 (node 3 <- node 2) is dead.
    cut = arch_str_from_ops(["none", "none", "none", "nor_conv_1x1", "none", "avg_pool_3x3"])
    X = encode("nb201", [all_conv, cut])
    names = feature_names("nb201")
    assert X.shape == (2, len(names)) and len(names) == n_cost_features("nb201") + 60
    col = {n: i for i, n in enumerate(names)}
    assert X[0, col["n_nor_conv_3x3"]] == 6 and X[0, col["n_live_nor_conv_3x3"]] == 6
    assert X[1, col["e5:avg_pool_3x3"]] == 1 and X[1, col["live:e5:avg_pool_3x3"]] == 0
    assert X[1, col["live:e3:nor_conv_1x1"]] == 1 and X[1, col["n_live_avg_pool_3x3"]] == 0
    assert X[0, col["mmacs"]] > 9 * X[1, col["mmacs"]] > 0  # six 3x3 convs vs one 1x1 conv + a pool
    assert X[1, col["live_mmacs"]] < X[1, col["mmacs"]]
    onehot = X[:, n_cost_features("nb201"):n_cost_features("nb201") + 30]
    assert np.all(onehot.reshape(2, 6, 5).sum(2) == 1)


def test_fbnet_encoding_one_hot_and_costs():
    archs = ["-".join(["7"] * 22), "-".join(["8"] * 22), "-".join(str(i % 9) for i in range(22))]
    X = encode("fbnet", archs)
    nc = n_cost_features("fbnet")
    assert X.shape == (3, nc + 22 * 9) and len(feature_names("fbnet")) == X.shape[1]
    assert np.all(X[:, nc:].reshape(3, 22, 9).sum(2) == 1)
    assert X[2, nc + 9 * 4 + 4] == 1  # layer 4 chose op 4
    col = {n: i for i, n in enumerate(feature_names("fbnet"))}
    macs, dw_macs, blocks = X[:, col["mmacs"]], X[:, col["dw_mmacs"]], X[:, col["n_blocks"]]
    assert macs[0] > macs[2] > macs[1] > 0  # all k5_e6 > mixed > all skip (6 channel-changing 1x1 convs)
    assert blocks[0] == 22 and blocks[1] == 0
    assert macs[0] > dw_macs[0] > 0 and dw_macs[1] == 0  # skips (even 1x1 projections) have no depthwise part


@pytest.mark.parametrize("space, arch", [("nb201", "|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|"),
                                         ("nb201", "garbage"), ("fbnet", "1-2-3"), ("fbnet", "-".join(["9"] * 22)),
                                         ("mobilenet", "x")])
def test_bad_architectures_are_input_errors(space, arch):
    with pytest.raises(InputError):
        encode(space, [arch])


# ----------------------------------------------------------------------------- estimator contract

def _synthetic(n=300, d=3, seed=0):
    """Additive made-up devices over NB201 cells: sources and a target sharing op costs."""
    rng = np.random.default_rng(seed)
    ops = rng.integers(0, len(OPS), size=(n, 6))
    archs = [arch_str_from_ops([OPS[o] for o in row]) for row in ops]
    X = encode("nb201", archs)
    oh = X[:, n_cost_features("nb201"):n_cost_features("nb201") + 30]
    base = rng.uniform(0.1, 2.0, size=30)
    S = np.stack([2.0 + oh @ (base * rng.uniform(0.5, 1.5, 30)) for _ in range(d)], axis=1)
    y = 1.0 + oh @ (base * rng.uniform(0.7, 1.3, 30))
    return archs, X, S, y


@pytest.mark.parametrize("make", [
    lambda: TransferRegressor(n_cost_features=n_cost_features("nb201"), boost_min_shots=20, boost_trees=20),
    lambda: SourceRidgeRegressor(),
    lambda: OneHotForestRegressor(n_cost_features=n_cost_features("nb201"), n_estimators=10),
])
def test_estimator_contract(make):
    _, X, S, y = _synthetic()
    model = make()
    with pytest.raises(NotFittedError):
        model.predict(X[:5], sources_ms=S[:5])
    assert not [k for k in vars(model) if k.endswith("_")]  # __init__ stores hyperparameters only
    assert model.fit(X[:40], y[:40], sources_ms=S[:40], pool_X=X, pool_sources_ms=S) is model
    assert [k for k in vars(model) if k.endswith("_")]
    p1 = model.predict(X[40:], sources_ms=S[40:])
    p2 = make().fit(X[:40], y[:40], sources_ms=S[:40], pool_X=X, pool_sources_ms=S).predict(X[40:], sources_ms=S[40:])
    assert p1.shape == (len(X) - 40,) and np.all(np.isfinite(p1)) and np.allclose(p1, p2)


def test_transfer_learns_from_sources_and_few_shots():
    _, X, S, y = _synthetic(n=400)
    nc = n_cost_features("nb201")
    m = TransferRegressor(n_cost_features=nc).fit(X[:10], y[:10], sources_ms=S[:10], pool_X=X, pool_sources_ms=S)
    scores = metrics(y[10:], m.predict(X[10:], sources_ms=S[10:]))
    assert scores["spearman"] > 0.85 and scores["acc10"] > 0.7
    assert m.n_sources_ == 3 and m.booster_ is None and m.loo_rmspe_ >= 0
    # without sources (arch features only) it still ranks the additive target well with more shots
    m0 = TransferRegressor(n_cost_features=nc).fit(X[:100], y[:100], pool_X=X)
    assert metrics(y[100:], m0.predict(X[100:]))["spearman"] > 0.99
    with pytest.raises(ValueError):
        m.predict(X[:3])  # fitted with sources: they are required
    with pytest.raises(ValueError):
        TransferRegressor().fit(X[:5], -y[:5])


def test_cost_prior_members_learn_a_device_from_its_peers_cost_coefficients():
    """Devices linear in the cost features with related coefficients: the sources' coefficients
    are the prior, so 8 shots pin the target down; without sources there are no such members."""
    rng = np.random.default_rng(1)
    archs = [arch_str_from_ops([OPS[o] for o in row]) for row in rng.integers(0, len(OPS), size=(500, 6))]
    X = encode("nb201", archs)
    nc = n_cost_features("nb201")
    C = (X[:, :nc] - X[:, :nc].mean(0)) / (X[:, :nc].std(0) + 1e-12)
    coef = rng.uniform(0.5, 1.5, nc)
    S = np.stack([10.0 + C @ (coef * rng.uniform(0.8, 1.2, nc)) for _ in range(5)], axis=1)
    y = 10.0 + C @ (coef * rng.uniform(0.8, 1.2, nc))
    m = TransferRegressor(n_cost_features=nc).fit(X[:8], y[:8], sources_ms=S[:8], pool_X=X, pool_sources_ms=S)
    assert len(m.members_) == 2 and all(k.endswith("_") for k in vars(m.members_[0]) if k not in ("grid", "shrink"))
    assert metrics(y[8:], m.predict(X[8:], sources_ms=S[8:]))["spearman"] > 0.95
    prior = m.members_[0].prior_mean_  # the sources' mean coefficients on the cost features and a constant
    assert prior.shape == (nc + 1,) and metrics(y, m._cost_design(X) @ prior)["spearman"] > 0.95  # before any shot
    assert TransferRegressor(n_cost_features=nc).fit(X[:20], y[:20], pool_X=X).members_ == []


def test_nearest_source_member_follows_a_sibling_device():
    """A target that is one source scaled (plus 2% noise), beside sources that are not: the
    nearest-source member finds that source, gets weight in the blend, and ranks the target
    better than the ensemble alone; on a target no source resembles it keeps a small weight."""
    _, X, S, _ = _synthetic(n=400, d=3, seed=2)
    rng = np.random.default_rng(5)
    sibling = 0.5 * rng.uniform(0.1, 1.0, 400) ** 3 * 40 + 1.0  # not additive in the ops
    S = np.column_stack([S, sibling])
    y = 3.0 * sibling * rng.normal(1.0, 0.02, 400)
    nc = n_cost_features("nb201")
    kw = dict(sources_ms=S[:10], pool_X=X, pool_sources_ms=S)
    m = TransferRegressor(n_cost_features=nc).fit(X[:10], y[:10], **kw)
    off = TransferRegressor(n_cost_features=nc, nearest_source=False).fit(X[:10], y[:10], **kw)
    assert m.nearest_source_ == 3 and m.nearest_weight_ >= 0.5 and m.nearest_coef_ == pytest.approx(3.0, rel=0.05)
    assert off.nearest_source_ == -1 and off.nearest_weight_ == 0.0
    ours = metrics(y[10:], m.predict(X[10:], sources_ms=S[10:]))
    alone = metrics(y[10:], off.predict(X[10:], sources_ms=S[10:]))
    assert ours["spearman"] > 0.99 and alone["spearman"] < 0.95
    # the ensemble keeps a quarter of the say (NEAREST_WEIGHTS stops at 3/4): on a perfect sibling
    # that costs some level (±10% accuracy ~0.75, median error ~6%), never the ranking
    assert m.nearest_weight_ == max(NEAREST_WEIGHTS) < 1.0 and ours["acc10"] > 0.6
    assert ours["acc10"] > metrics(y[10:], off.predict(X[10:], sources_ms=S[10:]))["acc10"]
    # no sources: no nearest-source member
    assert TransferRegressor(n_cost_features=nc).fit(X[:20], y[:20], pool_X=X).nearest_weight_ == 0.0


def test_booster_sees_the_sources_non_additive_residuals():
    _, X, S, y = _synthetic(n=200)
    m = TransferRegressor(n_cost_features=n_cost_features("nb201"), boost_min_shots=50, boost_trees=5)
    m.fit(X[:60], y[:60], sources_ms=S[:60], pool_X=X, pool_sources_ms=S)
    F = m._boost_features(X[:5], S[:5], np.ones(5))
    assert F.shape == (5, X.shape[1] + 1 + 2 * S.shape[1])
    add = np.hstack([X[:5], np.ones((5, 1))]) @ m.source_coef_ / m.source_mean_ms_
    assert np.allclose(F[:, -S.shape[1]:], S[:5] / m.source_mean_ms_ - add)
    # the synthetic sources are additive in the one-hot ops: their residuals are ~0
    assert np.abs(F[:, -S.shape[1]:]).max() < 1e-6


def test_transfer_boost_kicks_in_with_many_shots():
    _, X, S, y = _synthetic(n=200)
    m = TransferRegressor(n_cost_features=n_cost_features("nb201"), boost_min_shots=50, boost_trees=10,
                          boost_weights=(1.0,))
    m.fit(X[:60], y[:60], sources_ms=S[:60], pool_X=X, pool_sources_ms=S)
    assert m.booster_ is not None and m.boost_weight_ == 1.0
    assert np.all(m.predict(X[60:], sources_ms=S[60:]) > 0)


def test_booster_weight_is_cross_validated_on_the_shots():
    _, X, S, y = _synthetic(n=400)
    nc = n_cost_features("nb201")
    kw = dict(sources_ms=S[:200], pool_X=X, pool_sources_ms=S)
    # additive target: the base model fits it; a booster only adds its own error -> weight 0, none kept
    m = TransferRegressor(n_cost_features=nc, boost_min_shots=50, boost_trees=50).fit(X[:200], y[:200], **kw)
    assert m.boost_weight_ == 0.0 and m.booster_ is None
    base = m.predict(X[200:], sources_ms=S[200:])
    # a factor of 1.6 on every cell whose edge 0 is a 3x3 conv or edge 5 a pool (a third of them): no source
    # shows it and no additive model fits it; the booster learns it -> full weight, the predictions follow it
    col = {n: i for i, n in enumerate(feature_names("nb201"))}
    hit = (X[:, col["e0:nor_conv_3x3"]] == 1) | (X[:, col["e5:avg_pool_3x3"]] == 1)
    y2 = y * np.where(hit, 1.6, 1.0)
    b = TransferRegressor(n_cost_features=nc, boost_min_shots=50, boost_trees=100).fit(X[:200], y2[:200], **kw)
    assert b.boost_weight_ == 1.0 and b.booster_ is not None
    off = TransferRegressor(n_cost_features=nc, boost_min_shots=0).fit(X[:200], y2[:200], **kw)
    err = lambda p: float(np.median(np.abs(p / y2[200:] - 1)))  # noqa: E731
    assert err(b.predict(X[200:], sources_ms=S[200:])) < 0.5 * err(off.predict(X[200:], sources_ms=S[200:]))
    # a fixed half weight blends the two in log space
    h = TransferRegressor(n_cost_features=nc, boost_min_shots=50, boost_trees=100, boost_weights=(0.5,))
    h.fit(X[:200], y2[:200], **kw)
    full = TransferRegressor(n_cost_features=nc, boost_min_shots=50, boost_trees=100, boost_weights=(1.0,))
    full.fit(X[:200], y2[:200], **kw)
    p_off, p_full = (e.predict(X[200:], sources_ms=S[200:]) for e in (off, full))
    assert np.allclose(h.predict(X[200:], sources_ms=S[200:]), np.sqrt(p_off * p_full))
    no_boost = TransferRegressor(n_cost_features=nc, boost_min_shots=0).fit(X[:200], y[:200], **kw)
    assert np.allclose(base, no_boost.predict(X[200:], sources_ms=S[200:]))  # weight 0: the base model alone
    with pytest.raises(ValueError, match="boost_weights"):
        TransferRegressor(n_cost_features=nc, boost_weights=(1.5,)).fit(X[:200], y[:200], **kw)  # even unboosted


# ----------------------------------------------------------------------------- metrics and splits

def test_metrics_on_hand_made_arrays():
    t = np.array([1.0, 2.0, 3.0, 4.0])
    perfect = metrics(t, t)
    assert perfect == {"spearman": 1.0, "kendall": 1.0, "acc10": 1.0, "rmspe": 0.0}
    m = metrics(t, np.array([1.05, 2.5, 2.9, 3.0]))  # errors: +5%, +25%, -3.3%, -25%
    assert m["acc10"] == 0.5
    assert m["rmspe"] == pytest.approx(100 * np.sqrt((0.05**2 + 0.25**2 + (0.1 / 3) ** 2 + 0.25**2) / 4))
    assert m["spearman"] == pytest.approx(1.0) and m["kendall"] == pytest.approx(1.0)
    rev = metrics(t, t[::-1].copy())
    assert rev["spearman"] == pytest.approx(-1.0) and rev["kendall"] == pytest.approx(-1.0)


def test_fbnet_split_samples_0_3999_and_tests_4000_4999():
    for seed in range(5):
        train, test = split("fbnet", 5000, 900, np.random.default_rng(seed))
        assert len(train) == 900 and len(set(train)) == 900 and train.max() < 4000
        assert np.array_equal(test, np.arange(4000, 5000))
    with pytest.raises(InputError, match="4000"):
        split("fbnet", 3000, 10, np.random.default_rng(0))
    with pytest.raises(InputError, match="shots"):
        split("fbnet", 5000, 4001, np.random.default_rng(0))


def test_nb201_split_tests_on_every_other_row():
    train, test = split("nb201", 100, 10, np.random.default_rng(3))
    assert len(train) == 10 and set(train).isdisjoint(test) and len(train) + len(test) == 100
    assert np.array_equal(train, split("nb201", 100, 10, np.random.default_rng(3))[0])  # seeded


def test_percentile_filter_keeps_10th_to_90th():
    y = np.arange(101, dtype=float)  # percentiles 10 and 90 are exactly 10 and 90
    keep = percentile_mask(y)
    assert keep.sum() == 81 and y[keep].min() == 10 and y[keep].max() == 90


# ----------------------------------------------------------------------------- tables and CLI

def _write_csv(path: Path, n: int = 120, seed: int = 0) -> Path:
    """A made-up NB201 table with device columns no real farm has: the code must not care."""
    archs, X, S, y = _synthetic(n=n, d=3, seed=seed)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["arch_idx", "arch_str", "zorp_1", "quux-npu", "blarg", "mytarget", "note"])
        for i, a in enumerate(archs):
            w.writerow([i, a, *S[i], y[i], "text"])
    return path


def _main(capsys, *argv: str) -> tuple[int, str, str]:
    """`hwfarm ARGV` in this process (the subprocess path is tested once, with --json)."""
    from farm.cli import main

    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, out.err


def test_read_table_finds_device_columns(tmp_path):
    table = read_table(_write_csv(tmp_path / "t.csv"), "nb201")
    assert table.devices == ("zorp_1", "quux-npu", "blarg", "mytarget")  # not arch_idx, not text
    assert resolve_sources(table, "mytarget", "all") == ("zorp_1", "quux-npu", "blarg")
    assert resolve_sources(table, "mytarget", "blarg,mytarget") == ("blarg",)  # never its own source
    assert resolve_sources(table, "mytarget", "none") == ()
    with pytest.raises(InputError, match="nope"):
        resolve_sources(table, "mytarget", "zorp_1,nope")
    with pytest.raises(InputError, match="not numeric"):
        resolve_sources(table, "note", "all")


def test_run_bench_python_api(tmp_path):
    table = read_table(_write_csv(tmp_path / "t.csv"), "nb201")
    res = run_bench(table, "mytarget", [10, 30], seeds=2, sources="all")
    assert list(res) == ["10", "30"]
    for row in res.values():
        assert {"spearman", "kendall", "acc10", "rmspe"} <= set(row) and row["seeds"] == 2
        assert 0.5 < row["spearman"] <= 1 and 0 <= row["acc10"] <= 1
        assert "per_seed" not in row
    # keep_seeds: each seed's metrics, in seed order, and the mean is theirs; seeds=1 gives per_seed[0] again
    kept = run_bench(table, "mytarget", [10], seeds=3, sources="all", keep_seeds=True)["10"]
    assert len(kept["per_seed"]) == 3 and kept["spearman"] == pytest.approx(np.mean([m["spearman"] for m in kept["per_seed"]]))
    assert kept["per_seed"][0] == run_bench(table, "mytarget", [10], seeds=1, sources="all", keep_seeds=True)["10"]["per_seed"][0]
    assert len({m["spearman"] for m in kept["per_seed"]}) == 3  # different draws
    with pytest.raises(InputError, match="shots"):
        run_bench(table, "mytarget", [10, 500], seeds=1)


def test_cli_bench_json_on_made_up_devices(tmp_path):
    path = _write_csv(tmp_path / "t.csv")
    r = run_cli("predictor", "bench", "--csv", str(path), "--space", "nb201", "--target", "mytarget",
                "--shots", "5,20", "--seeds", "2", "--sources", "zorp_1,blarg", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert list(out) == ["5", "20"]
    assert all({"spearman", "kendall", "acc10", "rmspe"} <= set(v) for v in out.values())
    r = run_cli("predictor", "bench", "--csv", str(path), "--space", "nb201", "--target", "mytarget",
                "--shots", "10", "--seeds", "1", "--sources", "none")
    assert r.returncode == 0, r.stderr
    assert "Spearman" in r.stdout and "sources: none" in r.stdout


def test_cli_bench_plot_draws_each_metric_against_shots(tmp_path):
    import xml.etree.ElementTree as ET

    path = _write_csv(tmp_path / "t.csv")
    svg = tmp_path / "curve.svg"
    r = run_cli("predictor", "bench", "--csv", str(path), "--space", "nb201", "--target", "mytarget",
                "--shots", "5,10,20", "--seeds", "2", "--json", "--plot", str(svg))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)  # --json stays clean: the plot's path goes to stderr
    assert f"plot: {svg}" in r.stderr
    ns = {"s": "http://www.w3.org/2000/svg"}
    root = ET.parse(svg).getroot()
    lines = {p.get("data-label"): p for p in root.iterfind("s:polyline", ns)}
    assert set(lines) == {"Spearman ρ", "Kendall τ", "±10% accuracy"}
    for label, key in (("Spearman ρ", "spearman"), ("Kendall τ", "kendall"), ("±10% accuracy", "acc10")):
        xs, ys = zip(*(map(float, p.split(",")) for p in lines[label].get("points").split()), strict=True)
        assert xs == tuple(sorted(xs)) and len(xs) == 3  # one point per shot count, left to right
        vals = [out[k][key] for k in ("5", "10", "20")]  # a higher value sits higher (smaller y)
        assert [a > b for a, b in zip(vals, vals[1:], strict=False)] == [ya < yb for ya, yb in zip(ys, ys[1:], strict=False)]
    assert [t.text for t in root.iterfind("s:text", ns)].count("10") >= 1  # the shot counts are the x ticks


@pytest.mark.parametrize("args, message", [
    (["--csv", "{missing}", "--target", "mytarget"], "no such file"),
    (["--target", "nothere"], "no target column 'nothere'"),
    (["--target", "note"], "not numeric"),
    (["--target", "mytarget", "--sources", "zorp_1,ghost"], "no source column 'ghost'"),
    (["--target", "mytarget", "--shots", "500"], "shots 500"),
    (["--target", "mytarget", "--shots", "ten"], "--shots"),
    (["--target", "mytarget", "--space", "fbnet"], "op_idx"),
    (["--target", "mytarget", "--space", "darts"], "unknown space"),
    (["--target", "mytarget", "--seeds", "0"], "seeds"),
    (["--target", "mytarget", "--plot", "out.png"], "ending in .svg"),
    (["--target", "mytarget", "--plot", "{missing}/curve.svg"], "does not exist"),
])
def test_cli_bench_bad_input_exits_2(tmp_path, capsys, args, message):
    path = _write_csv(tmp_path / "t.csv", n=60)
    base = {"--csv": str(path), "--space": "nb201", "--shots": "10"}
    merged = dict(base)
    it = iter(args)
    for flag in it:
        merged[flag] = next(it).format(missing=tmp_path / "missing.csv")
    argv = [x for kv in merged.items() for x in kv]
    code, _, stderr = _main(capsys, "predictor", "bench", *argv)
    assert code == 2, stderr
    assert message in stderr and "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1


def test_cli_bench_bad_arch_and_ragged_rows_exit_2(tmp_path, capsys):
    path = tmp_path / "bad.csv"
    path.write_text("arch_str,dev_a,dev_b\n|bogus~0|+|none~0|none~1|+|none~0|none~1|none~2|,1.0,2.0\n")
    argv = ["predictor", "bench", "--csv", str(path), "--space", "nb201", "--target", "dev_a", "--shots", "2"]
    code, _, stderr = _main(capsys, *argv)
    assert code == 2 and "row 0" in stderr
    path.write_text("arch_str,dev_a\nx,1,2\n")
    code, _, stderr = _main(capsys, *argv)
    assert code == 2 and "line 2" in stderr


@pytest.mark.skipif(not NB201_CSV.is_file(), reason="../shared/data is not here")
def test_real_nb201_small_scale_beats_ridge_baseline():
    table = read_table(NB201_CSV, "nb201")
    sources = "1080ti_1,1080ti_32,1080ti_256,silver_4114,pixel3,samsung_s7,titanx_1,titanx_32,titanx_256,gold_6240"
    ours = run_bench(table, "fpga", [10], seeds=2, sources=sources)["10"]
    ridge = run_bench(table, "fpga", [10], seeds=2, sources=sources,
                      make_model=lambda k, s: SourceRidgeRegressor())["10"]
    assert ours["spearman"] > 0.98 and ours["spearman"] > ridge["spearman"]
