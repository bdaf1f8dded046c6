"""The space-shaping strategies: progressive shrinking (AutoShrink) and two-stage search
(HURRICANE), on a synthetic problem whose answer is known."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import optuna
import pytest

from farm.ir.graph import Graph
from farm.zoo import nb201
from nas.objectives import Constraints
from nas.search import SearchConfig, search
from nas.strategies import ShrinkSampler, TwoStageSampler, constraints_of, option_effects

# Each nor_conv_1x1 buys a point of accuracy for free; nor_conv_3x3 costs a millisecond and
# buys nothing: the best cell under 1 ms is all 1x1 convs (accuracy 6).


class OpLatency:
    def predict_batch(self, space: str, archs: Sequence[str], graphs: Sequence[Graph]):
        return np.array([0.1 + nb201.ops_from_arch_str(a).count("nor_conv_3x3") for a in archs]), None


class OpAccuracy:
    def estimate(self, space: str, archs: Sequence[str]) -> np.ndarray:
        return np.array([nb201.ops_from_arch_str(a).count("nor_conv_1x1") for a in archs], dtype=float)


def _study(strategy: str, trials: int, seed: int = 0):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    res = search("nb201", latency=OpLatency(), accuracy=OpAccuracy(), config=SearchConfig(
        strategy=strategy, trials=trials, seed=seed, constraints=Constraints(max_latency_ms=1.0),
        storage=None))
    return res


def test_option_effects_recover_additive_effects():
    rng = np.random.default_rng(0)
    study = optuna.create_study(directions=["maximize", "minimize"])
    dist = optuna.distributions.CategoricalDistribution(["a", "b", "c"])
    ys = []
    for _ in range(200):
        x, y = rng.choice(["a", "b", "c"]), rng.choice(["a", "b", "c"])
        t = optuna.trial.create_trial(params={"x": x, "y": y}, distributions={"x": dist, "y": dist}, values=[0.0, 1.0])
        study.add_trial(t)
        ys.append({"a": 0.0, "b": 1.0, "c": 3.0}[x] + {"a": 0.0, "b": -2.0, "c": 0.0}[y])
    eff = option_effects(study.trials, ["x", "y"], np.array(ys), alpha=1e-6)
    assert eff["x"]["c"] - eff["x"]["a"] == pytest.approx(3.0, abs=1e-6)
    assert eff["y"]["b"] - eff["y"]["a"] == pytest.approx(-2.0, abs=1e-6)


def test_shrink_converges_on_the_cheap_accurate_options():
    res = _study("shrink", 480)
    assert res.best is not None and res.best.feasible and res.best.accuracy >= 5
    # what is left after the stages holds no 3x3 conv (it only ever costs) on most edges
    sampler = ShrinkSampler(stage_trials=20, constraints_func=constraints_of)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    for t in sorted(_completed(res), key=lambda t: t.number):
        study.add_trial(t)
    allowed = sampler.allowed(study)
    assert sum(len(v) for v in allowed.values()) < 6 * len(nb201.OPS)  # the space shrank
    assert sum("nor_conv_3x3" in v for v in allowed.values()) <= 3


def _completed(res):
    """The search's trials rebuilt from its candidates (the search keeps them on the study)."""
    from nas.params import choices, encode

    dists = {n: optuna.distributions.CategoricalDistribution(list(o)) for n, o in choices("nb201")}
    return [optuna.trial.create_trial(params=encode("nb201", c.arch), distributions=dists,
                                      values=[c.accuracy, c.latency_ms],
                                      user_attrs={"constraints": [c.latency_ms - 1.0]})
            for c in sorted(res.candidates, key=lambda c: c.trial or 0)]


def test_two_stage_drops_dominated_options_then_searches_what_is_left():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = TwoStageSampler(probe_trials=60, population_size=10, seed=0, constraints_func=constraints_of)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    lat, acc = OpLatency(), OpAccuracy()
    from nas.params import suggest

    for _ in range(160):
        t = study.ask()
        a = suggest(t, "nb201")
        ms, score = float(lat.predict_batch("nb201", [a], [])[0][0]), float(acc.estimate("nb201", [a])[0])
        t.set_user_attr("constraints", [ms - 1.0])
        study.tell(t, [score, ms])
    kept = sampler.kept(study)
    assert kept is not None
    assert all("nor_conv_3x3" not in opts and "nor_conv_1x1" in opts for opts in kept.values())
    stage2 = study.trials[60:]
    assert all(v in kept[k] for t in stage2 for k, v in t.params.items())
    best = max(t.values[0] for t in stage2 if t.values[1] <= 1.0)
    assert best == 6


@pytest.mark.parametrize("strategy", ["shrink", "two-stage"])
def test_space_shaping_strategies_are_reproducible_and_resumable(tmp_path, strategy):
    a = _study(strategy, 80, seed=3)
    b = _study(strategy, 80, seed=3)
    assert [c.arch for c in a.candidates] == [c.arch for c in b.candidates]
    url = f"sqlite:///{tmp_path / 'study.db'}"
    cfg = SearchConfig(strategy=strategy, trials=50, seed=1, constraints=Constraints(max_latency_ms=1.0), storage=url)
    first = search("nb201", latency=OpLatency(), accuracy=OpAccuracy(), config=cfg)
    second = search("nb201", latency=OpLatency(), accuracy=OpAccuracy(), config=cfg)
    assert first.trials == 50 and second.trials == 100 and second.new_trials == 50
