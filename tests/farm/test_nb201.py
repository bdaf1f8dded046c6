"""NAS-Bench-201 arch strings and macro network: parsing, exact cost counts by hand formula,
published cost ranges, and export to a runnable ONNX model."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from farm.zoo.nb201 import OPS, all_arch_strs, arch_str_from_ops, build_nb201, ops_from_arch_str, parse_arch

BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
EXAMPLE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
ALL_NONE = arch_str_from_ops(["none"] * 6)
CSV = Path("/work/shared/data/nb201-latency/latency_ms.csv")


def test_parse_example():
    assert parse_arch(EXAMPLE) == (
        (("nor_conv_3x3", 0),),
        (("nor_conv_3x3", 0), ("avg_pool_3x3", 1)),
        (("skip_connect", 0), ("nor_conv_3x3", 1), ("skip_connect", 2)),
    )
    assert ops_from_arch_str(EXAMPLE) == ("nor_conv_3x3", "nor_conv_3x3", "avg_pool_3x3",
                                          "skip_connect", "nor_conv_3x3", "skip_connect")


def test_all_arch_strs_round_trip():
    strs = list(all_arch_strs())
    assert len(strs) == 5 ** 6 == len(set(strs))
    for s in strs:
        assert arch_str_from_ops(ops_from_arch_str(s)) == s


@pytest.mark.skipif(not CSV.exists(), reason="NB201 latency data not present")
def test_csv_arch_strs_are_exactly_ours():
    with CSV.open() as f:
        csv_strs = {row["arch_str"] for row in csv.DictReader(f)}
    assert csv_strs == set(all_arch_strs())


@pytest.mark.parametrize("bad, msg", [
    ("", "3 '\\+'-separated"),
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|", "3 '\\+'-separated"),
    ("|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|", "bad edge 'conv~0'"),
    ("|none~0|+|none~0|+|none~0|none~1|none~2|", "node 2 needs 2 edges"),
    ("|none~0|+|none~0|none~0|+|none~0|none~1|none~2|", "one edge from each of nodes 0..1"),
    ("|none|+|none~0|none~1|+|none~0|none~1|none~2|", "bad edge 'none'"),
    ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "bad edge 'none~1'"),
])
def test_bad_strings(bad, msg):
    with pytest.raises(ValueError, match=msg):
        parse_arch(bad)


def test_edges_listed_out_of_order_are_sorted():
    s = "|none~0|+|avg_pool_3x3~1|nor_conv_1x1~0|+|none~0|none~1|none~2|"
    assert parse_arch(s)[1] == (("nor_conv_1x1", 0), ("avg_pool_3x3", 1))


def test_bad_ops6():
    with pytest.raises(ValueError, match="6 ops"):
        arch_str_from_ops(["none"] * 5)
    with pytest.raises(ValueError, match="6 ops"):
        arch_str_from_ops(["none"] * 5 + ["conv"])


# --- cost counts by hand -------------------------------------------------------------------
# Our IR counts what graph_from_onnx counts for an unfused export: every weight tensor, so a
# BatchNormalization has 4*C params (scale, bias, running mean, running var); Conv/Gemm MACs
# are output elements * weights per output. NB201's published "params" count BN's affine
# pair only (2*C); its FLOPs are these MACs. `none` is NB201's Zero op, x * 0: a Mul with one
# scalar weight (1 param, 0 MACs) per edge; every op runs, even on an all-zero input.

def hand_counts(ops6, bn_per_channel=4, C=16, res=32, classes=10):
    """(params, MACs) of the NB201 network from closed-form per-layer formulas."""
    def conv(cin, cout, k, hw_out):
        return cin * cout * k * k, hw_out * hw_out * cout * cin * k * k

    p = m = 0

    def add(pm):
        nonlocal p, m
        p, m = p + pm[0], m + pm[1]

    add(conv(3, C, 3, res)); p += bn_per_channel * C                            # stem
    c, hw = C, res
    for stage in range(3):
        if stage:
            add(conv(c, 2 * c, 3, hw // 2)); p += bn_per_channel * 2 * c       # a: 3x3 stride 2
            add(conv(2 * c, 2 * c, 3, hw // 2)); p += bn_per_channel * 2 * c   # b: 3x3
            add(conv(c, 2 * c, 1, hw // 2))                                    # shortcut 1x1
            c, hw = 2 * c, hw // 2
        for op in ops6:
            k = {"nor_conv_1x1": 1, "nor_conv_3x3": 3}.get(op)
            for _ in range(5):
                if k:
                    add(conv(c, c, k, hw)); p += bn_per_channel * c
                elif op == "none" and bn_per_channel == 4:
                    p += 1                                                     # Mul's scalar zero
    p += bn_per_channel * c + c * classes + classes                               # head BN + Linear
    m += c * classes
    return p, m


@pytest.mark.parametrize("arch", [BEST, EXAMPLE, ALL_NONE, arch_str_from_ops(["nor_conv_3x3"] * 6),
                                  arch_str_from_ops(["nor_conv_1x1"] * 6), arch_str_from_ops(["skip_connect"] * 6),
                                  "|none~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|none~0|nor_conv_3x3~1|none~2|"])
def test_counts_match_hand_formula(arch):
    g = build_nb201(arch)
    assert (g.params, g.macs) == hand_counts(ops_from_arch_str(arch))


def test_best_cell_exact_counts():
    # 5 of 6 edges are 3x3 convs (the skip edge costs nothing), per stage 25 ReLU-Conv-BN.
    g = build_nb201(BEST)
    assert g.params == 1_294_650          # NB201-style (BN affine only): 1_288_506
    assert hand_counts(ops_from_arch_str(BEST), bn_per_channel=2)[0] == 1_288_506
    assert g.macs == 184_730_240
    assert g.op_counts()["Conv"] == 1 + 3 * 5 * 5 + 2 * 3


def test_published_cost_range():
    # NB201 (CIFAR-10) reports params 0.07-1.53 MB and FLOPs 7.78-220.11 M over the space:
    # the cheapest cells (no conv) and the all-3x3 cell hit the ends.
    lo, hi = build_nb201(arch_str_from_ops(["skip_connect"] * 6)), build_nb201(arch_str_from_ops(["nor_conv_3x3"] * 6))
    assert lo.macs == 7_783_040 and round(lo.macs / 1e6, 2) == 7.78
    assert hi.macs == 220_119_680 and abs(hi.macs / 1e6 - 220.11) < 0.02
    assert round(hand_counts(["skip_connect"] * 6, bn_per_channel=2)[0] / 1e6, 2) == 0.07
    assert round(hand_counts(["nor_conv_3x3"] * 6, bn_per_channel=2)[0] / 1e6, 2) == 1.53


def test_structure_and_names():
    g = build_nb201(EXAMPLE)
    names = [n.name for n in g.nodes]
    assert len(names) == len(set(names))
    assert "s1c2.n1.e0.conv" in names and "s3c4.n2.e1.pool" in names and "red1.down.conv" in names
    pool = next(n for n in g.nodes if n.name == "s1c0.n2.e1.pool")
    assert pool.attrs["count_include_pad"] == 0 and pool.outputs[0].shape == (1, 16, 32, 32)
    assert g.outputs[0].shape == (1, 10)
    shapes = {n.name: n.outputs[0].shape for n in g.nodes}
    assert shapes["red1.add"] == (1, 32, 16, 16) and shapes["red2.add"] == (1, 64, 8, 8)
    # node 3 = skip(0) + conv(1) + skip(2): n-1 = 2 Adds
    assert "s1c0.n3.add2" in names and "s1c0.n3.add3" not in names
    counts = g.op_counts()
    assert counts["Add"] == 15 * (1 + 2) + 2 and counts["AveragePool"] == 15 + 2
    assert counts["Conv"] == 1 + 15 * 3 + 2 * 3
    for n in g.nodes:
        assert n.dtype == "float32"
        assert n.bytes_moved == sum(t.nbytes for t in n.inputs) + sum(t.nbytes for t in n.outputs)


def test_none_is_a_multiply_by_zero_per_edge():
    # NB201's Zero op computes x * 0; ops fed by a zero node still run, as in NB201's InferCell.
    g = build_nb201("|none~0|+|none~0|nor_conv_3x3~1|+|avg_pool_3x3~0|none~1|nor_conv_1x1~2|")
    counts = g.op_counts()
    assert counts["Mul"] == 15 * 3 and counts["Conv"] == 1 + 15 * 2 + 2 * 3
    mul = next(n for n in g.nodes if n.op == "Mul")
    assert mul.params == 1 and mul.macs == 0 and mul.weights[0].endswith(".zero")


def test_options():
    g = build_nb201(BEST, num_classes=100, resolution=16, channels=8, cells_per_stage=1)
    assert g.outputs[0].shape == (1, 100)
    assert g.nodes[-1].inputs[1].shape == (100, 32)


# --- runnable through ONNX -------------------------------------------------------------------

def _run(model):
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    return sess.run(None, {"input": x})[0]


@pytest.mark.parametrize("arch", [BEST, EXAMPLE, ALL_NONE, arch_str_from_ops(["avg_pool_3x3"] * 6),
                                  "|nor_conv_1x1~0|+|none~0|none~1|+|none~0|none~1|nor_conv_3x3~2|",
                                  "|skip_connect~0|+|none~0|skip_connect~1|+|skip_connect~0|none~1|skip_connect~2|"])
def test_onnx_round_trip_and_runs(arch):
    from farm.formats.onnx import graph_from_onnx
    from farm.formats.onnx_export import graph_to_onnx

    g = build_nb201(arch)
    m = graph_to_onnx(g, seed=0)
    h = graph_from_onnx(m)
    assert [n.op for n in h.nodes] == [n.op for n in g.nodes]
    assert [n.outputs[0].shape for n in h.nodes] == [n.outputs[0].shape for n in g.nodes]
    assert (h.macs, h.params, h.bytes_moved) == (g.macs, g.params, g.bytes_moved)
    y = _run(m)
    assert y.shape == (1, 10) and np.isfinite(y).all()


def test_all_none_cell_outputs_zero_features():
    from farm.formats.onnx_export import graph_to_onnx

    g = build_nb201(ALL_NONE)
    assert g.op_counts()["Mul"] == 15 * 6
    y = _run(graph_to_onnx(g))
    # graph_to_onnx fills "*.zero" weights with 0, so every cell outputs zeros and the logits
    # are BN(0)->ReLU->GAP->FC: the same for any input.
    import onnxruntime as ort
    sess = ort.InferenceSession(graph_to_onnx(g).SerializeToString(), providers=["CPUExecutionProvider"])
    y2 = sess.run(None, {"input": np.ones((1, 3, 32, 32), np.float32)})[0]
    np.testing.assert_allclose(y, y2, rtol=1e-6)


def test_module_imports_no_onnx():
    import subprocess
    import sys

    code = "import sys, farm.zoo.nb201; print('onnx' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_ops_tuple():
    assert OPS == ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
