"""`hwfarm nas search`: strategies over a space with an injected cost model, constraints, the
Pareto front, study storage, the run directory, and validation on the host CPU."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import onnx
import pytest

from farm.errors import InputError
from farm.ir.graph import Graph
from farm.zoo import fbnet, nb201
from farm.zoo.spaces import get_space
from nas.objectives import Candidate, Constraints, Evaluator, PredictorLatencyModel, TableAccuracy
from nas.params import choices, decode, encode
from nas.report import COLUMNS, write_run
from nas.search import SearchConfig, SearchResult, pareto_front, pick_top, search, validate
from nas.strategies import STRATEGIES, RegularizedEvolutionSampler

from ..conftest import REGISTRY, run_cli

_SCORE = {"none": 0.0, "skip_connect": 1.0, "avg_pool_3x3": 0.5, "nor_conv_1x1": 2.0, "nor_conv_3x3": 3.0,
          "skip": 0.0, "k3_e1": 1.0, "k3_e1_g2": 0.8, "k3_e3": 2.0, "k3_e6": 3.0, "k5_e1": 1.2, "k5_e1_g2": 1.0,
          "k5_e3": 2.3, "k5_e6": 3.4}


class FakeLatency:
    """Latency from MACs (ms = 0.5 + MMACs / 20), energy twice that; counts its calls."""

    def __init__(self, *, energy: bool = True):
        self.calls: list[int] = []
        self.energy = energy

    def predict_batch(self, space: str, archs: Sequence[str], graphs: Sequence[Graph]):
        self.calls.append(len(archs))
        lat = np.array([0.5 + g.macs / 20e6 for g in graphs])
        return lat, (2 * lat if self.energy else None)


class FakeAccuracy:
    """More and bigger ops score higher, with a per-position twist so ties are rare."""

    def estimate(self, space: str, archs: Sequence[str]) -> np.ndarray:
        out = []
        for a in archs:
            ops = nb201.ops_from_arch_str(a) if space == "nb201" else [fbnet.OPS[i] for i in fbnet.parse_arch(a)]
            out.append(50 + sum(_SCORE[o] * (1 + 0.01 * i) for i, o in enumerate(ops)))
        return np.array(out)


def _run(strategy: str = "random", *, trials: int = 60, seed: int = 0, space: str = "nb201", **kw) -> SearchResult:
    cons = kw.pop("constraints", Constraints(max_latency_ms=4.0))
    cfg = SearchConfig(strategy=strategy, trials=trials, seed=seed, constraints=cons,
                       population_size=kw.pop("population_size", 20), **kw)
    return search(space, latency=FakeLatency(), accuracy=FakeAccuracy(), config=cfg)


# ---------------------------------------------------------------------------- parameters and the front


@pytest.mark.parametrize("space", ["nb201", "fbnet"])
def test_params_round_trip_every_choice(space):
    sp = get_space(space)
    rng = np.random.default_rng(0)
    for _ in range(20):
        arch = sp.sample(rng)
        values = encode(space, arch)
        assert list(values) == [n for n, _ in choices(space)]
        assert decode(space, values) == arch
    assert len(choices(space)) == (6 if space == "nb201" else fbnet.NUM_LAYERS)


def _c(arch: str, acc: float, lat: float, feasible: bool = True) -> Candidate:
    return Candidate(arch, acc, lat, None, 1.0, 1.0, 1, 1, feasible)


def test_pareto_front_keeps_feasible_non_dominated_points_by_latency():
    cs = [_c("a", 70, 1.0), _c("b", 80, 2.0), _c("c", 75, 2.5), _c("d", 90, 3.0, feasible=False),
          _c("e", 85, 4.0), _c("f", 85, 4.0), _c("g", 60, 0.5)]
    assert [c.arch for c in pareto_front(cs)] == ["g", "a", "b", "e"]


# ---------------------------------------------------------------------------- strategies


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_returns_a_feasible_best_under_a_constraint(strategy):
    res = _run(strategy, trials=80)
    assert res.trials == 80 and res.new_trials == 80
    assert res.best is not None and res.best.feasible and res.best.latency_ms <= 4.0
    assert res.pareto and all(c.feasible and c.latency_ms <= 4.0 for c in res.pareto)
    feasible = [c for c in res.candidates if c.feasible]
    assert res.best.accuracy == max(c.accuracy for c in feasible)
    assert any(not c.feasible for c in res.candidates)  # the constraint does cut something
    for c in res.pareto:  # nothing feasible dominates a front point
        assert not any(o.accuracy > c.accuracy and o.latency_ms < c.latency_ms for o in feasible)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_each_seed_gives_the_same_search(strategy):
    a, b, other = _run(strategy, seed=3), _run(strategy, seed=3), _run(strategy, seed=4)
    assert [c.arch for c in a.candidates] == [c.arch for c in b.candidates]
    assert a.best == b.best
    assert [c.arch for c in a.candidates] != [c.arch for c in other.candidates]


def test_guided_strategies_beat_random_on_average():
    """Evolution and NSGA-II find a better feasible best than random with the same budget."""
    def mean_best(strategy: str) -> float:
        return float(np.mean([_run(strategy, trials=150, seed=s).best.accuracy for s in range(3)]))  # type: ignore[union-attr]

    rnd = mean_best("random")
    assert mean_best("evolution") > rnd
    assert mean_best("nsga2") >= rnd


def test_evolution_mutates_one_choice_of_a_tournament_winner():
    import optuna

    sampler = RegularizedEvolutionSampler(population_size=10, tournament_size=3, seed=0)
    study = optuna.create_study(sampler=sampler, directions=["maximize", "minimize"])
    seen: list[dict[str, str]] = []
    acc = FakeAccuracy()
    for _ in range(40):
        t = study.ask()
        arch = decode("nb201", {n: t.suggest_categorical(n, list(o)) for n, o in choices("nb201")})
        seen.append(encode("nb201", arch))
        study.tell(t, [float(acc.estimate("nb201", [arch])[0]), 1.0])
    for i in range(10, 40):  # every child differs from a member of its population (its parent) in one choice
        pop = seen[i - 10:i]
        assert any(sum(seen[i][k] != p[k] for k in p) == 1 for p in pop), i


def test_fbnet_search_returns_valid_architectures():
    res = _run("evolution", space="fbnet", trials=40, constraints=Constraints(max_latency_ms=30))
    assert res.best is not None
    assert fbnet.arch_str(fbnet.parse_arch(res.best.arch)) == res.best.arch
    assert res.best.macs > 0 and res.best.sram_kb > 0 and res.best.flash_kb > 0


# ---------------------------------------------------------------------------- cost, constraints, storage


def test_evaluator_prices_each_batch_in_one_call_and_each_arch_once():
    cost = FakeLatency()
    ev = Evaluator(get_space("nb201"), latency=cost, accuracy=FakeAccuracy(),
                   constraints=Constraints(max_sram_kb=1e9))
    archs = [get_space("nb201").sample(np.random.default_rng(i)) for i in range(8)]
    out = ev.evaluate(archs + archs[:3])
    assert len(out) == 11 and cost.calls == [8]
    ev.evaluate(archs[2:6])
    assert cost.calls == [8]  # all cached
    g = nb201.build_nb201(archs[0])
    assert out[0].macs == g.macs and out[0].params == g.params and out[0].energy_mj == 2 * out[0].latency_ms


class _FakeBundle:
    """What PredictorLatencyModel reads of a DevicePredictor: a graph-level model of nb201
    and fbnet, no energy model."""

    energy = None
    spaces = {"nb201": object(), "fbnet": object()}

    def __init__(self):
        self.asked: list[tuple[str, list[str]]] = []

    def predict_archs(self, archs, *, space):
        self.asked.append((space, list(archs)))
        return np.tile(np.array([[0.9, 1.0, 1.1]]), (len(archs), 1))

    def predict_many(self, models, *, space=None):
        raise AssertionError("the fast path must not price graphs one kernel at a time")


def test_predictor_cost_uses_the_bundles_batched_space_model():
    b = _FakeBundle()
    cost = PredictorLatencyModel(b)
    archs = [get_space("fbnet").sample(np.random.default_rng(i)) for i in range(5)]
    lat, en = cost.predict_batch("fbnet", archs, [])
    assert en is None and list(lat) == [1.0] * 5
    assert b.asked == [("fbnet", [fbnet.op_idx_str(fbnet.parse_arch(a)) for a in archs])]  # the model's spelling
    res = search("nb201", latency=cost, accuracy=FakeAccuracy(), config=SearchConfig(trials=64, batch=32),
                 energy=FakeLatency())
    assert res.trials == 64 and len(b.asked) == 3  # one call per batch
    # no graph was built to price them; the reported ones get the graph's figures and energy afterwards
    reported = [*res.pareto, res.best]
    assert all(c is not None and c.macs and c.sram_kb and c.energy_mj for c in reported)
    assert any(c.macs is None and c.energy_mj is None for c in res.candidates)
    mem = search("nb201", latency=cost, accuracy=FakeAccuracy(),
                 config=SearchConfig(trials=32, constraints=Constraints(max_sram_kb=300)))
    assert all(c.sram_kb is not None and c.feasible == (c.sram_kb <= 300) for c in mem.candidates)
    with pytest.raises(InputError, match="no energy"):
        search("nb201", latency=cost, accuracy=FakeAccuracy(),
               config=SearchConfig(trials=4, constraints=Constraints(max_energy_mj=1.0)))


def test_infeasible_constraints_say_how_close_the_search_came():
    res = _run("random", trials=30, constraints=Constraints(max_latency_ms=0.01, max_sram_kb=100000))
    assert res.best is None and res.pareto == () and res.to_json()["best"] is None
    msg = res.infeasible_message()
    assert "none of 30 candidates" in msg and "latency ≤ 0.01 ms" in msg and "lowest latency seen" in msg
    assert "SRAM" in msg


def test_storage_url_resumes_the_same_study(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    first = _run("evolution", trials=12, storage=url, study_name="s", population_size=8)
    second = _run("evolution", trials=8, storage=url, study_name="s", population_size=8)  # evolves the stored ones
    assert (first.trials, second.trials, second.new_trials) == (12, 20, 8)
    assert [c.arch for c in second.candidates][:len(first.candidates)] == [c.arch for c in first.candidates]
    assert second.best is not None and first.best is not None and second.best.accuracy >= first.best.accuracy
    # scored without a memory limit (no graphs built), resumed under one: the stored trials get their figures now
    cost = PredictorLatencyModel(_FakeBundle())
    plain = search("nb201", latency=cost, accuracy=FakeAccuracy(), config=SearchConfig(trials=10, storage=url))
    assert any(c.sram_kb is None for c in plain.candidates)
    mem = search("nb201", latency=cost, accuracy=FakeAccuracy(),
                 config=SearchConfig(trials=0, storage=url, constraints=Constraints(max_sram_kb=300)))
    assert mem.trials == 10 and all(c.sram_kb is not None for c in mem.candidates)
    assert [c.feasible for c in mem.candidates] == [c.sram_kb <= 300 for c in mem.candidates]  # type: ignore[operator]
    with pytest.raises(InputError, match="searches space nb201, not fbnet"):
        _run("evolution", trials=2, storage=url, study_name="s", space="fbnet")


# ---------------------------------------------------------------------------- outputs


def test_json_contract_and_run_directory(tmp_path):
    res = _run("nsga2", trials=50)
    doc = res.to_json()
    assert {"best", "pareto", "trials", "seconds", "candidates_per_s", "validated"} <= set(doc)
    assert {"arch", "accuracy", "latency_ms", "energy_mj", "sram_kb", "flash_kb", "macs", "params",
            "feasible"} <= set(doc["best"])
    assert doc["trials"] == 50 and doc["candidates_per_s"] > 0 and doc["validated"] == []
    assert [p["arch"] for p in doc["pareto"]] == [c.arch for c in res.pareto]
    json.dumps(doc)
    written = write_run(res, tmp_path / "run")
    for name in ("pareto.csv", "pareto.json", "best.json", "best.onnx", "pareto.png", "candidates.csv"):
        assert (tmp_path / "run" / name).is_file() and written[name] == tmp_path / "run" / name
    lines = (tmp_path / "run" / "pareto.csv").read_text().splitlines()
    assert lines[0].split(",") == list(COLUMNS) and len(lines) == 1 + len(res.pareto)
    assert json.loads((tmp_path / "run" / "best.json").read_text())["arch"] == res.best.arch  # type: ignore[union-attr]
    model = onnx.load(tmp_path / "run" / "best.onnx")
    onnx.checker.check_model(model)
    assert (tmp_path / "run" / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_table_accuracy_reads_nb201s_table(tmp_path):
    a = nb201.arch_str_from_ops(["nor_conv_3x3"] * 6)
    path = tmp_path / "acc.csv"
    path.write_text(f"arch_idx,arch_str,cifar10-test\n0,{a},94.1\n")
    t = TableAccuracy.from_csv(path)
    assert t.estimate("nb201", [a]).tolist() == [94.1]
    with pytest.raises(InputError, match="no column 'imagenet-test'"):
        TableAccuracy.from_csv(path, column="imagenet-test")
    with pytest.raises(InputError, match="no architecture"):
        t.estimate("nb201", [nb201.arch_str_from_ops(["none"] * 6)])


# ---------------------------------------------------------------------------- closing the loop


def test_validate_measures_the_top_candidates_on_the_host_cpu(tmp_path):
    import farm

    reg = tmp_path / "devices.yaml"
    reg.write_text(REGISTRY)
    res = _run("random", trials=40)
    top = pick_top(res, 2)
    fast = farm.Policy(warmup=2, warmup_s=0, min_runs=5, min_time_s=0, max_runs=20, max_time_s=2)
    out = validate(res, 2, device="host-cpu", workdir=tmp_path / "validate", registry=reg, db=tmp_path / "h.db",
                   policy=fast, rounds=1, max_rounds=1)
    assert [v.arch for v in out.validated] == [c.arch for c in top]
    assert [v.predicted_ms for v in out.validated] == [c.latency_ms for c in top]
    assert all(v.measured_ms is not None and v.measured_ms > 0 and v.error is None for v in out.validated)
    assert len(list((tmp_path / "validate").glob("*.onnx"))) == 2
    doc = out.to_json()["validated"]
    assert {"arch", "predicted_ms", "measured_ms"} <= set(doc[0]) and out.device == "host-cpu"
    write_run(out, tmp_path / "run")
    assert json.loads((tmp_path / "run" / "validated.json").read_text())[1]["arch"] == top[1].arch
    assert "measured_ms" in (tmp_path / "run" / "pareto.csv").read_text().splitlines()[0]


# ---------------------------------------------------------------------------- the command


@pytest.mark.parametrize("args, says", [
    (["--space", "vit"], "--space 'vit': expected one of nb201, fbnet"),
    (["--space", "nb201", "--strategy", "annealing"], "--strategy 'annealing': expected one of"),
    (["--space", "nb201", "--accuracy", "oracle"], "--accuracy 'oracle': expected one of"),
    (["--space", "nb201", "--rounds", "0"], "--rounds 0: must be at least 1"),
    (["--space", "nb201", "--accuracy", "proxy", "--data", "cifar10"], "unknown dataset 'cifar10'"),
    (["--space", "nb201", "--storage", "study.db"], "expected an Optuna storage URL"),
    (["--space", "fbnet"], "space fbnet has no accuracy table"),
    (["--space", "nb201"], "hwfarm predictor train --device sim-raspi4"),
])
def test_cli_refuses_what_it_cannot_do_in_one_line(tmp_path, args, says):
    r = run_cli("--db", str(tmp_path / "none.db"), "nas", "search", "--device", "sim-raspi4", *args)
    assert r.returncode == 2, r.stderr
    assert says in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


@pytest.fixture(scope="module")
def sim_bundle(tmp_path_factory):
    """A small sim-raspi4 dataset and a bundle with a graph-level nb201 model (~20 s)."""
    import farm
    from farm.formats.onnx_export import graph_to_onnx
    from farm.registry.spec import load_registry
    from farm.store.sqlite import SqliteStore
    from predictors.api import train

    from ..predictors.test_kernel_predictor import kernel_graphs

    d = tmp_path_factory.mktemp("searchfarm")
    (d / "devices.yaml").write_text("devices:\n  - name: sim-raspi4\n    url: sim://raspi4?seed=0\n")
    files = []
    for g in kernel_graphs(100, seed=5):
        path = d / "kernels" / f"{g.name}.onnx"
        path.parent.mkdir(exist_ok=True)
        onnx.save(graph_to_onnx(g), path)
        files.append(path)
    policy = farm.Policy(warmup=2, warmup_s=0, min_runs=10, min_time_s=0, max_runs=40)
    res = farm.profile(files, device="sim-raspi4", registry=d / "devices.yaml", db=d / "farm.db", policy=policy)
    assert all(r.ok for r in res)
    spec = load_registry(d / "devices.yaml").get("sim-raspi4")
    train(SqliteStore(d / "farm.db"), spec, db=d / "farm.db", spaces=("nb201",), distill=120)
    return d


def test_cli_searches_with_a_trained_bundle_and_validates_on_the_device(sim_bundle, tmp_path):
    from nas.objectives import find_accuracy_table

    try:
        find_accuracy_table("nb201")
    except InputError:
        pytest.skip("no NB201 accuracy table (../shared/data/nb201-accuracy)")
    d = sim_bundle
    r = run_cli("--registry", str(d / "devices.yaml"), "--db", str(d / "farm.db"), "nas", "search", "--space", "nb201",
                "--device", "sim-raspi4", "--max-latency-ms", "12", "--trials", "120", "--strategy", "nsga2",
                "--validate", "2", "--out", str(tmp_path / "run"), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout.strip().splitlines()[-1])
    assert doc["trials"] == 120 and doc["fast_path"] is True and doc["device"] == "sim-raspi4"
    best = doc["best"]
    assert best["feasible"] and best["latency_ms"] <= 12 and best["energy_mj"] > 0 and best["sram_kb"] > 0
    assert [v["arch"] for v in doc["validated"]] == [c["arch"] for c in sorted(
        doc["pareto"], key=lambda c: (-c["accuracy"], c["latency_ms"]))][:2]
    assert all(v["measured_ms"] > 0 and v["predicted_ms"] > 0 for v in doc["validated"])
    assert "Pareto front" in r.stderr and "measured within ±10% of predicted" in r.stderr
    for name in ("pareto.csv", "pareto.json", "best.json", "best.onnx", "pareto.png", "validated.json"):
        assert (tmp_path / "run" / name).is_file()
    bad = run_cli("--registry", str(d / "devices.yaml"), "--db", str(d / "farm.db"), "nas", "search", "--space",
                  "nb201", "--device", "sim-raspi4", "--max-sram-kb", "1", "--trials", "30",
                  "--out", str(tmp_path / "bad"))  # the input image alone takes 12 KB
    assert bad.returncode == 2 and "met the constraints (SRAM ≤ 1 KB): lowest SRAM seen" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr
