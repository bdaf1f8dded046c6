"""Fusion detection: the A / B / A+B method recovers a simulated device's rules, the verdicts
are stored (schema v3) and read back, the CLI reports them."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter

import pytest

import farm.devices.sim as sim_device
from farm.agent.measure import LatencyStats
from farm.measurement import Measurement, Settings
from farm.registry.spec import DeviceSpec
from farm.sim.profile import load_profile
from farm.store.sqlite import SCHEMA_VERSION, FusionRecord, SqliteStore
from predictors.fusion import (
    CANDIDATES,
    candidate_ops,
    decide,
    detect_fusion,
    detect_fusion_graph,
    detected_fusion_rules,
    fusion_tests,
    invoke_overhead_ms,
    parse_candidates,
    rules_from_records,
)
from predictors.sampling import build_graph, single_kernel

from ..conftest import ROOT, run_cli

SIM = DeviceSpec(name="sim-raspi4", url="sim://raspi4?seed=0", runtime="sim")


def test_detection_recovers_the_sim_profiles_rules(tmp_path):
    store = SqliteStore(":memory:")
    records = detect_fusion(store, SIM, models_dir=tmp_path)
    assert {r.candidate for r in records} == set(CANDIDATES)
    found = detected_fusion_rules(store, SIM.name)
    assert found is not None
    assert set(found) == set(load_profile("raspi4").fusion)
    by = {r.candidate: r for r in records}
    assert by["conv+bn+relu"].fused and by["add+relu"].fused and by["dwconv+bn+relu"].fused
    assert not by["bn+relu"].fused and not by["conv+relu6"].fused
    # Add is free on this profile: conv+add cannot be told apart, and says so
    assert not by["conv+add"].fused and not by["conv+add"].evidence["conclusive"]
    shape = by["conv+bn"].evidence["shapes"][0]
    assert shape["chain_ms"] < shape["unfused_sum_ms"] and shape["conclusive"]
    # detected patterns; constant folding (which the A, B, A+B test cannot see) from the profile
    from predictors.kernels import fusion_rules_for

    rules = fusion_rules_for(SIM, store)
    assert rules.source == "detected" and rules.fold_constants == load_profile("raspi4").fold_constants is True


def test_detection_follows_whatever_rules_the_device_has(tmp_path, monkeypatch):
    # Another (made-up) runtime: fuses Conv+Clip and BN+Relu, nothing else.
    rules = (("Conv", "Clip"), ("BatchNormalization", "Relu"))
    custom = load_profile("pixel3").model_copy(update={"fusion": rules})
    monkeypatch.setattr(sim_device, "load_profile", lambda name: custom)
    store = SqliteStore(":memory:")
    spec = DeviceSpec(name="sim-custom", url="sim://pixel3?seed=3", runtime="sim")
    detect_fusion(store, spec, models_dir=tmp_path)
    assert set(detected_fusion_rules(store, spec.name) or ()) == set(rules)


def test_candidates_and_their_test_models():
    assert candidate_ops("conv+bn+relu") == ("Conv", "BatchNormalization", "Relu")
    assert candidate_ops("dwconv+bn") == candidate_ops("conv+bn")
    assert candidate_ops("add+relu") == ("Add", "Relu")
    for name in CANDIDATES:
        for t in fusion_tests(name):
            ops = [n.op for n in build_graph(t.chain).nodes]
            assert tuple(ops) == candidate_ops(name)
            assert single_kernel(build_graph(t.head), ()) is not None  # head alone: one op
            assert all(len(build_graph(f).nodes) == 1 for f in t.followers)
            assert len(t.followers) == len(ops) - 1
    assert parse_candidates("conv+bn, add+relu") == ("conv+bn", "add+relu")
    with pytest.raises(Exception, match="unknown candidate"):
        parse_candidates("conv+lrn")


def _m(ms: float, ci: float = 0.0) -> Measurement:
    s = LatencyStats(ms, ms, ms, ms, 0.0, 0.0, 20, 0, ms - ci, ms + ci)
    return Measurement("d", "w", Settings(), s, (ms,), (), (), "converged", {})


@pytest.mark.parametrize(("head", "followers", "chain", "fused", "conclusive"), [
    (1.0, [0.3], 1.01, True, True),         # follower vanished: fused
    (1.0, [0.3], 1.30, False, True),        # follower paid in full: not fused
    (1.0, [0.3, 0.2], 1.21, False, True),   # only the first follower fused: not one kernel
    (1.0, [0.3, 0.2], 1.02, True, True),
    (1.0, [0.001], 1.0, False, False),      # a free follower cannot tell
])
def test_decision_rule(head, followers, chain, fused, conclusive):
    v = decide(0.05, _m(head + 0.05, 0.002), [_m(f + 0.05) for f in followers], _m(chain + 0.05, 0.002))
    assert v["fused"] is fused and v["conclusive"] is conclusive
    assert v["head_ms"] == pytest.approx(head)


def test_noisy_measurements_are_inconclusive():
    v = decide(0.05, _m(1.05, 0.2), [_m(0.35)], _m(1.06, 0.2))
    assert not v["conclusive"] and not v["fused"]


def test_invoke_overhead_from_one_and_two_op_models():
    assert invoke_overhead_ms(_m(0.010), _m(0.013)) == pytest.approx(0.007)
    assert invoke_overhead_ms(_m(0.010), _m(0.025)) == 0.0


def test_rules_need_every_candidate_with_that_op_sequence():
    rec = [FusionRecord("d", "conv+bn", ("Conv", "BatchNormalization"), True, {}, ""),
           FusionRecord("d", "dwconv+bn", ("Conv", "BatchNormalization"), False, {}, ""),
           FusionRecord("d", "gemm+relu", ("Gemm", "Relu"), True, {}, "")]
    assert rules_from_records(rec) == (("Gemm", "Relu"),)


def test_store_keeps_rules_per_device_and_replaces_them(tmp_path):
    store = SqliteStore(tmp_path / "d.db")
    assert store.schema_version == SCHEMA_VERSION == 5
    store.put_device(SIM)
    assert detected_fusion_rules(store, SIM.name) is None
    store.put_fusion_rules(SIM.name, [FusionRecord(SIM.name, "conv+bn", ("Conv", "BatchNormalization"), True,
                                                   {"shapes": [1]}, "t")])
    store.put_fusion_rules(SIM.name, [FusionRecord(SIM.name, "add+relu", ("Add", "Relu"), True, {"x": 2}, "t"),
                                      FusionRecord(SIM.name, "bn+relu", ("BatchNormalization", "Relu"), False, {}, "t")])
    again = SqliteStore(tmp_path / "d.db")
    assert [r.candidate for r in again.fusion_rules(SIM.name)] == ["add+relu", "bn+relu"]
    assert again.fusion_rules(SIM.name)[0].evidence == {"x": 2}
    assert detected_fusion_rules(again, SIM.name) == (("Add", "Relu"),)
    assert again.fusion_rules("other") == []


def test_v2_file_upgrades_to_current(tmp_path, monkeypatch):
    import farm.store.sqlite as st

    path = tmp_path / "old.db"
    monkeypatch.setattr(st, "MIGRATIONS", st.MIGRATIONS[:2])
    monkeypatch.setattr(st, "SCHEMA_VERSION", 2)
    old = st.SqliteStore(path)
    old.put_device(SIM)
    old.close()
    monkeypatch.undo()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 2
    new = SqliteStore(path)
    assert new.schema_version == SCHEMA_VERSION and new.device_names() == [SIM.name]
    assert new.fusion_rules(SIM.name) == []


REG = """devices:
  - name: sim-raspi4
    url: sim://raspi4?seed=0
    runtime: sim
"""


def test_cli_detects_and_stores(tmp_path):
    reg = tmp_path / "devices.yaml"
    reg.write_text(REG)
    db = tmp_path / "farm.db"
    r = run_cli("--registry", str(reg), "--db", str(db), "dataset", "fusion", "--device", "sim-raspi4",
                "--candidates", "conv+bn+relu,add+relu,bn+relu", "--json", cwd=ROOT)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [(x["candidate"], x["fused"]) for x in rows] == [("conv+bn+relu", True), ("add+relu", True),
                                                             ("bn+relu", False)]
    assert rows[0]["ops"] == ["Conv", "BatchNormalization", "Relu"] and rows[0]["evidence"]
    assert detected_fusion_rules(SqliteStore(db), "sim-raspi4") == (("Conv", "BatchNormalization", "Relu"),
                                                                    ("Add", "Relu"))
    assert (tmp_path / "farm-models" / "fusion").is_dir()
    table = run_cli("--registry", str(reg), "--db", str(db), "dataset", "fusion", "--device", "sim-raspi4",
                    "--candidates", "conv+bn,bn+relu", cwd=ROOT)
    assert table.returncode == 0, table.stderr
    assert "conv+bn" in table.stdout and "stored 1 fusion rule(s)" in table.stderr
    bad = run_cli("--registry", str(reg), "--db", str(db), "dataset", "fusion", "--device", "sim-raspi4",
                  "--candidates", "conv+lrn", cwd=ROOT)
    assert bad.returncode == 2 and "unknown candidate" in bad.stderr and "Traceback" not in bad.stderr
    graph = run_cli("--registry", str(reg), "--db", str(db), "dataset", "fusion", "--device", "sim-raspi4",
                    "--method", "graph", cwd=ROOT)
    assert graph.returncode == 2 and "needs a local:// device running onnxruntime" in graph.stderr


def test_rounds_are_combined_by_median_and_their_spread_widens_the_ci():
    from predictors.fusion import _combine

    one = _m(1.0, 0.01)
    assert _combine([one]) is one
    c = _combine([_m(1.0, 0.01), _m(1.2, 0.01), _m(1.1, 0.01)])
    assert c.latency_ms == pytest.approx(1.1)
    assert c.stats.ci_low_ms == pytest.approx(1.0) and c.stats.ci_high_ms == pytest.approx(1.2)


def test_repeated_rounds_measure_again_and_agree_on_a_sim(tmp_path):
    store = SqliteStore(":memory:")
    records = detect_fusion(store, SIM, models_dir=tmp_path, candidates=("conv+bn", "bn+relu"), repeats=2)
    assert [r.fused for r in records] == [True, False]
    assert all(r.evidence["repeats"] == 2 for r in records)
    ms = store.measurements(device=SIM.name)
    per_workload = Counter(m.workload for m in ms)
    assert set(per_workload.values()) == {2}  # the second round was measured, not answered from the store
    with pytest.raises(Exception, match="--repeats 0"):
        detect_fusion(store, SIM, models_dir=tmp_path, repeats=0)


def test_graph_method_reads_onnxruntimes_optimizer_on_the_host(tmp_path):
    """Load-independent detection for the host: what onnxruntime's optimizer leaves as one node."""
    store = SqliteStore(":memory:")
    host = DeviceSpec(name="host-cpu", url="local://cpu", runtime="onnxruntime")
    records = {r.candidate: r for r in detect_fusion_graph(store, host)}
    # onnxruntime folds BN into Conv and fuses the activation (FusedConv / FusedGemm) ...
    assert records["conv+bn+relu"].fused and records["conv+relu6"].fused and records["gemm+relu"].fused
    # ... but runs a standalone Add and a BN followed by ReLU as kernels of their own
    assert not records["add+relu"].fused and not records["bn+relu"].fused
    assert records["conv+bn"].evidence["method"] == "onnxruntime-graph"
    rules = detected_fusion_rules(store, "host-cpu") or ()
    assert ("Conv", "BatchNormalization", "Relu") in rules and ("Add", "Relu") not in rules
    with pytest.raises(Exception, match="needs a local:// device running onnxruntime"):
        detect_fusion_graph(store, SIM)
