"""The MobileNetV3 / Once-for-All space: sampling, the spelling, Optuna parameters under every
sampler, graph sizes against published figures, the torch module against the graph, and the
per-block latency table against the predictor it tabulates."""

from __future__ import annotations

import copy
import io
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from farm.errors import InputError
from farm.ir.graph import Graph
from farm.sim.model import simulate
from farm.sim.profile import load_profile
from farm.zoo import mbv3
from farm.zoo.mbv3 import MBV3Arch, MBV3Space, arch_str, parse_arch
from farm.zoo.spaces import SPACES, SearchSpace
from nas.lut import KernelLUTLatencyModel
from nas.objectives import PredictorLatencyModel
from predictors.kernels import FusionRules, detect_kernels

SMALL = "w1.0-r128-s1:k3e3,k5e4-s2:k7e6,k3e3-s3:k5e3,k3e6,k7e4-s4:k3e4,k5e3-s5:k7e6,k3e3"
# MobileNetV3-Large (Howard et al., ICCV 2019, Table 1) in the space: its kernels and
# strides, expand ratios rounded to the space's (its 2.5 and 2.3 → 3): Table 3 gives
# 219 M multiply-adds and 5.4 M parameters for MobileNetV3-Large 1.0 at 224.
MBV3_LARGE = "w1.0-r224-s1:k3e4,k3e3-s2:k5e3,k5e3,k5e3-s3:k3e6,k3e3,k3e3,k3e3-s4:k3e6,k3e6-s5:k5e6,k5e6,k5e6"


def _uniform(width: float, res: int, depth: int, k: int, e: int) -> str:
    return arch_str(MBV3Arch(width, res, tuple(tuple((k, e) for _ in range(depth)) for _ in mbv3.STAGES)))


@pytest.fixture
def registered(monkeypatch):
    space = MBV3Space()
    monkeypatch.setitem(SPACES, "mbv3", space)
    return space


# ---------------------------------------------------------------------------- sampling and spelling


def test_space_samples_distinct_valid_canonical_architectures():
    space = MBV3Space()
    assert isinstance(space, SearchSpace) and space.name == "mbv3"
    assert space.size == 2 * 7 * (9 ** 2 + 9 ** 3 + 9 ** 4) ** 5
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(200)]
    assert len(set(archs)) == 200 and all(space.resolve(a) == a for a in archs)
    assert space.sample(np.random.default_rng(3)) == space.sample(np.random.default_rng(3))
    parsed = [parse_arch(a) for a in archs]
    assert {p.width for p in parsed} == set(mbv3.WIDTHS) and {p.resolution for p in parsed} == set(mbv3.RESOLUTIONS)
    assert {d for p in parsed for d in p.depths} == set(mbv3.DEPTHS)
    assert {b for p in parsed for s in p.stages for b in s} == {(k, e) for k in mbv3.KERNELS for e in mbv3.EXPANDS}


def test_space_passes_the_search_space_conformance_suite():
    from farm.testing.space import check_space

    check_space(MBV3Space)


def test_spelling_round_trips_and_resolve_normalizes():
    rng = np.random.default_rng(1)
    for _ in range(50):
        a = parse_arch(MBV3Space().sample(rng))
        assert parse_arch(arch_str(a)) == a
    assert arch_str(parse_arch(SMALL)) == SMALL
    loose = " w1-r128 - s1:k3e3, k5e4-s2:k7e6,k3e3-s3:k5e3,k3e6,k7e4-s4:k3e4,k5e3-s5:k7e6,k3e3 "
    assert MBV3Space().resolve(loose) == SMALL


@pytest.mark.parametrize("spec, says", [
    ("w1.0-r128-s1:k3e3,k3e3", "expected 7 '-'-separated parts"),
    ("1.0-r128-s1:k3e3,k3e3-s2:k3e3,k3e3-s3:k3e3,k3e3-s4:k3e3,k3e3-s5:k3e3,k3e3", "width 'w1.0'"),
    ("w0.5-r128-s1:k3e3,k3e3-s2:k3e3,k3e3-s3:k3e3,k3e3-s4:k3e3,k3e3-s5:k3e3,k3e3", "width multiplier 0.5"),
    ("w1.0-r130-s1:k3e3,k3e3-s2:k3e3,k3e3-s3:k3e3,k3e3-s4:k3e3,k3e3-s5:k3e3,k3e3", "resolution 130"),
    ("w1.0-r128-s1:k3e3-s2:k3e3,k3e3-s3:k3e3,k3e3-s4:k3e3,k3e3-s5:k3e3,k3e3", "stage 1: depth 1"),
    ("w1.0-r128-s1:k3e3,k3e3-s2:k3e3,k3e3,k3e3,k3e3,k3e3-s3:k3e3,k3e3-s4:k3e3,k3e3-s5:k3e3,k3e3", "stage 2: depth 5"),
    ("w1.0-r128-s1:k3e3,k3e3-s2:k3e3,k9e3-s3:k3e3,k3e3-s4:k3e3,k3e3-s5:k3e3,k3e3", "stage 2 block 2: k9e3"),
    ("w1.0-r128-s1:k3e3,k3e3-s2:k3e3,k3e3-s3:k3e5,k3e3-s4:k3e3,k3e3-s5:k3e3,k3e3", "stage 3 block 1: k3e5"),
    ("w1.0-r128-s1:k3e3,k3e3-s3:k3e3,k3e3-s2:k3e3,k3e3-s4:k3e3,k3e3-s5:k3e3,k3e3", "stage 2 should read"),
    ("w1.0-r128-s1:k3e3,k3x3-s2:k3e3,k3e3-s3:k3e3,k3e3-s4:k3e3,k3e3-s5:k3e3,k3e3", "block 'k3x3'"),
])
def test_bad_spellings_say_what_is_wrong(spec, says):
    space = MBV3Space()
    with pytest.raises(InputError, match="MobileNetV3 architecture") as err:
        space.resolve(spec)
    assert says in str(err.value)
    for call in (space.to_graph, space.to_params, space.blocks):
        with pytest.raises(InputError):
            call(spec)


def test_resolve_an_index_through_a_table(tmp_path: Path):
    table = tmp_path / "t.csv"
    table.write_text(f'arch_idx,arch\n3,"{SMALL}"\n4,w9-r1\n')  # the spelling has commas: quoted
    space = MBV3Space()
    assert space.resolve("3", table=table) == SMALL
    with pytest.raises(InputError, match="needs a table"):
        space.resolve("3")
    with pytest.raises(InputError, match="arch_idx 4"):
        space.resolve("4", table=table)
    with pytest.raises(InputError, match="no architecture with arch_idx 5"):
        space.resolve("5", table=table)


# ---------------------------------------------------------------------------- Optuna parameters


def test_params_round_trip_and_ignore_inactive_slots():
    space = MBV3Space()
    params = space.params()
    names = [n for n, _ in params]
    assert len(names) == len(set(names)) == 2 + 5 * (1 + 2 * 4)
    assert all(isinstance(o, str | int | float | bool) for _, opts in params for o in opts)
    rng = np.random.default_rng(2)
    for _ in range(30):
        a = space.sample(rng)
        values = space.to_params(a)
        assert list(values) == names and space.from_params(values) == a
        d1 = values["s1_depth"]
        if d1 < 4:  # a slot past the stage's depth does not change the architecture
            values[f"s1_b{d1 + 1}_k"] = 7 if values[f"s1_b{d1 + 1}_k"] != 7 else 5
            assert space.from_params(values) == a
    with pytest.raises(InputError, match="no value for 'resolution'"):
        space.from_params({k: v for k, v in space.to_params(SMALL).items() if k != "resolution"})
    with pytest.raises(InputError, match="resolution 100"):
        space.from_params({**space.to_params(SMALL), "resolution": 100})


@pytest.mark.parametrize("strategy", ["random", "tpe", "nsga2", "evolution"])
def test_every_optuna_sampler_drives_the_space(registered, strategy):
    import optuna

    from nas.params import choices, decode, encode, suggest
    from nas.strategies import make_sampler

    assert choices("mbv3") == registered.params()
    assert decode("mbv3", encode("mbv3", SMALL)) == SMALL
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=make_sampler(strategy, seed=0, population_size=8),
                                directions=["maximize", "minimize"])
    seen = []
    for _ in range(12):
        t = study.ask()
        a = suggest(t, "mbv3")
        seen.append(a)
        t.set_user_attr("constraints", [])
        g = parse_arch(a)
        study.tell(t, [float(sum(e for s in g.stages for _, e in s)), float(g.resolution)])
    assert all(registered.resolve(a) == a for a in seen) and len(set(seen)) > 6


# ---------------------------------------------------------------------------- graphs


def test_graph_sizes_match_published_figures():
    space = MBV3Space()
    largest, smallest = space.to_graph(_uniform(1.0, 224, 4, 7, 6)), space.to_graph(_uniform(1.0, 224, 2, 3, 3))
    # the w1.0 space at 224: 566 M MACs / 7.7 M params for the largest sub-network (every stage
    # 4 blocks of k7e6, ~0.6 G as OFA's largest), 121 M for the smallest (2 blocks of k3e3)
    assert 540e6 < largest.macs < 600e6 and 7.5e6 < largest.params < 8.0e6
    assert 100e6 < smallest.macs < 150e6
    assert space.to_graph(_uniform(1.0, 128, 2, 3, 3)).macs < 45e6  # 41.5 M: the whole space's floor
    assert space.to_graph(_uniform(1.2, 224, 4, 7, 6)).macs > largest.macs
    large = space.to_graph(MBV3_LARGE)
    assert large.macs == pytest.approx(219e6, rel=0.10) and large.params == pytest.approx(5.4e6, rel=0.10)
    assert large.outputs[0].shape == (1, 1000) and large.inputs[0].shape == (1, 3, 224, 224)
    ops = large.op_counts()
    assert ops["HardSigmoid"] == ops["Mul"] == 8 and ops["GlobalAveragePool"] == 9  # 8 SE blocks + the head's pool
    w12 = space.to_graph(_uniform(1.2, 128, 2, 3, 3))  # OFA's w1.2 widths: make_divisible(c · 1.2, 8)
    width = {n.name: n.outputs[0].shape[1] for n in w12.nodes if n.op == "Conv"}
    assert [width[f"s{i}.b1.project.conv"] for i in range(1, 6)] == [32, 48, 96, 136, 192]
    assert (width["stem.conv"], width["first.project.conv"], width["head.expand.conv"],
            width["head.mix.conv"]) == (24, 24, 1152, 1536)


def test_the_graph_exports_to_onnx_that_runs():
    import onnxruntime as ort

    from farm.formats.onnx import graph_from_onnx
    from farm.formats.onnx_export import graph_to_onnx

    g = MBV3Space().to_graph(SMALL)
    model = graph_to_onnx(g)
    back = graph_from_onnx(model)
    assert (back.macs, back.params, back.op_counts()) == (g.macs, g.params, g.op_counts())
    hsig = next(n for n in model.graph.node if n.op_type == "HardSigmoid")
    assert {a.name: round(a.f, 4) for a in hsig.attribute} == {"alpha": 0.1667, "beta": 0.5}  # torch's, not ONNX's default
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (out,) = sess.run(None, {"input": np.zeros((1, 3, 128, 128), dtype=np.float32)})
    assert out.shape == (1, 1000) and np.all(np.isfinite(out))


def _all_rules() -> list[FusionRules]:
    from predictors.runtimes import RUNTIME_FUSION, dedupes, folds_constants, fusion_defaults

    out = [FusionRules(fusion_defaults(rt), folds_constants(rt), dedupe=dedupes(rt)) for rt in RUNTIME_FUSION]
    for path in sorted((Path(mbv3.__file__).parents[1] / "sim" / "profiles").glob("*.yaml")):
        p = load_profile(path.stem)
        out.append(FusionRules(tuple(tuple(r) for r in p.fusion), p.fold_constants))
    return out


def test_the_graph_is_its_blocks_kernel_for_kernel_under_every_fusion_rule():
    """What a per-block table relies on: the kernels of the full graph are, in order, the
    kernels of each block built alone (same types, shapes, fused ops)."""
    from predictors.features import FEATURES, feature_row

    def sig(g: Graph, rules: FusionRules) -> list[tuple[str, tuple[float, ...]]]:
        return [(k.type, tuple(feature_row(k, k.type if k.type in FEATURES else "fallback")))
                for k in detect_kernels(g, rules)]

    space = MBV3Space()
    rng = np.random.default_rng(4)
    archs = [space.sample(rng) for _ in range(2)] + [_uniform(1.2, 224, 4, 7, 6)]
    graphs = {a: space.to_graph(a) for a in archs}
    for rules in _all_rules():
        for a in archs:
            whole = sig(graphs[a], rules)
            parts = [s for b in space.blocks(a) for s in sig(space.block_graph(b), rules)]
            assert whole == parts, rules
    g = graphs[archs[0]]
    assert g.macs == sum(space.block_graph(b).macs for b in space.blocks(archs[0]))


# ---------------------------------------------------------------------------- the torch module


def _export(module, res: int) -> Graph:
    import onnx
    import torch

    from farm.formats.onnx import graph_from_onnx

    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        # BN kept (PRESERVE in eval mode), so parameters compare one for one
        torch.onnx.export(module.eval(), (torch.zeros(1, 3, res, res),), buf, dynamo=False, external_data=False,
                          opset_version=17, training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
    return graph_from_onnx(onnx.load_from_string(buf.getvalue()))


def _layers(g: Graph) -> list[tuple[str, tuple[int, ...], int, int]]:
    return sorted((n.op, n.outputs[0].shape, n.macs, n.params) for n in g.nodes)


def test_torch_module_exports_to_the_graph_ir():
    from nas.modules import build_module

    arch = "w1.2-r128-s1:k3e3,k5e4-s2:k7e6,k3e3,k5e4-s3:k5e3,k3e6-s4:k3e4,k5e3,k7e6,k3e3-s5:k7e6,k3e3"
    module = build_module(f"mbv3:{arch}", num_classes=1000, in_channels=3, input_size=128)
    got, ref = _export(module, 128), MBV3Space().to_graph(arch)
    assert (got.macs, got.params) == (ref.macs, ref.params)
    assert got.op_counts() == ref.op_counts() and _layers(got) == _layers(ref)


def test_torch_module_runs_at_any_input_size_and_channels():
    import torch

    from nas.modules import build_module

    m = build_module(f"mbv3:{SMALL}", num_classes=10, in_channels=1, input_size=32)
    assert m(torch.zeros(2, 1, 32, 32)).shape == (2, 10)
    assert m(torch.zeros(1, 1, 57, 57)).shape == (1, 10)
    with pytest.raises(InputError, match="at least 32"):
        build_module(f"mbv3:{SMALL}", num_classes=10, in_channels=1, input_size=28)
    with pytest.raises(InputError, match="stage 1"):
        build_module("mbv3:w1.0-r128-s1:k3e3-s2:k3e3,k3e3-s3:k3e3,k3e3-s4:k3e3,k3e3-s5:k3e3,k3e3")


# ---------------------------------------------------------------------------- the latency table


@pytest.fixture(scope="module")
def raspi4_predictor():
    """A kernel-level predictor (latency and energy) of the simulated Raspberry Pi 4, trained
    on 100 noise-free kernel latencies of the sampling plan (a few seconds)."""
    from predictors.api import DevicePredictor
    from predictors.bundle import BundleInfo
    from predictors.kernel_model import KernelLevelPredictor
    from predictors.sampling import build_graph, make_plan

    prof = load_profile("raspi4")
    rules = FusionRules(tuple(tuple(p) for p in prof.fusion), prof.fold_constants, "profile:raspi4")
    graphs = [build_graph(s) for s in make_plan(budget=100, seed=0, fusion=rules.patterns)]
    sims = [simulate(g, prof) for g in graphs]
    small = {"n_estimators": 40}
    lat = KernelLevelPredictor(rules=rules, regressor_params=small).fit(graphs, [s.latency_ms for s in sims])
    en = KernelLevelPredictor(rules=rules, target="energy_mj", regressor_params=small).fit(
        graphs, [s.energy_mj for s in sims])
    return DevicePredictor(BundleInfo("test-raspi4", Path("."), {"device": "sim-raspi4"}), lat, en)


def test_lut_prices_exactly_what_the_predictor_predicts(raspi4_predictor, registered):
    from nas.objectives import LazyGraphs

    rng = np.random.default_rng(5)
    archs = [registered.sample(rng) for _ in range(12)] + [_uniform(1.2, 224, 4, 7, 6), _uniform(1.0, 128, 2, 3, 3)]
    lut = KernelLUTLatencyModel(raspi4_predictor)
    lat, en = lut.predict_batch("mbv3", archs, LazyGraphs(registered, archs))
    ref_lat, ref_en = PredictorLatencyModel(raspi4_predictor).predict_batch("mbv3", archs,
                                                                            [registered.to_graph(a) for a in archs])
    assert lut.fallback is None and en is not None and ref_en is not None
    np.testing.assert_allclose(lat, ref_lat, rtol=1e-9)
    np.testing.assert_allclose(en, ref_en, rtol=1e-9)
    assert lat.max() > 3 * lat.min()  # the space spans a range, and the table follows it
    # a second batch of the same blocks is all lookups: no graph, no model call
    priced = lut.table_size("mbv3")

    class NoGraphs(Sequence[Graph]):
        def __len__(self) -> int:
            return len(archs)

        def __getitem__(self, i):  # type: ignore[override]
            raise AssertionError("the table must not build graphs")

    again, _ = lut.predict_batch("mbv3", archs, NoGraphs())
    np.testing.assert_array_equal(again, lat)
    assert lut.table_size("mbv3") == priced and lut.hits >= sum(len(registered.blocks(a)) for a in archs)


def test_lut_falls_back_to_the_predictor_where_the_sum_does_not_split(raspi4_predictor, registered):
    """A whole-network term (here: weights streamed past a cache) and a space without blocks
    are priced graph by graph, still equal to the predictor."""
    from nas.objectives import LazyGraphs

    streaming = copy.copy(raspi4_predictor)
    streaming.latency = copy.copy(raspi4_predictor.latency)
    streaming.latency.stream_levels_ = [(8192.0, 1e-4)]  # the 5 MB classifier streams
    archs = [registered.sample(np.random.default_rng(i)) for i in range(3)]
    lut = KernelLUTLatencyModel(streaming, energy=False)
    lat, en = lut.predict_batch("mbv3", archs, LazyGraphs(registered, archs))
    ref, _ = PredictorLatencyModel(streaming, energy=False).predict_batch("mbv3", archs,
                                                                          LazyGraphs(registered, archs))
    assert en is None and lut.fallback is not None and "streamed-weight" in lut.fallback
    np.testing.assert_allclose(lat, ref, rtol=1e-12)
    plain, _ = KernelLUTLatencyModel(raspi4_predictor, energy=False).predict_batch(
        "mbv3", archs, LazyGraphs(registered, archs))
    assert np.all(lat > plain)  # the stream term was charged

    nb = SPACES["nb201"]
    cells = [nb.sample(np.random.default_rng(i)) for i in range(3)]
    lut2 = KernelLUTLatencyModel(raspi4_predictor, energy=False)
    got, _ = lut2.predict_batch("nb201", cells, LazyGraphs(nb, cells))
    assert lut2.fallback == "space nb201 does not split into blocks"
    np.testing.assert_allclose(got, [p.latency_ms for p in raspi4_predictor.predict_many(
        [nb.to_graph(c) for c in cells])], rtol=1e-12)


def test_a_search_prices_mbv3_through_the_table(raspi4_predictor, registered):
    from nas.search import SearchConfig, search

    class MacsAccuracy:
        def estimate(self, space: str, archs: Sequence[str]) -> np.ndarray:
            return np.array([float(sum(k * e for s in parse_arch(a).stages for k, e in s)) for a in archs])

    space = registered
    lut = KernelLUTLatencyModel(raspi4_predictor, space=space)
    res = search(space, latency=lut, accuracy=MacsAccuracy(), config=SearchConfig(strategy="evolution", trials=40,
                                                                                     population_size=10))
    assert res.trials == 40 and res.best is not None and space.resolve(res.best.arch) == res.best.arch
    assert res.best.macs is not None and res.best.macs > 0 and lut.table_size("mbv3") > 0
    with pytest.raises(InputError, match="prices space mbv3, not fbnet"):
        lut.predict_batch("fbnet", [], [])
