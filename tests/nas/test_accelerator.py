"""Accelerator-aware search: predicted operator fallback (the simulator's placement) on the
Edge TPU and a phone NPU, fallback as a penalty or a hard limit in a search, and the
simulator's latency as a cost model."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import pytest

from farm.errors import InputError
from farm.sim.model import simulate
from farm.sim.profile import load_profile
from farm.zoo.mcu_space import MCUSpace, build_mcu, parse_arch
from farm.zoo.spaces import SPACES
from nas.accelerator import FallbackModel, FallbackPenalty, SimLatencyModel, device_profile, run_on_mcu
from nas.objectives import Constraints
from nas.search import SearchConfig, search

RELU6 = "w0.5-r128-s1:k3e4_k5e3-s2:k5e6_k3e3_k7e4-s3:k3e3_k3e3-s4:k5e6_k5e6-s5:k7e6_k7e6_k7e6_k7e6-s6:k3e6"
HSWISH_S4 = RELU6.replace("-s4:", "-s4h:")  # h-swish in stage 4 only

REGISTRY = """\
devices:
  - name: host-cpu
    url: local://cpu
    runtime: onnxruntime
  - name: sim-edgetpu
    url: sim://edgetpu?seed=0
    runtime: sim
  - name: sim-hexagon-npu
    url: sim://hexagon_npu?seed=0
    runtime: sim
  - name: sim-cortex-m7
    url: sim://cortex_m7?seed=0
    runtime: sim
  - name: coral
    url: ssh://pi@192.0.2.1
    runtime: litert
    delegate: edgetpu
"""


@pytest.fixture
def registry(tmp_path):
    path = tmp_path / "devices.yaml"
    path.write_text(REGISTRY)
    return path


@pytest.fixture
def mcu(monkeypatch):
    space = MCUSpace()
    monkeypatch.setitem(SPACES, "mcu", space)
    return space


def test_all_int8_supported_graph_has_no_fallback_on_the_edgetpu(registry):
    fm = FallbackModel.for_device("sim-edgetpu", registry=registry)
    fb = fm.predict(build_mcu(RELU6))
    assert fb.accelerator == "edgetpu" and fb.compiles
    assert fb.fallback_ops == 0 and fb.fallback_macs_share == 0.0 and fb.first is None


def test_an_unsupported_op_sends_the_rest_of_the_graph_to_the_cpu_on_the_edgetpu(registry):
    g = build_mcu(HSWISH_S4)
    fb = FallbackModel.for_device("sim-edgetpu", registry=registry).predict(g)
    names = [n.name for n in g.nodes]
    assert fb.first == "s4.b1.expand.hswish"
    # rest_of_graph: the first unsupported node and everything after it
    assert fb.op_names == tuple(names[names.index(fb.first):])
    assert 0 < fb.fallback_macs_share < 1 and fb.fallback_ops > 0
    # one rule: the simulated device reports the same nodes
    assert list(fb.op_names) == simulate(g, load_profile("edgetpu")).fallback_ops


def test_per_op_fallback_on_the_npu_moves_only_the_unsupported_ops(registry):
    g = build_mcu(HSWISH_S4)
    fb = FallbackModel.for_device("sim-hexagon-npu", registry=registry).predict(g)
    hswish = [n.name for n in g.nodes if n.op == "HardSwish"]
    assert list(fb.op_names) == hswish and len(hswish) == 4  # expand and dw of the two stage-4 blocks
    assert fb.fallback_macs_share == 0.0
    assert FallbackModel.for_device("sim-hexagon-npu", registry=registry).predict(build_mcu(RELU6)).fallback_ops == 0


def test_a_float_graph_does_not_compile_for_an_int8_accelerator():
    fb = FallbackModel(load_profile("edgetpu")).predict(build_mcu(RELU6, dtype="float32"))
    assert not fb.compiles and fb.fallback_ops == fb.ops
    with pytest.raises(InputError, match="int8"):
        SimLatencyModel(load_profile("edgetpu")).predict_batch("mcu", ["x"], [build_mcu(RELU6, dtype="float32")])


def test_devices_without_an_accelerator_or_a_profile_are_refused(registry):
    with pytest.raises(InputError, match="no accelerator"):
        FallbackModel.for_device("sim-cortex-m7", registry=registry)
    with pytest.raises(InputError, match="no simulator profile"):
        FallbackModel.for_device("host-cpu", registry=registry)
    assert device_profile("coral", registry=registry).name == "edgetpu"  # a real Edge TPU: its placement rules


def test_the_simulated_edgetpu_reports_fallback_for_the_exported_int8_model(tmp_path, registry):
    """The int8 .tflite of each graph on sim-edgetpu: no fallback for the ReLU6 model, the
    HARD_SWISH ops and what follows on the CPU for the other."""
    pytest.importorskip("ai_edge_litert")
    from farm.agent.measure import Policy
    from farm.devices import open_device
    from farm.formats.tflite_export import graph_to_tflite
    from farm.measurement import Settings
    from farm.registry.spec import load_registry
    from farm.workload import workload_from_bytes

    dev = open_device(load_registry(registry).get("sim-edgetpu"))
    settings = Settings(runtime="sim", policy=Policy(warmup=1, warmup_s=0, min_runs=3, min_time_s=0, max_runs=5))
    got = {}
    for arch in (RELU6, HSWISH_S4):
        w = workload_from_bytes(graph_to_tflite(build_mcu(arch), dtype="int8"), fmt="tflite", name="m")
        got[arch] = dev.run(w, settings).provenance["fallback_ops"]
    assert got[RELU6] == []
    assert got[HSWISH_S4] and got[HSWISH_S4][0].startswith("hard_swish")


# ---------------------------------------------------------------------------- cost and search


def test_sim_latency_is_the_simulators_and_prices_what_does_not_fit_an_mcu():
    p = load_profile("cortex_m7")
    big = build_mcu(RELU6.replace("w0.5-r128", "w1.0-r224"))
    lat, en = SimLatencyModel(p).predict_batch("mcu", ["a", "b"], [build_mcu(RELU6), big])
    assert lat[0] == pytest.approx(simulate(build_mcu(RELU6), p).latency_ms)
    assert lat[1] > lat[0] and en is not None and en[1] > en[0]
    with pytest.raises(Exception, match="out of memory"):
        simulate(big, p)  # the device refuses it; the cost model still prices it


class FakeLatency:
    def predict_batch(self, space: str, archs: Sequence[str], graphs: Sequence):
        return np.array([1.0 + g.macs / 1e8 for g in graphs]), None


def test_penalty_adds_per_fallback_op_beyond_the_free_ones(registry):
    fm = FallbackModel.for_device("sim-edgetpu", registry=registry)
    graphs = [build_mcu(RELU6), build_mcu(HSWISH_S4)]
    base, _ = FakeLatency().predict_batch("mcu", ["a", "b"], graphs)
    n = fm.predict(graphs[1]).fallback_ops
    lat, _ = FallbackPenalty(FakeLatency(), fm, ms_per_op=0.5).predict_batch("mcu", ["a", "b"], graphs)
    assert lat[0] == base[0] and lat[1] == pytest.approx(base[1] + 0.5 * n)
    lat, _ = FallbackPenalty(FakeLatency(), fm, ms_per_op=2.0, free_ops=n - 3).predict_batch("mcu", ["a", "b"], graphs)
    assert lat[0] == base[0] and lat[1] == pytest.approx(base[1] + 6.0)
    with pytest.raises(InputError):
        FallbackPenalty(FakeLatency(), fm, ms_per_op=-1)


class HswishLovingAccuracy:
    """More MACs score higher, and each h-swish stage adds 5 points (so a search wants it)."""

    def __init__(self) -> None:
        self._macs = lru_cache(maxsize=None)(lambda a: build_mcu(a).macs)

    def estimate(self, space: str, archs: Sequence[str]) -> np.ndarray:
        return np.array([30 + 7 * np.log(self._macs(a) / 1e6)
                         + 5 * sum(act == "hswish" for act, _ in parse_arch(a).stages) for a in archs])


# One stage in two picks h-swish, so 1 random candidate in 64 runs wholly on the Edge TPU:
# 320 trials all but guarantee a few (a cheap MACs-based latency keeps them fast).
TRIALS = 320


def test_a_fallback_limit_keeps_the_search_on_the_accelerator(mcu, registry):
    """The most accurate architecture under a latency limit uses h-swish (the stand-in
    accuracy pays for it); with a hard limit of 0 fallback ops (:class:`FallbackPenalty` with
    a large weight) every feasible one runs wholly on the Edge TPU, at some accuracy."""
    fm = FallbackModel.for_device("sim-edgetpu", registry=registry)
    cfg = SearchConfig(strategy="random", trials=TRIALS, seed=1, constraints=Constraints(max_latency_ms=2.0))
    free = search("mcu", latency=FakeLatency(), accuracy=HswishLovingAccuracy(), config=cfg)
    hard = FallbackPenalty(FakeLatency(), fm, ms_per_op=FallbackPenalty.HARD_MS_PER_OP)
    gated = search("mcu", latency=hard, accuracy=HswishLovingAccuracy(), config=cfg)
    assert free.best is not None and gated.best is not None
    assert fm.predict(mcu.to_graph(free.best.arch)).fallback_ops > 0
    for c in gated.candidates:
        if c.feasible:
            assert fm.predict(mcu.to_graph(c.arch)).fallback_ops == 0
    assert gated.best.accuracy < free.best.accuracy
    assert 0 < sum(c.feasible for c in gated.candidates) < sum(c.feasible for c in free.candidates)


@pytest.mark.skipif("max_fallback_ops" not in Constraints.__dataclass_fields__,
                    reason="nas.objectives has no fallback constraint yet (see nas/accelerator.py)")
def test_fallback_as_a_search_constraint(mcu, registry):
    fm = FallbackModel.for_device("sim-edgetpu", registry=registry)
    cfg = SearchConfig(strategy="random", trials=TRIALS, seed=1,
                       constraints=Constraints(max_latency_ms=2.0, max_fallback_ops=0))
    res = search("mcu", latency=FakeLatency(), accuracy=HswishLovingAccuracy(), config=cfg, fallback=fm)
    assert res.best is not None and res.best.fallback_ops == 0
    assert all(c.fallback_ops == 0 for c in res.candidates if c.feasible)
    assert any(c.fallback_ops for c in res.candidates)
    assert res.constraints.describe().endswith("CPU fallback ≤ 0 ops")


def test_run_on_mcu_reports_what_the_device_measured(registry):
    pytest.importorskip("ai_edge_litert")
    fit = run_on_mcu(build_mcu(RELU6), device="sim-cortex-m7", registry=registry, name="relu6")
    assert fit.fits and fit.name == "relu6" and fit.sram_limit_kb == 1024 and fit.flash_limit_kb == 2048
    assert fit.to_json()["fits"] is True and fit.latency_ms is not None and fit.latency_ms > 0
