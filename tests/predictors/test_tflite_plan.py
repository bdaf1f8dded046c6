"""TFLite kernel plans (float32 / int8 .tflite kernels): for int8-only simulated devices, LiteRT on
the host, and phones through benchmark_model against the ADB wire-protocol peer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from farm.ir.memory import flash_kb
from farm.registry.spec import DeviceSpec
from farm.sim.model import CompileError, simulate
from farm.sim.profile import load_profile
from farm.store.sqlite import SqliteStore
from farm.workload import load_workload
from predictors.dataset import kernel_samples
from predictors.features import kernel_quantities
from predictors.kernels import detect_kernels, fusion_rules_for
from predictors.sampling import KernelSpec, build_graph
from predictors.tflite_plan import (
    TfliteSpec,
    fits_for,
    make_tflite_plan,
    parse_dtypes,
    plan_dtypes,
    plan_format,
    refine_tflite_plan,
    tflite_bytes,
)

from ..conftest import REGISTRY, ROOT, run_cli

pytest.importorskip("ai_edge_litert")

EDGETPU = DeviceSpec(name="sim-edgetpu", url="sim://edgetpu?seed=0", runtime="sim")
M4 = DeviceSpec(name="sim-cortex-m4", url="sim://cortex_m4?seed=0", runtime="sim")
BITFUSION = DeviceSpec(name="sim-bitfusion", url="sim://bitfusion?seed=0", runtime="sim")
LITERT = DeviceSpec(name="host-litert", url="local://cpu", runtime="litert", threads=1)
REG = REGISTRY + """  - name: sim-edgetpu
    url: sim://edgetpu?seed=0
    runtime: sim
  - name: sim-bitfusion
    url: sim://bitfusion?seed=0
    runtime: sim
  - name: sim-raspi4
    url: sim://raspi4?seed=0
    runtime: sim
  - name: host-litert
    url: local://cpu
    runtime: litert
    threads: 1
"""


def _load(tmp_path: Path, t: TfliteSpec):
    p = tmp_path / f"{t.name}.tflite"
    p.write_bytes(tflite_bytes(t))
    return load_workload(p)


def test_which_devices_get_which_plan():
    assert plan_format(EDGETPU) == plan_format(M4) == plan_format(BITFUSION) == "tflite"
    assert plan_format(LITERT) == "tflite"
    assert plan_format(DeviceSpec(name="r", url="sim://raspi4", runtime="sim")) == "onnx"
    assert plan_format(DeviceSpec(name="h", url="local://cpu", runtime="onnxruntime")) == "onnx"
    assert plan_dtypes(EDGETPU) == ("int8",) and plan_dtypes(LITERT) == ("float32", "int8")
    assert plan_dtypes(LITERT.model_copy(update={"delegate": "gpu"})) == ("float32",)
    assert parse_dtypes("int8", LITERT) == ("int8",)
    from farm.errors import InputError

    with pytest.raises(InputError, match="float32"):
        parse_dtypes("float32", EDGETPU)  # an int8-only chip refuses float kernels
    with pytest.raises(InputError, match="unknown dtype"):
        parse_dtypes("fp8", LITERT)


def test_plan_is_deterministic_and_every_model_is_one_kernel(tmp_path):
    plan = make_tflite_plan(budget=60, seed=3, dtypes=("float32", "int8"))
    again = make_tflite_plan(budget=60, seed=3, dtypes=("float32", "int8"))
    assert [t.name for t in plan] == [t.name for t in again] and len({t.name for t in plan}) == 60
    assert {t.dtype for t in plan} == {"float32", "int8"}
    assert "bn" not in {t.kernel_type for t in plan}  # BN folds into the layer before it in TFLite
    rules = fusion_rules_for(LITERT)
    for t in plan:
        w = _load(tmp_path, t)
        assert w.format == "tflite" and w.data == tflite_bytes(t)  # bytes depend only on the spec
        ks = detect_kernels(w.graph, rules)
        if t.kernel_type != "overhead":
            assert len(ks) == 1 and ks[0].type == t.kernel_type, (t.name, [k.type for k in ks])
        assert {n.dtype for n in w.graph.nodes} == {t.dtype}


def test_tflite_features_read_nhwc_and_fused_activations(tmp_path):
    t = TfliteSpec(KernelSpec("conv", "relu6", cin=16, cout=32, hw=20, k=3, stride=2), "int8")
    k = detect_kernels(_load(tmp_path, t).graph, fusion_rules_for(EDGETPU))[0]
    q = kernel_quantities(k)
    assert (q["cin"], q["cout"], q["h_in"], q["h_out"], q["k"], q["stride"]) == (16, 32, 20, 10, 3, 2)
    assert q["fused_act"] == 1 and q["bits"] == 8 and q["w_bits"] == 8 and q["a_bits"] == 8
    onnx_like = build_graph(t.spec)  # the same kernel as graph IR gives the same shape features
    q2 = kernel_quantities(detect_kernels(onnx_like, fusion_rules_for(DeviceSpec(name="h", url="local://cpu",
                                                                                runtime="onnxruntime")))[0])
    assert all(q[f] == q2[f] for f in ("cin", "cout", "h_in", "w_in", "h_out", "k", "stride", "macs"))
    assert q["fused_act_kind"] == q2["fused_act_kind"] == 2  # RELU6 as TFLite fuses it, Clip as ONNX writes it


def test_int8_kernels_run_on_int8_only_profiles_and_float_ones_do_not(tmp_path):
    spec = KernelSpec("conv", "relu", cin=32, cout=32, hw=16, k=3)
    for dev in ("edgetpu", "hexagon_npu", "bitfusion"):
        assert simulate(_load(tmp_path, TfliteSpec(spec, "int8")).graph, load_profile(dev)).latency_ms > 0
        with pytest.raises(CompileError):
            simulate(_load(tmp_path, TfliteSpec(spec, "float32")).graph, load_profile(dev))


def test_mcu_plan_fits_the_mcu_memories(tmp_path):
    fits = fits_for(M4)
    assert fits is not None and fits_for(EDGETPU) is None
    plan = make_tflite_plan(budget=40, seed=0, dtypes=("int8",), fits=fits)
    assert len(plan) == 40
    for t in plan:
        simulate(_load(tmp_path, t).graph, load_profile("cortex_m4"))  # no OutOfMemoryError
    # Without the filter the ImageNet-sized priors would not fit.
    big = make_tflite_plan(budget=40, seed=0, dtypes=("int8",), kernels=("conv",))
    assert not all(fits(build_graph(t.spec), "int8") for t in big)


def test_bit_widths_reach_the_graph_the_simulator_and_the_features(tmp_path):
    plan = make_tflite_plan(budget=40, seed=1, dtypes=("int8",), bits=True)
    macs = [t for t in plan if t.kernel_type in ("conv", "dwconv", "gemm")]
    assert macs and all(t.w_bits and t.a_bits for t in macs)
    assert all(not t.w_bits for t in plan if t not in macs)
    assert len({(t.w_bits, t.a_bits) for t in macs}) > 3
    spec = KernelSpec("conv", "", cin=64, cout=64, hw=16, k=3)
    lat = {}
    for w, a in ((8, 8), (2, 2)):
        g = _load(tmp_path, TfliteSpec(spec, "int8", w, a)).graph
        head = next(n for n in g.nodes if n.macs)
        assert (head.attrs["w_bits"], head.attrs["a_bits"]) == (w, a)
        q = kernel_quantities(detect_kernels(g, fusion_rules_for(BITFUSION))[0])
        assert (q["w_bits"], q["a_bits"]) == (w, a)
        lat[w] = simulate(g, load_profile("bitfusion")).latency_ms
    assert lat[2] < lat[8] / 3  # bit-serial: 2-bit operands are ~16x less compute


def test_refinement_stays_in_dtype_and_fits(tmp_path):
    fits = fits_for(M4)
    plan = make_tflite_plan(budget=60, seed=0, dtypes=("int8",), fits=fits)
    rng = np.random.default_rng(0)
    lat = [float(rng.lognormal()) for _ in plan]
    extra = refine_tflite_plan(plan, lat, n=10, seed=1, fits=fits)
    assert 0 < len(extra) <= 10 and all(t.dtype == "int8" for t in extra)
    assert not {t.name for t in extra} & {t.name for t in plan}
    assert all(fits(build_graph(t.spec), "int8") for t in extra)


def _cli(reg: Path, db: Path, *args: str):
    return run_cli("--registry", str(reg), "--db", str(db), *args, cwd=ROOT)


@pytest.fixture
def reg(tmp_path) -> Path:
    p = tmp_path / "devices.yaml"
    p.write_text(REG)
    return p


@pytest.mark.parametrize("device", ["sim-edgetpu", "sim-bitfusion"])
def test_dataset_build_and_train_on_an_int8_only_device(tmp_path, reg, device):
    db = tmp_path / "farm.db"
    r = _cli(reg, db, "dataset", "build", "--device", device, "--budget", "60", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["models"] == out["measured"] == 60 and out["failed"] == 0
    samples = kernel_samples(SqliteStore(db), device)
    assert {s.kernel_type for s in samples} >= {"conv", "dwconv", "gemm", "pool", "eltwise"}
    assert all(s.kernel.dtype == "int8" for s in samples)
    r = _cli(reg, db, "predictor", "train", "--device", device, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["metrics"]["n_train"] > 40
    # Resumable like the ONNX plan: the same build again answers from the dataset.
    again = json.loads(_cli(reg, db, "dataset", "build", "--device", device, "--budget", "60", "--json").stdout)
    assert again["cached"] == 60 and again["measured"] == 0


def test_dataset_build_on_the_host_with_litert(tmp_path, reg):
    db = tmp_path / "farm.db"
    r = _cli(reg, db, "dataset", "build", "--device", "host-litert", "--budget", "24", "--refine", "0", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["measured"] == 24 and out["failed"] == 0
    assert out["plan"] == "tflite" and out["dtypes"] == ["float32", "int8"]
    assert out["overhead_again"] == 6  # the plan's 3 minimal models per dtype, sat again at the end
    samples = kernel_samples(SqliteStore(db), "host-litert")
    assert {s.measurement.settings.runtime for s in samples} == {"litert"}
    assert {s.kernel.dtype for s in samples} == {"float32", "int8"}


def test_dtype_and_kernels_are_checked(tmp_path, reg):
    db = tmp_path / "farm.db"
    for args, msg in ((["--device", "sim-raspi4", "--dtype", "int8"], "--dtype 'int8'"),
                      (["--device", "sim-edgetpu", "--dtype", "float32"], "runs int8"),
                      (["--device", "sim-edgetpu", "--kernels", "bn"], "no TFLite kernel")):
        r = _cli(reg, db, "dataset", "build", "--budget", "5", *args)
        assert r.returncode == 2 and msg in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_dataset_build_on_a_phone_through_adb(tmp_path):
    pytest.importorskip("adb_shell")
    from .. import adbd

    peer, spec = adbd.start_phone(tmp_path / "adb")
    try:
        reg = tmp_path / "devices.yaml"
        reg.write_text(REGISTRY + adbd.spec_text(spec))
        db = tmp_path / "farm.db"
        r = _cli(reg, db, "dataset", "build", "--device", "phone", "--budget", "12", "--refine", "0", "--json")
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert out["measured"] == 12 and out["failed"] == 0
        graphs = {a for c in adbd.standin_calls(peer) for a in c["argv"] if a.startswith("--graph=")}
        assert len(graphs) == 12 and all(g.endswith(".tflite") for g in graphs)
        samples = kernel_samples(SqliteStore(db), "phone")
        assert {s.kernel.dtype for s in samples} == {"float32", "int8"} and all(s.measurement.latency_ms > 0
                                                                                for s in samples)
    finally:
        peer.close()


def test_io_boundary_fit_recovers_the_link_and_streams_past_the_cache(tmp_path):
    from predictors.boundary import IoBoundary, IoCost, fit_io_cost, io_boundary, io_quantities

    assert io_boundary(EDGETPU) == IoBoundary(8192.0) and io_boundary(M4) is None
    assert io_boundary(DeviceSpec(name="r", url="sim://raspi4", runtime="sim")) is None
    probes = [TfliteSpec(KernelSpec("reshape", "flatten", cin=c, hw=7), "int8") for c in (8, 64, 256, 1024)]
    probes += [TfliteSpec(KernelSpec("concat", cin=c, hw=h, rows=n), "int8")
               for c, h, n in ((8, 8, 2), (32, 28, 2), (16, 14, 3), (64, 28, 4), (8, 56, 3))]
    samples = []
    for t in probes:
        g = _load(tmp_path, t).graph
        n, kb = io_quantities(g)
        dispatch = 0.004 if t.kernel_type == "reshape" else 0.011
        samples.append((detect_kernels(g, fusion_rules_for(EDGETPU))[0], g, 0.3 + dispatch + 0.05 * (n - 2) + 0.003 * kb))
    io = fit_io_cost(samples, 0.3, IoBoundary(100.0))
    assert io.per_tensor_ms == pytest.approx(0.05, rel=1e-3) and io.per_kb_ms == pytest.approx(0.003, rel=1e-3)
    big = _load(tmp_path, TfliteSpec(KernelSpec("gemm", cin=1024, cout=256), "int8")).graph  # ~257 kB of weights
    n, kb = io_quantities(big)
    assert flash_kb(big) > 100 and io.cost_ms(big) == pytest.approx(0.003 * (kb + flash_kb(big) - 100))
    assert IoCost().cost_ms(big) == 0.0 and IoCost.from_dict(io.to_dict()) == io


def test_the_boundary_term_is_what_makes_edgetpu_networks_right(tmp_path, reg):
    from farm.formats.tflite_export import graph_to_tflite
    from farm.zoo.nets import build_net
    from predictors.boundary import io_boundary
    from predictors.kernel_model import KernelLevelPredictor

    db = tmp_path / "farm.db"
    assert _cli(reg, db, "dataset", "build", "--device", "sim-edgetpu", "--budget", "150", "--json").returncode == 0
    store = SqliteStore(db)
    ms = store.measurements(device="sim-edgetpu")
    graphs = [store.get_workload(m.workload).graph for m in ms]
    ys = [m.latency_ms for m in ms]
    net = tmp_path / "ds_cnn.tflite"
    net.write_bytes(graph_to_tflite(build_net("ds_cnn"), dtype="int8"))
    g = load_workload(net).graph
    truth = simulate(g, load_profile("edgetpu")).latency_ms
    rules = fusion_rules_for(EDGETPU)
    with_io = KernelLevelPredictor(rules=rules, io_boundary=io_boundary(EDGETPU)).fit(graphs, ys)
    without = KernelLevelPredictor(rules=rules).fit(graphs, ys)
    assert abs(with_io.predict([g])[0] / truth - 1) < 0.1
    assert without.predict([g])[0] / truth - 1 > 0.5  # every kernel charged a USB round trip
    state, files = with_io.to_state()
    assert KernelLevelPredictor.from_state(state, files).predict([g])[0] == pytest.approx(with_io.predict([g])[0])
