"""Simulated devices: the analytical model's behaviours and the device's determinism."""

from __future__ import annotations

import json

import onnx
import pytest
from onnx import TensorProto, helper

from farm.agent.measure import Policy
from farm.devices import open_device
from farm.errors import InputError
from farm.formats.onnx import graph_from_onnx
from farm.ir.kernels import form_kernels
from farm.measurement import Settings
from farm.registry.spec import DeviceSpec
from farm.sim.model import simulate
from farm.sim.profile import load_profile, profile_names
from farm.workload import load_workload
from farm.zoo.onnx_models import DEMO_MODELS, OnnxBuilder

from ..conftest import FAST, REGISTRY, run_cli

POLICY = Policy(warmup=5, warmup_s=0, min_runs=20, min_time_s=0, max_runs=300)


def conv_graph(cout: int, cin: int = 16, size: int = 16):
    b = OnnxBuilder((1, cin, size, size))
    return graph_from_onnx(b.build("c", b.conv("input", cout, 3)))


@pytest.fixture
def resnet8(tmp_path):
    path = tmp_path / "resnet8.onnx"
    onnx.save(DEMO_MODELS["resnet8-cifar"](), path)
    return load_workload(path)


def test_every_shipped_profile_loads():
    names = profile_names()
    assert "raspi4" in names
    for n in names:
        p = load_profile(n)
        assert p.name == n and p.sources and "default" in p.kernels


def test_fusion_follows_the_profile():
    g = conv_graph(16)
    assert [k.ops for k in form_kernels(g, (("Conv", "BatchNormalization", "Relu"),))] == [
        ("Conv", "BatchNormalization", "Relu")]
    assert [k.ops for k in form_kernels(g, ())] == [("Conv",), ("BatchNormalization",), ("Relu",)]
    # Fused kernels don't move the intermediate tensors: fewer bytes than the sum of the parts.
    fused = form_kernels(g, (("Conv", "BatchNormalization", "Relu"),))[0]
    assert fused.bytes < sum(k.bytes for k in form_kernels(g, ()))


def test_fusion_needs_a_single_consumer():
    # Conv output feeds both BN and a residual Add: a device cannot fuse the BN into the conv.
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    w = onnx.numpy_helper.from_array(__import__("numpy").ones((4, 4, 1, 1), "float32"), "w")
    bn = [onnx.numpy_helper.from_array(__import__("numpy").ones(4, "float32"), n) for n in ("s", "b", "m", "v")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[1, 1]),
             helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"]),
             helper.make_node("Add", ["n", "c"], ["y"])]
    g = graph_from_onnx(helper.make_model(helper.make_graph(nodes, "g", [x], [y], [w, *bn])))
    assert [k.ops for k in form_kernels(g, (("Conv", "BatchNormalization"),))] == [
        ("Conv",), ("BatchNormalization",), ("Add",)]


def test_channel_alignment_makes_latency_step():
    p = load_profile("raspi4")
    t = {c: simulate(conv_graph(c), p).latency_ms for c in (15, 16, 17, 20)}
    assert t[16] - t[15] < (t[17] - t[16]) / 4  # 15 → 16 fills the vector; 17 starts a new one
    assert t[17] == pytest.approx(t[20], rel=0.02)  # 17..20 cost the same aligned MACs


def test_threads_scale_by_amdahl():
    p = load_profile("raspi4")
    g = graph_from_onnx(DEMO_MODELS["resnet8-cifar"]())
    t1, t4, t8 = (simulate(g, p, threads=t).latency_ms for t in (1, 4, 8))
    assert t4 < t1 / 1.8 and t8 == t4  # no gain past the profile's core count


def test_device_is_simulated_deterministic_and_seeded(resnet8):
    def run(seed):
        dev = open_device(DeviceSpec(name="s", url=f"sim://raspi4?seed={seed}"))
        return dev.run(resnet8, Settings(runtime="sim", policy=POLICY))

    a, b, c = run(0), run(0), run(1)
    assert a.samples_ms == b.samples_ms and a.stats == b.stats
    assert a.samples_ms != c.samples_ms
    assert a.stats.median_ms == pytest.approx(c.stats.median_ms, rel=0.03)
    assert a.provenance["simulated"] is True and a.provenance["profile"] == "raspi4"
    assert a.energy_mj is not None and a.energy_mj > 0
    assert [k["ops"] for k in a.breakdown][0] == ["Conv", "BatchNormalization", "Relu"]
    invoke_ms = load_profile("raspi4").invoke_overhead_us / 1e3
    assert sum(k["latency_ms"] for k in a.breakdown) + invoke_ms == pytest.approx(a.provenance["noise_free_latency_ms"])
    assert a.stats.median_ms == pytest.approx(a.provenance["noise_free_latency_ms"], rel=0.02)


def test_noise_has_outliers_for_the_protocol_to_reject(resnet8):
    dev = open_device(DeviceSpec(name="s", url="sim://raspi4?seed=3"))
    m = dev.run(resnet8, Settings(runtime="sim", policy=Policy(warmup=0, min_time_s=0, max_runs=400, target_ci=0)))
    assert len(m.samples_ms) == 400 and 0 < m.stats.n_outliers < 40


@pytest.mark.parametrize("url, match", [("sim://nope", "unknown simulator profile 'nope'"),
                                        ("sim://raspi4?seed=x", "seed")])
def test_bad_sim_urls(url, match):
    with pytest.raises(InputError, match=match):
        open_device(DeviceSpec(name="s", url=url))


def test_profile_through_the_cli_is_marked_and_broken_down(tmp_path, onnx_file):
    reg = tmp_path / "devices.yaml"
    reg.write_text(REGISTRY + "  - name: sim-raspi4\n    url: sim://raspi4?seed=0\n  - name: sim-bad\n    url: sim://nope\n")
    db = tmp_path / "h.db"
    p = run_cli("--registry", str(reg), "--db", str(db), "profile", str(onnx_file("a")), "--device", "sim-raspi4",
                "--json", *FAST)
    assert p.returncode == 0, p.stderr
    o = json.loads(p.stdout)
    assert o["provenance"]["simulated"] is True and o["kernels"] and o["energy_mj"] > 0
    assert o["settings"]["runtime"] == "sim"
    shown = run_cli("--registry", str(reg), "--db", str(db), "dataset", "show", "--json")
    assert json.loads(shown.stdout)["simulated"] is True
    bad = run_cli("--registry", str(reg), "--db", str(db), "profile", str(onnx_file("a")), "--device", "sim-bad")
    assert bad.returncode == 2 and "unknown simulator profile" in bad.stderr
