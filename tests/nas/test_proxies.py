"""Zero-cost proxies: what each one measures, determinism, the vote, and ProxyAccuracy as a
search's accuracy estimator. Small networks (NB201 with C=4, N=1) on scikit-learn's digits at
16×16 keep each network to a few hundredths of a second."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from farm.errors import InputError  # noqa: E402
from farm.ir.graph import Graph  # noqa: E402
from farm.zoo.nb201 import arch_str_from_ops, ops_from_arch_str  # noqa: E402
from nas.objectives import Constraints, find_accuracy_table  # noqa: E402
from nas.proxies import PROXIES, VOTE_OF, WORST, ProxyAccuracy, compute, pairwise_vote_agreement, synflow, vote_scores  # noqa: E402
from nas.search import SearchConfig, search  # noqa: E402

SMALL: dict[str, Any] = {"dataset": "digits", "input_size": 16, "batch_size": 16, "options": {"C": "4", "N": "1"}}
MIXED = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
CONV = arch_str_from_ops(["nor_conv_3x3"] * 6)
SKIP = arch_str_from_ops(["skip_connect"] * 6)
NONE = arch_str_from_ops(["none"] * 6)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Networks this small run fastest on one thread (and a busy 2-core machine punishes two)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def est() -> ProxyAccuracy:
    return ProxyAccuracy("synflow", **SMALL)


def test_every_proxy_scores_a_real_cell(est):
    v = est.values("nb201", [MIXED], list(PROXIES))[0]
    assert np.all(np.isfinite(v))
    assert v[list(PROXIES).index("params")] == sum(p.numel() for p in est.build("nb201", MIXED).parameters())


@pytest.mark.parametrize("name", list(PROXIES))
def test_convolutions_beat_a_cell_without_them(est, name):
    conv, skip, none = est.values("nb201", [CONV, SKIP, NONE], [name])[:, 0]
    assert conv > skip
    if name == "params":
        assert skip == none  # no weights in either cell
    else:
        assert skip > none  # the all-none network's output ignores its input: no signal at all
        assert none in (-np.inf, 0.0)


def test_shared_passes_give_each_proxy_its_own_value_and_leave_the_weights(est):
    batch = est.batch()
    together_module = est.build("nb201", MIXED)
    before = {k: v.clone() for k, v in together_module.named_parameters()}
    together = compute(together_module, batch, list(PROXIES))
    for k, v in together_module.named_parameters():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
        assert v.grad is None
    for name, fn in PROXIES.items():
        assert fn(est.build("nb201", MIXED), batch) == pytest.approx(together[name], rel=1e-9), name


def test_synflow_works_on_a_copy(est):
    m = est.build("nb201", CONV)
    bn = [x for x in m.modules() if isinstance(x, torch.nn.BatchNorm2d)]
    state = {k: v.clone() for k, v in m.state_dict().items()}
    synflow(m, est.batch())
    assert all(x.weight.dtype == torch.float32 for x in bn)
    for k, v in m.state_dict().items():
        torch.testing.assert_close(v, state[k], rtol=0, atol=0)


def test_scores_are_deterministic_and_leave_the_global_rng_alone():
    archs = [MIXED, CONV, arch_str_from_ops(["nor_conv_1x1", "avg_pool_3x3", "none", "skip_connect",
                                             "nor_conv_3x3", "nor_conv_1x1"])]
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    a = ProxyAccuracy("jacob_cov", **SMALL).estimate("nb201", archs)
    assert torch.equal(torch.random.get_rng_state(), state)
    b = ProxyAccuracy("jacob_cov", **SMALL).estimate("nb201", archs[::-1])[::-1]
    np.testing.assert_array_equal(a, b)
    c = ProxyAccuracy("jacob_cov", **{**SMALL, "seed": 1}).estimate("nb201", archs)
    assert not np.array_equal(a, c)  # the seed picks the weights and the batch


def test_a_network_without_signal_scores_worst(est):
    s = ProxyAccuracy("naswot", **SMALL).estimate("nb201", [NONE, SKIP])
    assert s[0] == WORST and np.isfinite(s[1]) and s[1] > WORST


def test_proxies_rank_trained_accuracy_on_a_spread_of_cells(est):
    try:
        path = find_accuracy_table("nb201")
    except InputError:
        pytest.skip("no NB201 accuracy table (../shared/data)")
    import csv

    from scipy.stats import spearmanr

    with open(path, newline="") as f:
        rows = sorted(((float(r["cifar10-test"]), r["arch_str"]) for r in csv.DictReader(f)), reverse=True)
    picked = [rows[i] for i in range(0, len(rows), len(rows) // 16)]  # top to bottom of the table
    acc = [a for a, _ in picked]
    v = est.values("nb201", [s for _, s in picked], ["synflow", "naswot"])
    assert spearmanr(v[:, 0], acc).statistic > 0.6
    assert spearmanr(v[:, 1], acc).statistic > 0.6


# ------------------------------------------------------------------------------------ the vote


def test_vote_scores_count_majority_wins_against_the_reference():
    values = np.array([[3.0, 3.0, 3.0], [1.0, 1.0, 1.0], [3.0, 0.0, 0.0], [3.0, 3.0, 0.0]])
    ref = np.array([[2.0, 2.0, 2.0]])
    s = vote_scores(values, ref)
    np.testing.assert_allclose(s, [1 + 1e-3, 0.0, 1e-3 / 3, 1 + 2e-3 / 3])
    assert vote_scores(np.array([[-np.inf] * 3]), ref)[0] == 0.0


def test_pairwise_agreement_is_the_papers_figure():
    rng = np.random.default_rng(0)
    acc = rng.normal(size=40)
    v = acc + rng.normal(scale=0.7, size=40)
    from scipy.stats import kendalltau

    assert pairwise_vote_agreement(v, acc) == pytest.approx((1 + kendalltau(v, acc).statistic) / 2)
    perfect = np.stack([acc, acc, -acc], axis=1)  # two of three agree: the majority is right
    assert pairwise_vote_agreement(perfect, acc) == 1.0
    assert pairwise_vote_agreement(-perfect, acc) == 0.0


def test_the_vote_does_not_depend_on_the_batch():
    archs = [MIXED, CONV, SKIP, arch_str_from_ops(["nor_conv_1x1"] * 3 + ["avg_pool_3x3"] * 3)]
    together = ProxyAccuracy("vote", reference=6, **SMALL).estimate("nb201", archs)
    one = ProxyAccuracy("vote", reference=6, **SMALL)
    alone = np.concatenate([one.estimate("nb201", [a]) for a in archs])
    np.testing.assert_array_equal(together, alone)
    assert together[1] > together[2]  # all 3x3 over all skip
    assert VOTE_OF == ("synflow", "jacob_cov", "snip")


# ------------------------------------------------------------------------------------ in a search


class OpsLatency:
    """0.5 ms plus 1 ms per 3x3 and 0.3 ms per 1x1 convolution of the cell."""

    def predict_batch(self, space: str, archs: Sequence[str], graphs: Sequence[Graph]):
        ops = [ops_from_arch_str(a) for a in archs]
        return np.array([0.5 + o.count("nor_conv_3x3") + 0.3 * o.count("nor_conv_1x1") for o in ops]), None


@pytest.mark.parametrize(("strategy", "proxy", "trials"), [("random", "synflow", 12), ("tpe", "vote", 5)])
def test_proxy_accuracy_drives_a_search(strategy, proxy, trials):
    acc = ProxyAccuracy(proxy, reference=6, **SMALL)
    res = search("nb201", latency=OpsLatency(), accuracy=acc,
                 config=SearchConfig(strategy=strategy, trials=trials, seed=0,
                                     constraints=Constraints(max_latency_ms=3.0)))
    assert res.new_trials == trials and res.best is not None
    feasible = [c for c in res.candidates if c.feasible]
    assert res.best.accuracy == max(c.accuracy for c in feasible)
    assert res.best.latency_ms <= 3.0
    again = ProxyAccuracy(proxy, reference=6, **SMALL)
    assert again.estimate("nb201", [res.best.arch])[0] == res.best.accuracy


def test_errors_name_what_is_wrong():
    with pytest.raises(InputError, match="unknown proxy 'zen'"):
        ProxyAccuracy("zen")
    with pytest.raises(InputError, match="no torch builder"):
        ProxyAccuracy("synflow", **SMALL).estimate("nosuchspace", ["x"])
    with pytest.raises(InputError, match="at least 2"):
        ProxyAccuracy("naswot", **{**SMALL, "batch_size": 1}).estimate("nb201", [MIXED])
    with pytest.raises(InputError, match="unknown dataset"):
        ProxyAccuracy("naswot", **{**SMALL, "dataset": "cifar10"}).estimate("nb201", [MIXED])
