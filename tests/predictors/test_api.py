"""The predictors' Python API: a loaded bundle answered from several threads at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import predictors
from farm.sim.model import simulate
from farm.zoo.nb201 import all_arch_strs, build_nb201
from predictors.api import DevicePredictor
from predictors.bundle import save_bundle
from predictors.kernel_model import KernelLevelPredictor

from .test_kernel_predictor import RASPI4, RULES, kernel_graphs


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> DevicePredictor:
    """A bundle trained on simulated kernels (every kernel type boosted), saved and loaded."""
    graphs = kernel_graphs(140)
    sims = [simulate(g, RASPI4) for g in graphs]
    lat = KernelLevelPredictor(rules=RULES).fit(graphs, [s.latency_ms for s in sims])
    energy = KernelLevelPredictor(rules=RULES, target="energy_mj").fit(graphs, [s.energy_mj for s in sims])
    assert all(m.booster_ is not None for m in lat.models_.values())
    meta = {"id": "sim-raspi4-threads", "device": "sim-raspi4", "kind": "kernel", "threads": 1,
            "fusion": RULES.to_dict()}
    info = save_bundle(tmp_path_factory.mktemp("bundles"), meta, lat, energy)
    return predictors.load(info.path)


def _nets(n: int) -> list:
    archs = list(all_arch_strs())
    rng = np.random.default_rng(5)
    return [build_nb201(archs[i]) for i in rng.choice(len(archs), n, replace=False)]


def test_predict_from_eight_threads_on_one_predictor_matches_one_thread(loaded, monkeypatch):
    import xgboost as xgb

    nets = _nets(6)
    expected = [loaded.predict(g) for g in nets]
    expected_many = loaded.predict_many(nets)
    changed: list[object] = []
    real = xgb.Booster.set_param

    def spy(self, *args, **kwargs):
        changed.append(args)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(xgb.Booster, "set_param", spy)

    def work(i: int) -> tuple[list, list]:
        order = list(range(len(nets)))[i % len(nets):] + list(range(len(nets)))[:i % len(nets)]
        one = {j: loaded.predict(nets[j]) for j in order for _ in range(3)}
        return [one[j] for j in range(len(nets))], loaded.predict_many(nets)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(work, range(16)))
    assert not changed, "predicting must not reconfigure a shared booster"
    for singles, many in results:
        assert singles == expected
        assert many == expected_many
    assert all(p.energy_mj is not None and p.latency_ms > 0 for p in expected)


def test_bundle_path_loads_the_same_predictor(loaded):
    again = predictors.load(Path(loaded.info.path))
    g = _nets(1)[0]
    assert again.predict(g) == loaded.predict(g)


def test_predict_takes_onnx_and_tflite_bytes_as_their_files(loaded, tmp_path):
    from farm.errors import ModelError
    from farm.formats.tflite_export import graph_to_tflite
    from farm.zoo.onnx_models import export_demo_model

    onnx_path = export_demo_model("resnet8-cifar", tmp_path / "resnet8.onnx")
    from_file = loaded.predict(onnx_path)
    assert loaded.predict(Path(onnx_path).read_bytes()) == from_file
    assert loaded.predict(bytearray(Path(onnx_path).read_bytes())) == from_file
    tfl = tmp_path / "cell.tflite"
    tfl.write_bytes(graph_to_tflite(_nets(1)[0]))
    assert loaded.predict(tfl.read_bytes()) == loaded.predict(tfl)
    assert loaded.predict_many([tfl.read_bytes(), str(onnx_path)])[1] == from_file
    with pytest.raises(ModelError, match="<bytes>"):
        loaded.predict(b"not a model at all")
    with pytest.raises(ModelError, match="empty"):
        loaded.predict(b"")
