"""The MCU space (TinyNAS style): spelling, Optuna parameters, the int8 graph and its memory,
the torch module against the graph, and a search under SRAM/flash limits whose every
returned architecture then runs on the simulated Cortex-M7."""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence

import numpy as np
import pytest

from farm.errors import InputError
from farm.ir.memory import flash_kb, peak_sram_kb
from farm.testing.space import check_space
from farm.zoo.mcu_space import ACTS, DEPTHS, RESOLUTIONS, WIDTHS, MCUSpace, build_mcu, parse_arch
from farm.zoo.spaces import SPACES
from nas.accelerator import SimLatencyModel, mcu_limits, run_on_mcu
from nas.objectives import Constraints
from nas.params import choices, decode, encode
from nas.search import SearchConfig, search

ARCH = "w0.5-r128-s1:k3e4_k5e3-s2:k5e6_k3e3_k7e4-s3:k3e3_k3e3-s4h:k5e6_k5e6-s5h:k7e6_k7e6_k7e6_k7e6-s6h:k3e6"


def _uniform(width: str, res: int, depth: int, block: str) -> str:
    ds = [min(depth, max(d)) for d in DEPTHS]
    return f"w{width}-r{res}-" + "-".join(f"s{i}:" + "_".join([block] * d) for i, d in enumerate(ds, start=1))


BIGGEST = _uniform("1.0", RESOLUTIONS[-1], 4, "k7e6")
SMALLEST = _uniform("0.2", RESOLUTIONS[0], 2, "k3e3")

M7 = """\
devices:
  - name: sim-cortex-m7
    url: sim://cortex_m7?seed=0
    runtime: sim
  - name: sim-edgetpu
    url: sim://edgetpu?seed=0
    runtime: sim
  - name: sim-hexagon-npu
    url: sim://hexagon_npu?seed=0
    runtime: sim
  - name: sim-raspi4
    url: sim://raspi4?seed=0
    runtime: sim
"""


@pytest.fixture
def registry(tmp_path):
    path = tmp_path / "devices.yaml"
    path.write_text(M7)
    return path


@pytest.fixture
def mcu(monkeypatch):
    space = MCUSpace()
    monkeypatch.setitem(SPACES, "mcu", space)
    return space


class MacsAccuracy:
    """A monotone stand-in: more MACs score higher (log scale)."""

    def __init__(self, space: MCUSpace):
        self.space = space

    def estimate(self, space: str, archs: Sequence[str]) -> np.ndarray:
        return np.array([30 + 7 * np.log(self.space.to_graph(a).macs / 1e6) for a in archs])


# ---------------------------------------------------------------------------- spelling and parameters


def test_conformance_suite():
    check_space(MCUSpace)


def test_spelling_round_trip_and_normalization():
    a = parse_arch(ARCH)
    assert a.width == 0.5 and a.resolution == 128 and len(a.stages) == 6
    assert a.stages[3] == ("hswish", ((5, 6), (5, 6))) and a.stages[0][0] == "relu6"
    space = MCUSpace()
    assert space.resolve(ARCH) == ARCH
    assert space.resolve(" " + ARCH.replace("w0.5", "w0.50").replace("-s1:", " - s1:") + "\n") == ARCH
    rng = np.random.default_rng(0)
    archs = {space.sample(rng) for _ in range(50)}
    assert len(archs) == 50 and all(space.resolve(x) == x for x in archs)


@pytest.mark.parametrize("bad, match", [
    ("w0.5-r128", "expected 8 '-'-separated parts"),
    (ARCH.replace("w0.5", "w0.55"), "width multiplier 0.55 is not one of"),
    (ARCH.replace("r128", "r100"), "resolution 100 is not one of"),
    (ARCH.replace("r128", "rx"), "a width 'w0.5' and a resolution 'r128'"),
    (ARCH.replace("s2:k5e6_k3e3_k7e4", "s2:k5e6"), "stage 2: depth 1 is not one of 2, 3, 4"),
    (ARCH.replace("s6h:k3e6", "s6h:k3e6_k3e6"), "stage 6: depth 2 is not one of 1"),
    (ARCH.replace("k7e4", "k4e4"), "stage 2 block 3: k4e4 is not a block"),
    (ARCH.replace("k7e4", "k7"), "block 'k7' should read 'k3e4'"),
    (ARCH.replace("s3:", "s4:"), "stage 3 should read 's3:k3e4_…'"),
])
def test_bad_spellings_are_input_errors_naming_the_fault(bad, match):
    with pytest.raises(InputError, match=match):
        MCUSpace().resolve(bad)


def test_index_lookup_reads_the_arch_column(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text(f"arch_idx,arch,latency_ms\n4,{ARCH.replace('w0.5', 'w0.50')},1.0\n")
    assert MCUSpace().resolve("4", table=table) == ARCH
    with pytest.raises(InputError, match="no architecture with arch_idx 5"):
        MCUSpace().resolve("5", table=table)


def test_optuna_parameters_round_trip(mcu):
    names = [n for n, _ in choices("mcu")]
    assert names[:4] == ["width", "resolution", "s1_depth", "s1_act"] and "s5_b4_e" in names and "s6_b2_k" not in names
    opts = dict(choices("mcu"))
    assert opts["width"] == WIDTHS and opts["resolution"] == RESOLUTIONS and opts["s3_act"] == ACTS
    rng = np.random.default_rng(1)
    for _ in range(20):
        arch = mcu.sample(rng)
        values = encode("mcu", arch)
        assert list(values) == names
        assert decode("mcu", values) == arch
    # slots past a stage's depth are ignored
    values = encode("mcu", ARCH)
    assert values["s1_depth"] == 2 and decode("mcu", values | {"s1_b3_k": 7, "s1_b4_e": 6}) == ARCH
    with pytest.raises(InputError, match="no value for 'width'"):
        decode("mcu", {k: v for k, v in values.items() if k != "width"})


# ---------------------------------------------------------------------------- graph and memory


def test_graph_is_int8_with_the_head_and_memory_grows_with_width_and_resolution():
    g = MCUSpace().to_graph(ARCH)
    assert g.inputs[0].shape == (1, 3, 128, 128) and g.outputs[0].shape == (1, 1000)
    assert {n.dtype for n in g.nodes} == {"int8"}
    assert g.op_counts()["HardSwish"] == 2 * (2 + 4 + 1) + 1  # expand and dw per h-swish block, and the head
    wide = build_mcu(ARCH.replace("w0.5", "w1.0"))
    low = build_mcu(ARCH.replace("r128", "r64"))
    assert peak_sram_kb(wide)[0] > peak_sram_kb(g)[0] and flash_kb(wide) > flash_kb(g)
    assert peak_sram_kb(low)[0] < peak_sram_kb(g)[0] and flash_kb(low) == flash_kb(g)
    assert low.macs < g.macs < wide.macs
    # int8: one byte per activation and weight (the int32 classifier bias: four)
    f = build_mcu(ARCH, dtype="float32")
    assert peak_sram_kb(f)[0] == pytest.approx(4 * peak_sram_kb(g)[0])
    assert (f.macs, f.params) == (g.macs, g.params)


def test_biggest_violates_the_cortex_m7_and_smallest_fits(registry):
    sram, flash = mcu_limits("sim-cortex-m7", registry=registry)
    assert (sram, flash) == (1024 - 8, 2048 - 64)  # the runtime's share comes off
    big, small = build_mcu(BIGGEST), build_mcu(SMALLEST)
    assert peak_sram_kb(big)[0] > sram and flash_kb(big) > flash
    assert peak_sram_kb(small)[0] < sram and flash_kb(small) < flash
    assert mcu_limits("sim-cortex-m7", registry=registry, max_sram_kb=320) == (312, 1984)
    with pytest.raises(InputError, match="not an MCU"):
        mcu_limits("sim-edgetpu", registry=registry)


# ---------------------------------------------------------------------------- torch module


def test_torch_module_matches_the_graph():
    torch = pytest.importorskip("torch")
    import onnx

    from farm.formats.onnx import graph_from_onnx
    from nas.modules import build_module

    arch = ARCH.replace("r128", "r64")
    m = build_module(f"mcu:{arch}", num_classes=1000, in_channels=3, input_size=64).eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter announces its deprecation
        torch.onnx.export(m, torch.zeros(1, 3, 64, 64), buf, dynamo=False, external_data=False)
    got = graph_from_onnx(onnx.load_from_string(buf.getvalue()))
    ref = MCUSpace().graph(arch, dtype="float32")
    assert got.macs == ref.macs
    # the export folds each BN (4 numbers per channel) into its conv's bias (1 per channel)
    bn_channels = sum(n.outputs[0].shape[1] for n in ref.nodes if n.op == "BatchNormalization")
    assert got.params == ref.params - 3 * bn_channels
    assert abs(got.params / ref.params - 1) < 0.02
    ops = ref.op_counts()
    assert got.op_counts() == {k: v for k, v in ops.items() if k != "BatchNormalization"}
    # small images run as they are; resize=1 runs the architecture's resolution
    from nas.modules.mcu import build

    small = build_module(f"mcu:{arch}", num_classes=10, in_channels=1, input_size=28)
    assert small(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    seen = []
    resized = build(arch, {"resize": "1"}, num_classes=10, in_channels=1, input_size=28)
    resized.features.register_forward_hook(lambda _m, inp, _out: seen.append(tuple(inp[0].shape)))
    assert resized(torch.zeros(2, 1, 28, 28)).shape == (2, 10) and seen == [(2, 1, 64, 64)]
    with pytest.raises(InputError, match="unknown option"):
        build(arch, {"C": "8"}, num_classes=10, in_channels=1, input_size=28)
    with pytest.raises(InputError, match="stage 2: depth 1"):
        build_module(f"mcu:{arch.replace('s2:k5e6_k3e3_k7e4', 's2:k5e6')}")


# ---------------------------------------------------------------------------- search under the MCU's limits


def test_search_under_tight_memory_returns_only_what_fits_on_the_simulated_mcu(mcu, registry):
    """Limits tighter than the board's (a 256 KB SRAM, 1 MB flash part): every Pareto
    architecture and the best, run as int8 .tflite on sim-cortex-m7, stays under them."""
    pytest.importorskip("ai_edge_litert")
    sram, flash = mcu_limits("sim-cortex-m7", registry=registry, max_sram_kb=256, max_flash_kb=1024)
    cost = SimLatencyModel.for_device("sim-cortex-m7", registry=registry)
    cfg = SearchConfig(strategy="random", trials=64, seed=0,
                       constraints=Constraints(max_sram_kb=sram, max_flash_kb=flash))
    res = search("mcu", latency=cost, accuracy=MacsAccuracy(mcu), config=cfg)
    assert res.best is not None and res.pareto
    assert any(not c.feasible for c in res.candidates)  # the limits cut something
    shown = {c.arch: c for c in (*res.pareto, res.best)}
    for arch, c in shown.items():
        assert c.sram_kb is not None and c.sram_kb <= sram and c.flash_kb is not None and c.flash_kb <= flash
        fit = run_on_mcu(mcu.to_graph(arch), device="sim-cortex-m7", registry=registry)
        assert fit.fits and fit.latency_ms is not None and fit.latency_ms > 0
        assert fit.sram_kb <= 256 and fit.flash_kb <= 1024, (arch, fit)
    # an architecture the limits cut really is over them on the device
    worst = max((c for c in res.candidates if not c.feasible), key=lambda c: c.accuracy)
    fit = run_on_mcu(mcu.to_graph(worst.arch), device="sim-cortex-m7", registry=registry)
    assert fit.sram_kb > 256 or fit.flash_kb > 1024


def test_the_biggest_architecture_runs_out_of_memory_on_the_simulated_mcu(registry):
    pytest.importorskip("ai_edge_litert")
    fit = run_on_mcu(build_mcu(BIGGEST), device="sim-cortex-m7", registry=registry)
    assert not fit.fits and fit.latency_ms is None
    assert fit.error is not None and "out of memory on cortex_m7" in fit.error
    assert fit.sram_kb > 1024 and fit.flash_kb > 2048  # over both on the device itself (fused int8 .tflite)
    ok = run_on_mcu(build_mcu(SMALLEST), device="sim-cortex-m7", registry=registry)
    assert ok.fits and ok.error is None and ok.sram_kb < 1024 and ok.flash_kb < 2048
    with pytest.raises(InputError, match="not an MCU"):
        run_on_mcu(build_mcu(SMALLEST), device="sim-raspi4", registry=registry)
