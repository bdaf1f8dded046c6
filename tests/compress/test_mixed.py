"""Mixed-precision bits: the deployment graph, fake quantization, Rusci et al.'s memory-driven
rule, the TPE search under limits, and the bit-serial simulator judging the result."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from farm.errors import InputError  # noqa: E402
from farm.ir.memory import flash_kb  # noqa: E402
from nas.data import load_dataset  # noqa: E402
from nas.train import TrainConfig, evaluate, fit  # noqa: E402


def _net():
    import torch.nn as nn

    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))


@pytest.fixture(scope="module")
def trained():
    tr = load_dataset("digits", input_size=12)
    te = load_dataset("digits", "test", input_size=12)
    m = _net()
    fit(m, tr, TrainConfig(epochs=3))
    return m, tr, te


def test_deployment_pairs_each_layer_with_its_mac_node_and_bits_shrink_memory(trained):
    from compress.mixed import deployment, size_kb

    m, _, _ = trained
    dep = deployment(m, (1, 1, 12, 12))
    assert [layer.name for layer in dep.layers] == ["0", "3", "8"]
    assert [layer.weights for layer in dep.layers] == [144, 4608, 320]
    b8 = {layer.name: (8, 8) for layer in dep.layers}
    b4 = dict(b8, **{"3": (4, 8)})
    assert flash_kb(dep.with_bits(b8)) - flash_kb(dep.with_bits(b4)) == pytest.approx(4608 / 2 / 1024)
    assert size_kb(dep, b4) == pytest.approx((144 + 4608 / 2 + 320) / 1024)
    sram8, _ = dep.memory(b8)
    sram2, _ = dep.memory({k: (8, 2) for k in b8})
    assert sram2 < sram8


def test_fake_quantization_keeps_8_bits_and_breaks_2_bits(trained):
    from compress.mixed import quantized_accuracy

    m, tr, te = trained
    base = evaluate(m, te)
    assert base > 60  # three epochs on digits: well above chance (10%)
    names = ["0", "3", "8"]
    calib = tr.x[:64]
    assert quantized_accuracy(m, {n: (8, 8) for n in names}, te, calib) >= base - 2
    assert quantized_accuracy(m, {n: (2, 2) for n in names}, te, calib) < base - 20
    assert evaluate(m, te) == base  # the original is untouched


def test_memory_driven_rule_cuts_the_biggest_tensors_until_it_fits(trained):
    from compress.mixed import Limits, deployment, memory_driven_bits

    m, _, _ = trained
    dep = deployment(m, (1, 1, 12, 12))
    full_sram, full_flash = dep.memory({layer.name: (8, 8) for layer in dep.layers})
    lim = Limits(max_flash_kb=full_flash * 0.6, max_sram_kb=full_sram * 0.8)
    bits = memory_driven_bits(dep, lim)
    sram, fl = dep.memory(bits)
    assert fl <= lim.max_flash_kb and sram <= lim.max_sram_kb
    assert bits["3"][0] < 8 and bits["0"][0] == 8  # the 4,608-weight layer is cut first, the 144-weight one not
    with pytest.raises(InputError, match="cannot fit flash"):
        memory_driven_bits(dep, Limits(max_flash_kb=0.1))


def test_search_meets_the_limit_and_fine_tuning_recovers(trained, tmp_path):
    from compress.mixed import Limits, deployment, qat, quantized_accuracy, search_bits

    m, tr, te = trained
    dep = deployment(m, (1, 1, 12, 12))
    calib = tr.x[:64]
    _, full_flash = dep.memory({layer.name: (8, 8) for layer in dep.layers})
    lim = Limits(max_flash_kb=full_flash * 0.55)
    res = search_bits(m, dep, val=tr.take(200, seed=1), calib=calib, limits=lim, trials=12, seed=0)
    assert res.flash_kb <= lim.max_flash_kb and res.trials == 12
    assert res.trace[0]["bits"] == {n: [8, 8] for n in ("0", "3", "8")} and not res.trace[0]["feasible"]
    tuned = qat(m, res.bits, tr, calib, steps=60)
    assert evaluate(tuned, te) >= quantized_accuracy(m, res.bits, te, calib) - 3
    with pytest.raises(InputError, match="needs a latency model"):
        search_bits(m, dep, val=tr, calib=calib, limits=Limits(max_latency_ms=1.0), trials=1)


def test_bit_serial_simulator_runs_the_mixed_model_faster_at_fewer_bits(trained, tmp_path):
    import farm
    from compress.mixed import deployment

    m, _, _ = trained
    dep = deployment(m, (1, 1, 12, 12))
    reg = tmp_path / "devices.yaml"
    reg.write_text("devices:\n  - name: sim-bitfusion\n    url: sim://bitfusion?seed=0\n    runtime: sim\n")
    paths = []
    for w in (8, 4, 2):
        p = tmp_path / f"w{w}.tflite"
        p.write_bytes(dep.tflite({layer.name: (w, w) for layer in dep.layers}))
        paths.append(p)
    res = farm.profile(paths, device="sim-bitfusion", registry=reg, db=tmp_path / "f.db")
    ms = [r.measurement.latency_ms for r in res]
    assert ms[0] > ms[1] > ms[2]
    assert np.isfinite(ms).all()
