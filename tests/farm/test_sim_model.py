"""The simulator's accelerator/MCU/thermal/bit-serial features on small synthetic profiles
(numbers chosen so each expectation can be computed by hand)."""

from __future__ import annotations

import pytest

from farm.agent.measure import Policy
from farm.devices.sim import SimDevice
from farm.errors import InputError, ModelError
from farm.ir.bits import bit_widths, with_bit_widths
from farm.ir.builder import IRBuilder
from farm.ir.memory import flash_kb, peak_sram_kb
from farm.measurement import Settings
from farm.registry.spec import DeviceSpec
from farm.sim.model import CompileError, OutOfMemoryError, simulate
from farm.sim.profile import SimProfile

BASE = {"name": "t", "description": "test", "device_class": "test", "vector_width": 1,
        "kernels": {"default": {"gmacs": 1.0, "gbs": 1.0, "overhead_us": 10.0}},
        "noise": {"cv": 0.0, "outlier_rate": 0.0}}
HOST = {"kernels": {"default": {"gmacs": 0.1, "gbs": 1.0, "overhead_us": 20.0}}}


def profile(**kw: object) -> SimProfile:
    return SimProfile.model_validate(BASE | kw)


def accel(fallback: str = "per_op", **kw: object) -> SimProfile:
    return profile(dtypes=["int8"], host=HOST, accelerator={
        "name": "npu", "unsupported_ops": ["Erf"], "fallback": fallback, "transfer_gbs": 1.0,
        "transfer_overhead_us": 100.0}, **kw)


def net(dtype: str = "int8", odd: bool = True):
    """conv → (Erf) → conv → conv: 8×8×8, 3×3 kernels."""
    b = IRBuilder((1, 8, 8, 8), dtype=dtype)
    x = b.conv("c1", "input", 8, 3)
    if odd:
        x = b.node("erf", "Erf", [x], b.shape(x))
    x = b.conv("c2", x, 8, 3)
    x = b.conv("c3", x, 8, 3)
    return b.build("n", x)


def test_per_op_fallback_runs_only_the_unsupported_op_on_the_cpu():
    r = simulate(net(), accel())
    assert [k.placement for k in r.kernels] == ["npu", "cpu", "npu", "npu"]
    assert r.fallback_ops == ["erf"]
    # Crossings: input → npu, c1 out → cpu, erf out → npu, c3 out → host at the end.
    crossing = [k.transfer_ms > 0 for k in r.kernels]
    assert crossing == [True, True, True, False] and r.output_transfer_ms > 0
    t = 8 * 8 * 8 * 1  # bytes of one int8 activation
    assert r.kernels[1].transfer_ms == pytest.approx(0.1 + t / 1e6)


def test_edgetpu_rule_everything_after_the_first_unsupported_op_runs_on_the_cpu():
    r = simulate(net(), accel("rest_of_graph"))
    assert [k.placement for k in r.kernels] == ["npu", "cpu", "cpu", "cpu"]
    assert r.fallback_ops == ["erf", "c2", "c3"]
    assert r.latency_ms > simulate(net(), accel("per_op")).latency_ms  # the slow host does two convs


def test_no_fallback_without_unsupported_ops():
    r = simulate(net(odd=False), accel())
    assert {k.placement for k in r.kernels} == {"npu"} and r.fallback_ops == []


def test_float_model_on_an_int8_accelerator_does_not_compile():
    with pytest.raises(CompileError, match="int8 models only.*float32") as e:
        simulate(net("float32"), accel())
    assert isinstance(e.value, ModelError) and e.value.exit_code == 1


def test_cpu_profiles_refuse_unsupported_dtypes():
    with pytest.raises(CompileError, match="cannot compile node 'c1'"):
        simulate(net("float16"), profile(dtypes=["float32"]))


def test_parameters_beyond_onchip_sram_stream_over_the_link():
    b = IRBuilder((1, 64), dtype="int8")
    x = b.node("fc1", "Gemm", ["input"], (1, 1024), {"weight": (1024, 64)}, transB=1)
    x = b.node("fc2", "Gemm", [x], (1, 1024), {"weight": (1024, 1024)}, transB=1)
    g = b.build("fc", x)
    roomy = simulate(g, accel(onchip={"sram_kb": 4096, "link_gbs": 0.5}))
    tight = simulate(g, accel(onchip={"sram_kb": 128, "link_gbs": 0.5}))
    assert all(k.stream_ms == 0 for k in roomy.kernels)
    # fc1's 64 KB fit; of fc2's 1024 KB, 64 KB fit and 960 KB stream at 0.5 GB/s.
    assert tight.kernels[0].stream_ms == 0
    assert tight.kernels[1].stream_ms == pytest.approx(960 * 1024 / 0.5e6)
    assert tight.latency_ms - roomy.latency_ms == pytest.approx(960 * 1024 / 0.5e6)


def test_peak_sram_follows_tensor_liveness():
    b = IRBuilder((1, 4, 16, 16), dtype="int8")  # 1 KB input
    a = b.conv("a", "input", 8, 3)  # 2 KB
    c = b.conv("c", a, 8, 3)  # 2 KB; input is dead after 'a'
    d = b.add("d", a, c)  # a, c, d live together: 6 KB
    e = b.conv("e", d, 2, 1)  # 0.5 KB
    g = b.build("g", e)
    peak, where = peak_sram_kb(g)
    assert (peak, where) == (6.0, "d")
    assert flash_kb(g) == pytest.approx((8 * 4 * 9 + 8 * 8 * 9 + 2 * 8) / 1024)


def test_memory_counts_per_layer_bit_widths():
    b = IRBuilder((1, 4, 16, 16), dtype="int8")  # 1 KB input
    a = b.conv("a", "input", 8, 3)  # 2 KB at 8 bits
    c = b.conv("c", a, 8, 3)
    g = b.build("g", c)
    assert peak_sram_kb(g) == (4.0, "c")
    # weights of "a" at 4 bits; "c" reads "a" at 2 bits
    mixed = with_bit_widths(g, per_node={"a": (4, 8), "c": (8, 2)})
    assert flash_kb(mixed) == pytest.approx((8 * 4 * 9 / 2 + 8 * 8 * 9) / 1024)
    assert peak_sram_kb(mixed) == (2.5, "c")  # a: 2 KB -> 0.5 KB; c's output stays 2 KB


def test_mcu_over_the_sram_or_flash_limit_is_out_of_memory_naming_peak_and_limit():
    g = net(odd=False)  # 0.5 KB activations, 3 × 576 B of weights
    ok = simulate(g, profile(dtypes=["int8"], mcu={"sram_kb": 2, "flash_kb": 64, "runtime_flash_kb": 10}))
    assert ok.peak_sram_kb == pytest.approx(1.0) and ok.flash_kb == pytest.approx(10 + 3 * 576 / 1024)
    with pytest.raises(OutOfMemoryError, match=r"peak SRAM 1.5 KB .* exceeds the 1.2 KB limit"):
        simulate(g, profile(dtypes=["int8"], mcu={"sram_kb": 1.2, "flash_kb": 64, "runtime_sram_kb": 0.5}))
    with pytest.raises(OutOfMemoryError, match=r"flash 11.7 KB .* exceeds the 8 KB limit"):
        simulate(g, profile(dtypes=["int8"], mcu={"sram_kb": 64, "flash_kb": 8, "runtime_flash_kb": 10}))


def test_bit_serial_latency_scales_with_weight_times_activation_bits():
    p = profile(dtypes=["int8"], bitserial={"brick_bits": 2, "bricks": 16, "reference_bits": [8, 8]},
                kernels={"default": {"gmacs": 1.0}})
    g = net(odd=False)
    t8 = simulate(g, p).latency_ms
    t2 = simulate(with_bit_widths(g, 2, 2), p)
    t4x2 = simulate(with_bit_widths(g, 4, 2), p).latency_ms
    assert t8 / t2.latency_ms == pytest.approx(16)
    assert t8 / t4x2 == pytest.approx(8)
    assert [(k.w_bits, k.a_bits) for k in t2.kernels] == [(2, 2)] * 3
    mixed = with_bit_widths(g, per_node={"c1": (8, 8)}, w_bits=2, a_bits=2)
    assert [bit_widths(n) for n in mixed.nodes] == [(8, 8), (2, 2), (2, 2)]
    with pytest.raises(InputError, match="no node named 'zz'"):
        with_bit_widths(g, per_node={"zz": (2, 2)})
    with pytest.raises(CompileError, match="at most 16 bits"):
        simulate(with_bit_widths(g, 32, 8), p)


def test_energy_is_static_plus_dynamic_plus_traffic():
    p = profile(power={"static_w": 1.0, "dynamic_w": 2.0, "pj_per_byte": 100.0})
    r = simulate(net("float32", odd=False), p)
    compute = sum(k.compute_ms for k in r.kernels)
    moved = sum(k.bytes for k in r.kernels)
    assert r.energy_mj == pytest.approx(1.0 * r.latency_ms + 2.0 * compute + 100.0 * moved * 1e-9)


THERMAL = {"ambient_c": 25, "busy_rise_c": 50, "tau_s": 10, "throttle_c": 60, "throttle_clock": 0.5,
           "idle_between_jobs_s": 1}


def _thermal_device(monkeypatch, seed: int = 0) -> SimDevice:
    p = profile(thermal=THERMAL, kernels={"default": {"gmacs": 0.01}})  # 73.7 ms of compute per run
    monkeypatch.setattr("farm.devices.sim.load_profile", lambda name: p)
    return SimDevice(DeviceSpec(name="hot", url=f"sim://t?seed={seed}"))


def test_thermal_throttling_under_sustained_load_not_in_a_short_run(monkeypatch, tmp_path):
    import onnx

    from farm.workload import load_workload
    from farm.zoo.onnx_models import DEMO_MODELS

    path = tmp_path / "r.onnx"
    onnx.save(DEMO_MODELS["resnet8-cifar"](), path)
    w = load_workload(path)
    short = Settings(runtime="sim", policy=Policy(warmup=1, warmup_s=0, min_runs=5, max_runs=5, min_time_s=0))
    long = Settings(runtime="sim", policy=Policy(warmup=1, warmup_s=0, min_runs=600, max_runs=600, min_time_s=0,
                                                 max_time_s=1e9, target_ci=0))
    dev = _thermal_device(monkeypatch)
    a = dev.run(w, short)
    assert a.provenance["thermal"]["throttled_runs"] == 0 and a.provenance["temperature_c"] < 60
    b = dev.run(w, long)  # minutes of virtual busy time: heats past 60 °C and throttles
    th = b.provenance["thermal"]
    assert th["throttled"] and 0 < th["throttled_runs"] < th["runs"]
    assert max(b.samples_ms) > 1.8 * min(b.samples_ms)  # clock halves → compute doubles
    c = dev.run(w, short)  # state carries over: starts hot, still throttled
    assert c.provenance["thermal"]["start_c"] > 60 and c.stats.median_ms > 1.8 * a.stats.median_ms
    again = _thermal_device(monkeypatch)  # a fresh device replays the same history exactly
    assert [again.run(w, s).samples_ms for s in (short, long)] == [a.samples_ms, b.samples_ms]


def test_bad_profile_fields_name_the_field():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="host"):
        profile(accelerator={"name": "x", "transfer_gbs": 1.0})
    with pytest.raises(ValidationError, match="throttle_clock"):
        profile(thermal=THERMAL | {"throttle_clock": 0})
