"""Sampling plans: single-kernel models that are valid, run, form one kernel of their type;
priors that look like real networks; seeded plans; adaptive refinement with an injected predictor."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import replace

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from farm.errors import InputError
from farm.formats.onnx import graph_from_onnx
from farm.ir.kernels import form_kernels
from farm.sim.profile import load_profile
from predictors.sampling import (
    CHAIN_LENGTHS,
    DEFAULT_BUDGET,
    KERNEL_TYPES,
    MAX_MACS,
    OVERHEAD,
    STAGES,
    TYPE_WEIGHTS,
    KernelSpec,
    build_graph,
    chainable,
    kernel_type_of,
    make_plan,
    parse_kernels,
    perturb,
    refine_plan,
    sample_spec,
    single_kernel,
    to_onnx_bytes,
    variants_for,
)

RASPI4 = load_profile("raspi4").fusion
# Every fused variant the generators know, as rules: each variant model is then one kernel.
ALL_RULES = (("Conv", "BatchNormalization"), ("Conv", "Relu"), ("Conv", "Clip"), ("Conv", "BatchNormalization", "Relu"),
             ("Conv", "BatchNormalization", "Clip"), ("Conv", "Add"), ("Conv", "Add", "Relu"),
             ("Conv", "BatchNormalization", "Add"), ("Conv", "BatchNormalization", "Add", "Relu"),
             ("Gemm", "Relu"), ("Add", "Relu"))


def _run(data: bytes) -> list[np.ndarray]:
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {i.name: rng.standard_normal(i.shape).astype(np.float32) for i in sess.get_inputs()}
    return sess.run(None, feeds)


def _specs_of_every_kind() -> list[KernelSpec]:
    """A few prior samples of each type plus every variant of the head types."""
    specs = [KernelSpec(OVERHEAD, "relu", cin=8)]
    for i, kt in enumerate(KERNEL_TYPES):
        rng = np.random.default_rng(i)
        specs += [sample_spec(kt, rng, ALL_RULES) for _ in range(4)]
    for v in variants_for("conv", ALL_RULES):
        specs.append(KernelSpec("conv", v, cin=16, cout=32, hw=14, k=3, stride=2))
    for v in variants_for("dwconv", ALL_RULES):
        specs.append(KernelSpec("dwconv", v, cin=32, cout=32, hw=14, k=5))
    specs += [KernelSpec("gemm", v, cin=64, cout=10) for v in variants_for("gemm", ALL_RULES)]
    specs += [KernelSpec("eltwise", v, cin=16, hw=8) for v in ("add", "add+relu", "mul", "mul_se")]
    specs += [KernelSpec("act", v, cin=16, hw=8) for v in ("relu", "relu6", "sigmoid", "hardswish")]
    specs += [KernelSpec("reshape", v, cin=32, hw=8, groups=2) for v in ("reshape", "transpose")]
    specs += [KernelSpec("pool", v, cin=16, hw=9, k=3, stride=s) for v in ("max", "avg") for s in (1, 2)]
    return specs


@pytest.mark.parametrize("spec", _specs_of_every_kind(), ids=lambda s: s.name)
def test_model_is_valid_onnx_runs_and_forms_one_kernel_of_its_type(spec):
    g = build_graph(spec)
    data = to_onnx_bytes(g)
    model = onnx.load_model_from_string(data)
    onnx.checker.check_model(model, full_check=True)
    (y,) = _run(data)
    assert y.shape == tuple(g.outputs[0].shape)
    imported = graph_from_onnx(model)  # what the store keeps: the graph read back from the file
    assert [n.op for n in imported.nodes] == [n.op for n in g.nodes]
    assert imported.macs == g.macs and imported.params == g.params
    k = single_kernel(imported, ALL_RULES)
    assert k is not None, f"{spec.name} forms {len(form_kernels(imported, ALL_RULES))} kernels"
    assert kernel_type_of(k) == ("act" if spec.kernel_type == OVERHEAD else spec.kernel_type)


def test_fused_variants_are_several_kernels_without_the_rules():
    g = graph_from_onnx(onnx.load_model_from_string(to_onnx_bytes(build_graph(
        KernelSpec("conv", "bn+relu", cin=16, cout=16, hw=8, k=3)))))
    assert single_kernel(g, ()) is None
    assert len(form_kernels(g, (("Conv", "BatchNormalization"),))) == 2
    assert single_kernel(g, RASPI4) is not None


def test_variants_follow_the_devices_rules():
    assert variants_for("conv", ()) == ("",)
    assert set(variants_for("conv", RASPI4)) == {"", "bn", "relu", "bn+relu"}
    assert variants_for("gemm", RASPI4) == ("", "relu")
    assert variants_for("pool", ALL_RULES) == ("",)
    plan = make_plan(budget=300, seed=3, fusion=RASPI4)
    for s in plan:  # every planned model is one kernel on raspi4, but the overhead and kernel chains
        if s.kernel_type == "overhead" and "+" in s.variant:
            continue
        if s.repeat > 1:
            assert len(form_kernels(build_graph(s), RASPI4)) == s.repeat, s.name
            continue
        assert single_kernel(build_graph(s), RASPI4) is not None, s.name
    assert not any(s.variant in ("relu6", "add") for s in plan if s.kernel_type == "conv")


def test_chains_are_identical_copies_of_a_planned_kernel():
    from predictors.kernel_model import chain_length
    from predictors.kernels import FusionRules, detect_kernels

    plan = make_plan(budget=400, seed=1, fusion=RASPI4)
    chains = [s for s in plan if s.repeat > 1]
    assert chains and {s.repeat for s in chains} == set(CHAIN_LENGTHS) - {1}
    assert {s.kernel_type for s in chains} >= {"conv", "dwconv", "act", "eltwise", "pool"}
    rules = FusionRules(RASPI4)
    for s in chains:
        one = replace(s, repeat=1)
        assert one in plan and s.name == f"{one.name}-x{s.repeat}"  # the chain's one-kernel model is measured too
        assert chain_length(detect_kernels(build_graph(s), rules)) == s.repeat, s.name
        g = build_graph(s)
        assert len(g.inputs) == len(build_graph(one).inputs)  # a residual or second operand is shared
    assert chainable(KernelSpec("concat", cin=8, hw=4, rows=2)) is None
    assert chainable(KernelSpec("conv", cin=16, cout=32, hw=8, k=3, stride=2)) == \
        KernelSpec("conv", cin=16, cout=16, hw=8, k=3, stride=1)
    # chains never feed refinement, whose perturbations are single kernels
    lat = [1.0 + 0.1 * i for i in range(len(plan))]
    assert all(s.repeat == 1 for s in refine_plan(plan, lat, n=20, seed=0))


def test_constants_that_are_data_are_exported_exactly():
    relu6 = onnx.load_model_from_string(to_onnx_bytes(build_graph(KernelSpec("act", "relu6", cin=8, hw=4))))
    vals = {i.name.rsplit(".", 1)[-1]: float(numpy_helper.to_array(i)) for i in relu6.graph.initializer}
    assert vals == {"min": 0.0, "max": 6.0}
    (y,) = _run(relu6.SerializeToString())
    assert y.min() >= 0.0 and y.max() <= 6.0
    spec = KernelSpec("reshape", "reshape", cin=48, hw=7, groups=4)
    shuffle = onnx.load_model_from_string(to_onnx_bytes(build_graph(spec)))
    (shape,) = [numpy_helper.to_array(i) for i in shuffle.graph.initializer]
    assert shape.dtype == np.int64 and shape.tolist() == [1, 4, 12, 7, 7]


def test_model_bytes_depend_only_on_the_spec():
    s = KernelSpec("conv", "bn", cin=24, cout=48, hw=28, k=3, stride=2)
    assert to_onnx_bytes(build_graph(s)) == to_onnx_bytes(build_graph(s))
    assert to_onnx_bytes(build_graph(s)) != to_onnx_bytes(build_graph(KernelSpec("conv", "bn", cin=24, cout=48,
                                                                                   hw=28, k=3, stride=1)))


def test_plans_are_seeded_sized_and_split_by_type():
    a = make_plan(budget=200, seed=1, fusion=RASPI4)
    assert [s.name for s in a] == [s.name for s in make_plan(budget=200, seed=1, fusion=RASPI4)]
    b = make_plan(budget=200, seed=2, fusion=RASPI4)
    assert len({s.name for s in a} & {s.name for s in b}) < 60
    assert len(a) == 200 and len({s.name for s in a}) == 200
    counts = Counter(s.kernel_type for s in a if s.repeat == 1)
    assert counts[OVERHEAD] == 5  # 1 op on 1, 8, 64 numbers; chains of 2 and 4
    n_chains = sum(1 for s in a if s.repeat > 1)
    assert n_chains >= 10
    for kt, w in TYPE_WEIGHTS.items():  # the chains' one-kernel models come on top of the type's share
        single = counts[kt] - sum(1 for s in a if s.kernel_type == kt and s.repeat > 1) // 2
        assert abs(single - w * (195 - n_chains * 3 // 2)) <= 1, (kt, counts[kt])
    only = make_plan(budget=30, kernels=("conv", "gemm"), seed=0)
    assert {s.kernel_type for s in only} == {"conv", "gemm", OVERHEAD}
    assert len(make_plan(budget=2, seed=0)) == 2  # tiny budgets: no room for the minimal models
    assert DEFAULT_BUDGET >= 1000


def test_priors_produce_real_network_shapes():
    full = make_plan(budget=1500, seed=0, fusion=RASPI4)
    extra = [s for s in full if s.w or s.kw or (s.hw == 0 and s.kernel_type in ("act", "bn", "eltwise"))]
    # the layers the stage tables miss: audio stems (DS-CNN's 10×4 on 49×10) and an MLP's [1, C]
    assert any(s.kernel_type == "conv" and (s.k, s.kw, s.hw, s.w, s.cin) == (10, 4, 49, 10, 1) for s in extra)
    assert {s.kernel_type for s in extra} == {"conv", "act", "bn", "eltwise"}
    assert all(build_graph(s).macs <= MAX_MACS for s in extra)
    assert build_graph(KernelSpec("bn", cin=128)).inputs[0].shape == (1, 128)
    plan = [s for s in full if s not in extra]
    convs = [s for s in plan if s.kernel_type == "conv"]
    known_res = {max(1, round(r * i / (224 if inputs[0] == 224 else inputs[0]))) * m
                 for _, _, ins, _, stages in STAGES for i in ins for r, _ in stages
                 for inputs in [ins] for m in (1, 2)} | {224, 192, 160, 128, 96, 32}
    for s in plan:
        if s.kernel_type in ("conv", "dwconv", "pool", "bn", "act", "eltwise", "concat") and s.kernel_type != OVERHEAD:
            assert s.hw in known_res, s.name
        if s.kernel_type in ("conv", "dwconv"):
            assert s.k in (1, 3, 5, 7) and s.stride in (1, 2)
            assert s.cin == 3 or s.cin % 8 == 0, s.name
            assert s.cout % 8 == 0 and 8 <= s.cout <= 4096 * 2
            assert build_graph(s).macs <= MAX_MACS
    # channels grow as resolution shrinks, as in every CNN
    hi = [s.cout for s in convs if s.hw >= 56 and s.cin != 3]
    lo = [s.cout for s in convs if s.hw <= 14]
    assert statistics.median(hi) * 4 <= statistics.median(lo)
    assert 8 <= min(s.cout for s in convs) and max(s.cout for s in convs) >= 1024
    ks = Counter(s.k for s in convs)
    assert ks[1] > ks[5] + ks[7] and ks[3] > ks[5] + ks[7] and ks[7] > 0
    assert any(s.cin == 3 and s.stride == 2 and s.hw >= 96 for s in convs)  # stems
    assert any(s.groups > 1 for s in convs)
    dw = [s for s in plan if s.kernel_type == "dwconv"]
    assert {s.k for s in dw} == {3, 5, 7} and {s.stride for s in dw} == {1, 2}
    assert any(s.variant == "bn+relu" for s in dw)
    gemms = [s for s in plan if s.kernel_type == "gemm"]
    assert any(s.cin == 1280 and s.cout == 1000 for s in gemms) or any(s.cout == 1000 for s in gemms)


def test_parse_kernels():
    assert parse_kernels(None) == KERNEL_TYPES
    assert parse_kernels("conv, dwconv,conv") == ("conv", "dwconv")
    with pytest.raises(InputError, match="unknown kernel type.*convv"):
        parse_kernels("conv,convv")


def test_perturb_stays_valid():
    rng = np.random.default_rng(0)
    for spec in make_plan(budget=120, seed=4, fusion=RASPI4):
        for _ in range(3):
            p = perturb(spec, rng)
            assert p.kernel_type == spec.kernel_type and p.variant == spec.variant
            build_graph(p)  # builds
            if p.kernel_type in ("conv", "reshape") and p.groups > 1:
                assert p.cin % p.groups == 0


def test_refinement_goes_where_the_injected_predictor_errs():
    plan = [s for s in make_plan(budget=200, seed=0, fusion=RASPI4) if s.kernel_type != OVERHEAD]
    truth = {s.name: 0.01 + build_graph(s).macs / 1e9 + build_graph(s).bytes_moved / 4e9 for s in plan}
    measured = [truth[s.name] for s in plan]

    def predictor(graph) -> float:  # right everywhere except on depthwise convolutions (3x too fast)
        t = truth.get(graph.name, 1.0)
        return t / 3 if graph.name.startswith("dwconv") else t

    new = refine_plan(plan, measured, n=30, seed=0, predict=predictor)
    assert len(new) == 30 and len({s.name for s in new}) == 30
    assert all(s.kernel_type == "dwconv" for s in new)
    assert not {s.name for s in new} & {s.name for s in plan}


def test_refinement_without_a_predictor_uses_cross_validation():
    plan = [s for s in make_plan(budget=150, seed=0, kernels=("conv", "act"), fusion=RASPI4)
            if s.kernel_type != OVERHEAD]
    # act latency is smooth in size; conv latency has a hidden jump the features cannot see
    measured = [(0.5 if s.kernel_type == "conv" and s.cout % 16 == 8 else 0.05) * (1 + build_graph(s).macs / 1e8)
                if s.kernel_type == "conv" else 0.01 + build_graph(s).bytes_moved / 4e9 for s in plan]
    new = refine_plan(plan, measured, n=20, seed=1, exclude={"anything"})
    assert len(new) == 20
    assert Counter(s.kernel_type for s in new)["conv"] >= 15
    assert refine_plan(plan, measured, n=0) == []


def test_draw_unique_takes_new_names_only_and_stops_when_it_has_enough():
    from types import SimpleNamespace

    from predictors.sampling import draw_unique

    names = iter(["a", "b", "a", None, "c", "d", "e"])
    calls = []

    def draw():
        calls.append(1)
        n = next(names)
        return None if n is None else SimpleNamespace(name=n)

    seen = {"b"}
    got = draw_unique(draw, 2, seen, tries=100)
    assert [x.name for x in got] == ["a", "c"]  # "b" was seen, the second "a" a repeat, None a failed try
    assert seen == {"a", "b", "c"} and len(calls) == 5  # no draw after the second is taken
    assert draw_unique(lambda: SimpleNamespace(name="a"), 3, seen, tries=4) == []  # out of tries, not stuck


def test_plans_probe_where_gemm_weights_outgrow_a_cache():
    """Square batch-1 Gemm chains whose copies' weights together run from 144 KB to 3 MB:
    where a core's cache ends shows in every dataset with Gemms, once (no duplicate names)."""
    from predictors.sampling import stream_probe_specs

    probes = stream_probe_specs()
    assert len(probes) == 15 and {s.repeat for s in probes} == {1, 2, 4}
    together = sorted(build_graph(s).params * 4 / 1024 for s in probes)  # float32 weights
    assert together[0] < 256 and together[-1] > 2048
    plan = make_plan(budget=300, seed=0, fusion=RASPI4)
    names = [s.name for s in plan]
    assert {s.name for s in probes} <= set(names) and len(names) == len(set(names)) == 300
    assert not stream_probe_specs(("conv", "act"))
    assert not any(s.kernel_type == "gemm" for s in make_plan(budget=300, kernels=("conv", "act"), seed=0))
