"""Calibration machinery (NNLS, rank correlation, robust fit) and the shipped profiles
against the real NB201 measurements in ../shared/data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from farm.cli.sim import find_nb201_table
from farm.sim.calibrate import design_matrix, fit_kernel_costs, mape, nnls, predict, spearman
from farm.sim.profile import KernelCost, load_profile
from farm.zoo.nb201 import all_arch_strs, build_nb201

from ..conftest import run_cli


def test_nnls_matches_the_kkt_conditions():
    rng = np.random.default_rng(0)
    A, b = rng.standard_normal((40, 6)), rng.standard_normal(40)
    x = nnls(A, b)
    grad = A.T @ (A @ x - b)
    assert (x >= 0).all() and x.any() and not x.all()  # some constraints active, some not
    assert np.allclose(grad[x > 0], 0, atol=1e-8) and (grad[x == 0] >= -1e-8).all()
    x_true = np.array([1.0, 0.0, 2.0, 0.5, 0.0, 3.0])
    assert np.allclose(nnls(A, A @ x_true), x_true, atol=1e-9)


def test_spearman_and_mape():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9487, abs=1e-4)  # ties averaged
    assert mape([1.1, 0.9, 2.0], [1.0, 1.0, 1.0]) == pytest.approx(0.1)


def test_fit_recovers_known_costs_from_a_wrong_prior():
    """Simulate NB201 cells with known costs, fit from a prior that is off by 2x."""
    truth = load_profile("raspi4").model_copy(update={"kernels": {
        **load_profile("raspi4").kernels,
        "conv3x3": KernelCost(gmacs=3.0, overhead_us=25), "conv1x1": KernelCost(gmacs=1.5, gbs=3.0),
        "pool": KernelCost(gbs=1.0, overhead_us=12), "act": KernelCost(gbs=2.5, overhead_us=5)}})
    archs = list(all_arch_strs())
    picks = np.random.default_rng(0).choice(len(archs), 400, replace=False)
    X, cols = design_matrix([build_nb201(archs[i]) for i in picks], truth)
    y = predict(X, cols, truth)
    ok = y > 0.05  # skip the networks that fold to nothing
    wrong = truth.model_copy(update={"kernels": {k: KernelCost(gmacs=v.gmacs * 2, gbs=v.gbs * 2,
                                                               overhead_us=v.overhead_us * 2)
                                                 for k, v in truth.kernels.items()}})
    fitted = fit_kernel_costs(X[ok], y[ok], cols, wrong)
    pred = predict(X[ok], cols, fitted)
    assert mape(pred, y[ok]) < 0.01 and spearman(pred, y[ok]) > 0.999


@pytest.fixture(scope="module")
def nb201_table():
    try:
        return find_nb201_table()
    except Exception:
        pytest.skip("../shared/data/nb201-latency/latency_ms.csv is not here")


@pytest.mark.parametrize("profile", ["raspi4", "pixel3", "pixel2", "samsung_s7"])
def test_shipped_profiles_reproduce_real_nb201_latencies(nb201_table, profile):
    """On 600 random cells not used for fitting (the full 14,625 are in the bench)."""
    p = run_cli("sim", "calibrate", "--profile", profile, "--limit", "600", "--data", str(nb201_table), "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    (r,) = [x for x in json.loads(p.stdout)["profiles"] if x["target"].startswith("nb201")]
    assert r["n_fit"] <= 1000 and r["n_eval"] == 600
    assert r["spearman"] >= 0.90 and r["mape"] <= 0.15, r
