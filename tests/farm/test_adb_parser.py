"""The benchmark_model parser on real captured outputs (tests/farm/golden/benchmark_model/,
sources in SOURCES.md there), table-driven; plus the pure device-facts and battery parts."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from farm.agent.measure import Policy
from farm.devices.adb.benchmark_model import classify_failure, latency_from_output, parse_benchmark_output
from farm.devices.adb.device import benchmark_args, parse_device_facts
from farm.devices.adb.meters import BatterySample, battery_power, parse_samples
from farm.errors import InputError
from farm.measurement import Settings
from farm.registry.spec import DeviceSpec

GOLDEN = Path(__file__).parent / "golden" / "benchmark_model"

# file → expected values (µs for timings, MB for memory); None = the tool did not print it.
CASES = {
    "tf1.14_zedboard_quant_op_profiling.txt": dict(
        ok=True, generation="summary-v1", init_us=18764, first_inference_us=None, warmup_avg_us=395037,
        inference_avg_us=394183, runs=(50, 394183, 4373, None), warmup_count=2, memory_overall_mb=None,
        n_ops=31, first_op=("CONV_2D", 22.697), op_types=5, top_type=("CONV_2D", 15, 322.055)),
    "tf2.8_riscv64_op_profiling.txt": dict(
        ok=True, generation="summary-v2", init_us=17187, first_inference_us=3512391, warmup_avg_us=3.51239e6,
        inference_avg_us=2.95034e6, runs=(50, 2.95034e6, 109798, None), warmup_count=1, memory_overall_mb=46.0859,
        n_ops=31, first_op=("CONV_2D", 60.957), op_types=5, top_type=("CONV_2D", 15, 2651.853)),
    "tf2.4_mi11_nnapi_gpu_op_profiling.txt": dict(
        ok=True, generation="summary-v2", init_us=404292, first_inference_us=188086, warmup_avg_us=175313,
        inference_avg_us=156669, runs=(50, 156669, 2352, None), warmup_count=None, memory_overall_mb=61.0078,
        n_ops=11, first_op=("STRIDED_SLICE", 2.118), op_types=3, top_type=("TfLiteNnapiDelegate", 3, 149.483)),
    "tf2.1x_xnnpack_p5_median_p95.txt": dict(
        ok=True, generation="summary-v2", init_us=119515, first_inference_us=87112, warmup_avg_us=58147.4,
        inference_avg_us=63743.2, runs=(1000, 63743.2, 60716, 51891), warmup_count=9, memory_overall_mb=55.4961,
        n_ops=0, first_op=None, op_types=0, top_type=None),
    "tf2.x_gpu_full_delegation.txt": dict(
        ok=True, generation="summary-v2", init_us=870557, first_inference_us=130565, warmup_avg_us=122373,
        inference_avg_us=119375, runs=(50, 119375, 1948, None), warmup_count=4, memory_overall_mb=None,
        n_ops=0, first_op=None, op_types=0, top_type=None),
    "tf2.1x_xnnpack_partial_allocate_failed.txt": dict(
        ok=False, generation="unknown", init_us=None, first_inference_us=None, warmup_avg_us=None,
        inference_avg_us=None, runs=None, warmup_count=None, memory_overall_mb=None, n_ops=0, first_op=None,
        op_types=0, top_type=None),
    "tf2.4_mi11_nnapi_dsp_failed.txt": dict(
        ok=False, generation="unknown", init_us=None, first_inference_us=None, warmup_avg_us=None,
        inference_avg_us=None, runs=None, warmup_count=None, memory_overall_mb=None, n_ops=0, first_op=None,
        op_types=0, top_type=None),
}


def test_every_golden_file_is_covered_and_documented():
    files = {p.name for p in GOLDEN.glob("*.txt")}
    assert files == set(CASES)
    sources = (GOLDEN / "SOURCES.md").read_text()
    assert all(f"`{name}`" in sources for name in files)


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_outputs(name):
    exp = CASES[name]
    out = parse_benchmark_output((GOLDEN / name).read_text())
    assert out.ok is exp["ok"] and out.generation == exp["generation"]
    for key in ("init_us", "first_inference_us", "warmup_avg_us", "inference_avg_us", "memory_overall_mb"):
        got, want = getattr(out, key), exp[key]
        assert (got is None) if want is None else got == pytest.approx(want), key
    if exp["runs"] is None:
        assert out.runs is None
    else:
        count, avg, std, median = exp["runs"]
        assert (out.runs.count, out.runs.avg_us, out.runs.std_us, out.runs.median_us) == (count, avg, std, median)
    assert (out.warmup.count if out.warmup else None) == exp["warmup_count"]
    assert len(out.ops) == exp["n_ops"] and len(out.op_types) == exp["op_types"]
    if exp["first_op"]:
        assert (out.ops[0].node_type, out.ops[0].avg_ms) == exp["first_op"]
        assert out.ops[0].times_called == 1 and out.ops[0].name.startswith("[")
        # the table's percentages are of the regular runs and add up to ~100
        assert sum(r.percent for r in out.ops) == pytest.approx(100, abs=0.1)
    if exp["top_type"]:
        t = out.op_types[0]
        assert (t.node_type, t.count, t.avg_ms) == exp["top_type"]


def test_initialization_profile_is_not_taken_for_the_op_table():
    out = parse_benchmark_output((GOLDEN / "tf2.8_riscv64_op_profiling.txt").read_text())
    assert all(r.node_type != "AllocateTensors" for r in out.ops)
    assert out.ops[-1].node_type == "SOFTMAX" and out.ops[-1].name.endswith(":30")


def test_delegate_lines():
    xnn = parse_benchmark_output((GOLDEN / "tf2.1x_xnnpack_p5_median_p95.txt").read_text()).delegate
    assert xnn.applied == ("TfLiteXNNPackDelegate",) and (xnn.replaced_nodes, xnn.total_nodes) == (2168, 2168)
    assert xnn.coverage == "full" and xnn.partitions == 1
    part = parse_benchmark_output((GOLDEN / "tf2.1x_xnnpack_partial_allocate_failed.txt").read_text()).delegate
    assert (part.replaced_nodes, part.total_nodes, part.partitions, part.coverage) == (2136, 2168, 65, "partial")
    gpu = parse_benchmark_output((GOLDEN / "tf2.x_gpu_full_delegation.txt").read_text())
    assert gpu.delegate.coverage == "full" and "GPU" in gpu.delegate.created and gpu.params["Use gpu"] == "1"
    nnapi = parse_benchmark_output((GOLDEN / "tf2.4_mi11_nnapi_gpu_op_profiling.txt").read_text())
    kernels = {r.node_type for r in nnapi.ops if r.is_delegate}
    assert kernels == {"TfLiteNnapiDelegate"}
    assert {r.node_type for r in nnapi.ops if not r.is_delegate} == {"STRIDED_SLICE", "RESIZE_NEAREST_NEIGHBOR"}


def test_gpu_unsupported_ops_and_logcat_prefixes():
    # Lines as the Android benchmark app logs them (tensorflow/tensorflow#56301, #59232) and the
    # GPU delegate's list of unsupported ops (mattn/go-tflite#7).
    text = (
        "05-31 10:38:42.589 22206 22206 I tflite  : Created TensorFlow Lite delegate for GPU.\n"
        "05-31 10:38:42.607 22206 22206 E tflite  : Following operations are not supported by GPU delegate:\n"
        "05-31 10:38:42.607 22206 22206 E tflite  : UNPACK: Operation is not supported.\n"
        "05-31 10:38:42.607 22206 22206 E tflite  : 294 operations will run on the GPU, and the remaining 3 operations will run on the CPU.\n"
        "01-11 23:28:59.036  7651  7651 I tflite  : Initialized session in 9.34ms.\n"
        "01-11 23:29:03.662  7651  7651 I tflite  : count=50 first=1 curr=2 min=1 max=3 avg=2 std=0\n"
        "01-11 23:29:03.662  7651  7651 I tflite  : Inference timings in us: Init: 9340, First inference: 5, "
        "Warmup (avg): 4, Inference (avg): 2\n")
    out = parse_benchmark_output(text)
    assert out.ok and out.inference_avg_us == 2 and out.init_session_ms == 9.34
    assert out.delegate.unsupported_ops == ("UNPACK",) and out.delegate.cpu_ops_after_split == 3
    assert out.delegate.coverage == "partial" and out.errors == ()


@pytest.mark.parametrize(("name", "kind"), [("tf2.1x_xnnpack_partial_allocate_failed.txt", "model"),
                                            ("tf2.4_mi11_nnapi_dsp_failed.txt", "delegate")])
def test_failures_are_classified(name, kind):
    text = (GOLDEN / name).read_text()
    out = parse_benchmark_output(text)
    assert not out.ok and out.errors and classify_failure(out, text) == kind


@pytest.mark.parametrize("text", ["", "garbage\n\x00\x01", "count=abc", "Inference timings in us: Init: x"])
def test_odd_input_never_raises(text):
    out = parse_benchmark_output(text)
    assert not out.ok and out.runs is None
    with pytest.raises(ValueError):
        latency_from_output(out)


def test_latency_uses_the_tools_median_and_names_the_derivations():
    stats, method = latency_from_output(parse_benchmark_output((GOLDEN / "tf2.1x_xnnpack_p5_median_p95.txt").read_text()))
    assert stats["median_ms"] == pytest.approx(51.891) and stats["mean_ms"] == pytest.approx(63.7432)
    assert stats["n"] == 1000 and stats["cv"] == pytest.approx(60.716 / 63.7432)
    assert stats["p10_ms"] == pytest.approx(49.088)  # mean − 1.28·std is below min: clipped to min
    assert stats["ci_low_ms"] < stats["median_ms"] < stats["ci_high_ms"]
    assert method["median"] == "benchmark_model median" and "normal approximation" in method["p10_p90"]
    stats, method = latency_from_output(parse_benchmark_output((GOLDEN / "tf2.8_riscv64_op_profiling.txt").read_text()))
    assert stats["median_ms"] == pytest.approx(2950.34) and "avg" in method["median"]
    assert stats["p10_ms"] == pytest.approx(2950.34 - 1.2816 * 109.798)
    half = 1.96 * 1.2533 * 109.798 / math.sqrt(50)
    assert stats["ci_high_ms"] - stats["median_ms"] == pytest.approx(half)


def test_benchmark_args_for_delegates():
    s = Settings(runtime="benchmark_model", threads=4, policy=Policy(warmup=3, warmup_s=0, max_runs=40, max_time_s=9))
    base = benchmark_args(DeviceSpec(name="p", url="adb://h:5555"), s, "/m.tflite")
    assert base == ["--graph=/m.tflite", "--num_threads=4", "--warmup_runs=3", "--warmup_min_secs=0", "--num_runs=40",
                    "--min_secs=0", "--max_secs=9", "--enable_op_profiling=true"]

    def flags(**kw):
        return benchmark_args(DeviceSpec(name="p", url="adb://h:5555", **kw), s, "/m.tflite")[len(base):]

    assert flags(delegate="gpu") == ["--use_gpu=true"]
    assert flags(delegate="nnapi", delegate_options={"nnapi_accelerator_name": "qti-dsp"}) == [
        "--use_nnapi=true", "--nnapi_accelerator_name=qti-dsp"]
    assert flags(delegate="xnnpack") == ["--use_xnnpack=true"] and flags(delegate="cpu") == ["--use_xnnpack=false"]
    assert flags(delegate="/vendor/lib64/libQnnTFLiteDelegate.so",
                 delegate_options={"backend_type": "htp", "htp_performance_mode": "2"}) == [
        "--external_delegate_path=/vendor/lib64/libQnnTFLiteDelegate.so",
        "--external_delegate_options=backend_type:htp;htp_performance_mode:2"]
    with pytest.raises(InputError, match="'delegate'"):
        flags(delegate="tpu")
    with pytest.raises(InputError, match="delegate_options"):
        flags(delegate="gpu", delegate_options={"a;b": "1"})


def test_device_facts_from_dumpsys():
    text = """prop ro.product.model=SM-S911B
prop ro.product.manufacturer=samsung
prop ro.build.version.release=14
prop ro.build.version.sdk=34
prop ro.soc.model=
prop ro.hardware=qcom
nproc 8
Current Battery Service state:
  AC powered: false
  USB powered: true
  status: 2
  level: 57
  voltage: 4012
  temperature: 298
Thermal Status: 1
freq /sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq 1785600
freq /sys/devices/system/cpu/cpu7/cpufreq/scaling_cur_freq 3187200
"""
    f = parse_device_facts(text)
    assert f["model"] == "SM-S911B" and f["android"] == "14" and f["soc"] == "qcom" and f["cpu_count"] == 8
    assert f["battery_level"] == 57 and f["battery_temperature_c"] == pytest.approx(29.8)
    assert f["battery_status"] == "Charging" and f["powered_by"] == "USB" and f["thermal_status"] == 1
    assert f["cpu_freq_mhz"] == {"cpu0": 1785, "cpu7": 3187}


@pytest.mark.parametrize(("cur", "volt", "status", "watts", "conv"), [
    (-450000, 3950000, "Discharging", 0.450 * 3.95, "negative-discharge"),   # Pixel: µA, negative
    (450000, 3950000, "Discharging", 0.450 * 3.95, "positive-discharge"),    # many Samsung builds
    (450, 3950, "Discharging", 0.450 * 3.95, "positive-discharge"),          # mA and mV kernels
])
def test_battery_power_units_and_sign(cur, volt, status, watts, conv):
    samples = parse_samples("".join(f"hwfarm-e {cur} {volt}\n" for _ in range(5)) + "noise\nhwfarm-e x y\n")
    assert len(samples) == 5
    p = battery_power(samples, status)
    assert p.power_w == pytest.approx(watts) and p.sign_convention == conv


def test_battery_power_refuses_while_charging():
    p = battery_power([BatterySample(800000, 4200000)] * 3, "Charging")
    assert p.power_w is None and "charging" in (p.reason or "")
    assert battery_power([], "Discharging").power_w is None
