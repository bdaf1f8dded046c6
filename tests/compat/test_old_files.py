"""Datasets and bundles written by hwfarm 0.1 (before the layout change) load unchanged.

``tests/fixtures/v0.1`` was written by the 0.1 code: ``dataset build --budget 12``,
``predictor train`` and a few ``profile`` runs on ``sim-raspi4`` and ``host-cpu``; the
database was then thinned to 9 measurements. ``expected_predictions.json`` holds what
0.1's ``hwfarm predict --json`` answered for two demo models with that bundle.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import predictors
from farm.store.sqlite import SqliteStore
from farm.zoo.onnx_models import export_demo_model

FIXTURE = Path(__file__).parent.parent / "fixtures" / "v0.1"


@pytest.fixture
def old(tmp_path: Path) -> Path:
    shutil.copy(FIXTURE / "hwfarm.db", tmp_path / "hwfarm.db")
    shutil.copytree(FIXTURE / "hwfarm-predictors", tmp_path / "hwfarm-predictors")
    return tmp_path


def test_old_dataset_reads_every_measurement(old: Path) -> None:
    store = SqliteStore(old / "hwfarm.db")
    try:
        ms = store.measurements()
        assert len(ms) == 9
        assert {m.device for m in ms} == {"sim-raspi4", "host-cpu"}
        host = store.measurements(device="host-cpu")
        assert len(host) == 1 and host[0].settings.threads == 1
        assert host[0].stats.n == 469 and host[0].stats.median_ms == pytest.approx(0.0143, abs=0.001)
        assert len(store.fusion_rules("sim-raspi4")) == 13
        rows = store.dataset_rows(device="sim-raspi4")
        assert {r["model"] for r in rows} >= {"mlp", "resnet8-cifar"}
    finally:
        store.close()


@pytest.mark.parametrize("name", ["mlp", "resnet8-cifar"])
def test_old_bundle_predicts_what_it_predicted(old: Path, name: str) -> None:
    expected = json.loads((FIXTURE / "expected_predictions.json").read_text())[name]
    model = export_demo_model(name, old / f"{name}.onnx")
    p = predictors.load("sim-raspi4", db=old / "hwfarm.db")
    assert p.bundle_id == expected["bundle"]
    pred = p.predict(model)
    assert pred.latency_ms == pytest.approx(expected["latency_ms"], rel=1e-6)
    assert pred.energy_mj == pytest.approx(expected["energy_mj"], rel=1e-6)
