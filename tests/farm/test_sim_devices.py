"""Acceptance of the simulated accelerators and MCUs through the CLI and the Python API,
with the repository's own devices.yaml (the sim-* devices registered there)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, checker, helper, numpy_helper

import farm
from farm.agent.measure import Policy
from farm.zoo.onnx_models import DEMO_MODELS, OnnxBuilder

from ..conftest import FAST, ROOT, run_cli

REPO_REGISTRY = ROOT / "devices.yaml"


def qlinear_net(size: int = 16, cout: int = 8, *, middle: str | None = None) -> onnx.ModelProto:
    """float input → Quantize → QLinearConv(3→cout, k3) [→ Dequantize → middle op → Quantize]
    → QLinearConv(cout→cout, k3) → Dequantize: an int8 model, optionally with a float op
    between the two convolutions."""
    rng = np.random.default_rng(0)

    def init(name: str, value: object, dtype: object) -> onnx.TensorProto:
        return numpy_helper.from_array(np.asarray(value, dtype), name)

    inits = [init("s", 0.05, np.float32), init("zp", 0, np.int8),
             init("w1", rng.integers(-127, 128, (cout, 3, 3, 3)), np.int8),
             init("w2", rng.integers(-127, 128, (cout, cout, 3, 3)), np.int8)]
    q = ["s", "zp"]
    nodes = [helper.make_node("QuantizeLinear", ["input", *q], ["xq"], name="quant"),
             helper.make_node("QLinearConv", ["xq", *q, "w1", *q, *q], ["c1"], kernel_shape=[3, 3],
                              pads=[1, 1, 1, 1], name="conv1")]
    x = "c1"
    if middle:
        nodes += [helper.make_node("DequantizeLinear", [x, *q], ["d1"], name="dequant_mid"),
                  helper.make_node(middle, ["d1"], ["m"], name="middle"),
                  helper.make_node("QuantizeLinear", ["m", *q], ["mq"], name="requant")]
        x = "mq"
    nodes += [helper.make_node("QLinearConv", [x, *q, "w2", *q, *q], ["c2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                               name="conv2"),
              helper.make_node("DequantizeLinear", ["c2", *q], ["output"], name="dequant")]
    graph = helper.make_graph(nodes, "qnet", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, cout, size, size])],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    checker.check_model(model)
    return model


@pytest.fixture
def cli(tmp_path):
    db = tmp_path / "h.db"

    def call(*args: str, registry: Path = REPO_REGISTRY):
        return run_cli("--registry", str(registry), "--db", str(db), *args)

    return call


def save(tmp_path: Path, name: str, model: onnx.ModelProto) -> str:
    path = tmp_path / name
    onnx.save(model, path)
    return str(path)


def test_profile_on_sim_raspi4_from_the_repo_registry(cli, tmp_path):
    model = save(tmp_path, "resnet8.onnx", DEMO_MODELS["resnet8-cifar"]())
    p = cli("profile", model, "--device", "sim-raspi4", "--json", *FAST)
    assert p.returncode == 0, p.stderr
    o = json.loads(p.stdout)
    assert o["provenance"]["simulated"] is True and o["provenance"]["profile"] == "raspi4"
    assert o["energy_mj"] > 0 and o["latency_ms"] > 0
    assert o["kernels"] and all(k["placement"] == "cpu" and k["latency_ms"] >= 0 for k in o["kernels"])
    assert o["kernels"][0]["ops"] == ["Conv", "BatchNormalization", "Relu"]


def test_float_model_on_sim_edgetpu_is_a_clear_compile_error(cli, tmp_path):
    model = save(tmp_path, "float.onnx", DEMO_MODELS["resnet8-cifar"]())
    p = cli("profile", model, "--device", "sim-edgetpu")
    assert p.returncode == 1
    lines = [ln for ln in p.stderr.splitlines() if "cannot compile" in ln]
    assert lines and all("float.onnx" in ln for ln in lines)
    msg = " ".join(p.stderr.split())
    assert "edgetpu cannot compile the model: it runs int8, uint8 models only" in msg and "float32" in msg
    assert "Traceback" not in p.stderr


def test_int8_model_with_an_unsupported_op_reports_the_cpu_fallback(cli, tmp_path):
    model = save(tmp_path, "q.onnx", qlinear_net(middle="HardSwish"))
    tpu = json.loads(cli("profile", model, "--device", "sim-edgetpu", "--json", *FAST).stdout)
    # Edge TPU: the first unsupported op (the Dequantize before HardSwish) and everything after it run on the CPU.
    assert tpu["provenance"]["fallback_ops"] == ["dequant_mid", "middle", "requant", "conv2", "dequant"]
    where = {k["name"]: k["placement"] for k in tpu["kernels"]}
    assert where["quant"] == where["conv1"] == "edgetpu" and where["conv2"] == "cpu"
    assert any(k.get("transfer_ms", 0) > 0 for k in tpu["kernels"] if k["placement"] == "cpu")
    npu = json.loads(cli("profile", model, "--device", "sim-hexagon-npu", "--json", *FAST).stdout)
    # Phone NPU: per-op fallback, the second conv goes back to the NPU.
    assert npu["provenance"]["fallback_ops"] == ["dequant_mid", "middle", "dequant"]
    assert {k["name"]: k["placement"] for k in npu["kernels"]}["conv2"] == "npu"
    clean = json.loads(cli("profile", save(tmp_path, "c.onnx", qlinear_net()), "--device", "sim-edgetpu", "--json",
                           *FAST).stdout)
    assert clean["provenance"]["fallback_ops"] == ["dequant"]  # Dequantize is not an Edge TPU op


def test_mcu_model_over_the_sram_limit_is_out_of_memory(cli, tmp_path):
    # Peak at the last node: the int8 conv output (8×144×144 B) and the float output (4× that) = 810 KB.
    big = save(tmp_path, "big.onnx", qlinear_net(size=144, cout=8))
    p = cli("profile", big, "--device", "sim-cortex-m4")
    assert p.returncode == 1 and "Traceback" not in p.stderr
    msg = " ".join(p.stderr.split())
    assert ("big.onnx: out of memory on cortex_m4: peak SRAM 818.0 KB (activations 810.0 KB at node 'dequant' "
            "+ runtime 8 KB) exceeds the 640 KB limit") in msg
    ok = cli("profile", big, "--device", "sim-cortex-m7", "--json", *FAST)  # 1 MB SRAM: fits
    assert ok.returncode == 0, ok.stderr
    o = json.loads(ok.stdout)
    assert o["provenance"]["peak_sram_kb"] == 818.0 and o["provenance"]["flash_kb"] > 64


def test_same_seed_same_numbers_other_seed_other_noise_same_median(tmp_path):
    reg = tmp_path / "devices.yaml"
    reg.write_text("devices:\n" + "".join(f"  - name: tpu-{n}\n    url: sim://edgetpu?seed={s}\n    runtime: sim\n"
                                          for n, s in (("a", 0), ("b", 0), ("c", 5))))
    model = save(tmp_path, "q.onnx", qlinear_net(size=64, cout=32))
    policy = Policy(warmup=5, warmup_s=0, min_runs=100, max_runs=100, min_time_s=0, target_ci=0)
    a, b, c = (farm.profile([model], device=f"tpu-{n}", registry=reg, db=tmp_path / "h.db", policy=policy)[0]
               .measurement for n in "abc")
    assert a.samples_ms == b.samples_ms and a.energy_mj == b.energy_mj
    assert a.samples_ms != c.samples_ms
    assert c.stats.median_ms == pytest.approx(a.stats.median_ms, rel=0.02)


def test_thermal_throttling_under_sustained_load_not_in_a_short_run(cli, tmp_path):
    b = OnnxBuilder((1, 32, 112, 112))
    x = b.conv("input", 64, 3)
    for _ in range(2):
        x = b.conv(x, 64, 3)
    model = save(tmp_path, "heavy.onnx", b.build("heavy", x))
    short = json.loads(cli("profile", model, "--device", "sim-adreno-gpu", "--json", *FAST).stdout)
    assert short["provenance"]["thermal"]["throttled_runs"] == 0
    assert short["provenance"]["temperature_c"] < short["provenance"]["thermal"]["throttle_c"]
    # ~2 minutes of virtual full load: the GPU heats past its threshold and its clock drops.
    p = cli("profile", model, "--device", "sim-adreno-gpu", "--json", "--force", "--warmup", "0", "--warmup-time", "0",
            "--runs", "20000", "--min-time", "120", "--max-time", "130", "--target-ci", "0")
    long = json.loads(p.stdout)
    th = long["provenance"]["thermal"]
    assert th["throttled"] and 0.2 * th["runs"] < th["throttled_runs"] < th["runs"]
    from farm.store.sqlite import SqliteStore

    raw = [m for m in SqliteStore(tmp_path / "h.db").measurements(device="sim-adreno-gpu") if len(m.samples_ms) > 1000]
    late = raw[0].samples_ms[-100:]  # the end of the run is throttled: a slower clock, slower runs
    assert min(late) > 1.3 * short["latency_ms"]
    # The measurement protocol flags the throttled tail as outliers, as it would on a real phone.
    assert long["latency_stats"]["n_outliers"] > 0.2 * th["runs"]


def test_bitfusion_reads_bit_widths_from_the_graph(tmp_path):
    from farm.ir.bits import with_bit_widths
    from farm.sim.model import simulate
    from farm.sim.profile import load_profile
    from farm.zoo.nets import build_net

    p = load_profile("bitfusion")
    g = build_net("resnet8", dtype="int8")
    t8 = simulate(g, p).latency_ms
    t4 = simulate(with_bit_widths(g, 4, 4), p).latency_ms
    t2 = simulate(with_bit_widths(g, 2, 2), p).latency_ms
    assert t8 > t4 > t2 and t8 / t2 > 1.3  # fewer bits: less compute and fewer bytes
    first = g.nodes[0].name
    mixed = simulate(with_bit_widths(g, 2, 2, per_node={first: (8, 8)}), p)
    assert mixed.kernels[0].w_bits == 8 and mixed.kernels[1].w_bits == 2 and t2 < mixed.latency_ms < t4


def test_bitfusion_takes_per_layer_bit_widths_from_onnx_metadata(cli, tmp_path):
    plain = qlinear_net(size=32, cout=64)
    low = qlinear_net(size=32, cout=64)
    helper.set_model_props(low, {"hwfarm.bit_widths": json.dumps({"*": [2, 2], "conv1": [8, 8]})})
    a = json.loads(cli("profile", save(tmp_path, "p.onnx", plain), "--device", "sim-bitfusion", "--json", *FAST).stdout)
    b = json.loads(cli("profile", save(tmp_path, "l.onnx", low), "--device", "sim-bitfusion", "--json", *FAST).stdout)
    bits = {k["name"]: (k.get("w_bits"), k.get("a_bits")) for k in b["kernels"]}
    assert bits["conv1"] == (8, 8) and bits["conv2"] == (2, 2)
    assert {k["name"]: k.get("w_bits") for k in a["kernels"]}["conv2"] == 8  # int8 default
    assert b["latency_ms"] < a["latency_ms"]
    bad = qlinear_net()
    helper.set_model_props(bad, {"hwfarm.bit_widths": json.dumps({"nope": [2, 2]})})
    p = cli("profile", save(tmp_path, "bad.onnx", bad), "--device", "sim-bitfusion")
    assert p.returncode == 2 and "no node named 'nope'" in " ".join(p.stderr.split())
