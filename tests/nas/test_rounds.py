"""`nas search --rounds`: search, measure, refit the cost model on the measurements, search again;
the best judged on measured latency."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pytest

from farm.errors import InputError
from farm.ir.graph import Graph
from farm.zoo import nb201
from farm.zoo.spaces import get_space
from nas.rounds import MeasuredLatencyModel

from ..conftest import run_cli
from .test_search import sim_bundle  # noqa: F401 - the module-scoped fixture


class OpsLatency:
    """ms = 0.2 + 1.0 per 3x3 conv + 0.3 per 1x1 conv, times ``scale``."""

    def __init__(self, scale: float = 1.0):
        self.scale = scale

    def predict_batch(self, space: str, archs: Sequence[str], graphs: Sequence[Graph]):
        ops = [nb201.ops_from_arch_str(a) for a in archs]
        return np.array([self.scale * (0.2 + o.count("nor_conv_3x3") + 0.3 * o.count("nor_conv_1x1"))
                         for o in ops]), None


def test_measurements_correct_a_predictor_that_is_off_by_a_device_wide_factor():
    truth, base = OpsLatency(2.0), OpsLatency(1.0)
    rng = np.random.default_rng(0)
    sp = get_space("nb201")
    archs = list(dict.fromkeys(sp.sample(rng) for _ in range(60)))
    seen, rest = archs[:5], archs[5:]
    measured = dict(zip(seen, truth.predict_batch("nb201", seen, [])[0], strict=True))
    predicted = dict(zip(seen, base.predict_batch("nb201", seen, [])[0], strict=True))
    m = MeasuredLatencyModel(base, "nb201", measured, predicted)
    assert m.scale == pytest.approx(2.0, rel=1e-6)
    got = m.predict_batch("nb201", rest, [])[0]
    want = truth.predict_batch("nb201", rest, [])[0]
    before = np.abs(base.predict_batch("nb201", rest, [])[0] / want - 1)
    assert np.median(np.abs(got / want - 1)) < 0.1 < np.median(before)
    assert list(m.predict_batch("nb201", seen, [])[0]) == [measured[a] for a in seen]  # measured: as measured
    empty = MeasuredLatencyModel(base, "nb201", {}, {})
    assert empty.scale == 1.0 and list(empty.predict_batch("nb201", rest, [])[0]) == list(
        base.predict_batch("nb201", rest, [])[0])


def test_cli_rounds_measure_new_candidates_each_round_and_judge_by_measurement(sim_bundle, tmp_path):  # noqa: F811
    from nas.objectives import find_accuracy_table

    try:
        find_accuracy_table("nb201")
    except InputError:
        pytest.skip("no NB201 accuracy table (../shared/data/nb201-accuracy)")
    d = sim_bundle
    r = run_cli("--registry", str(d / "devices.yaml"), "--db", str(d / "farm.db"), "nas", "search", "--space", "nb201",
                "--device", "sim-raspi4", "--max-latency-ms", "12", "--trials", "60", "--strategy", "random",
                "--rounds", "2", "--validate", "2", "--out", str(tmp_path / "run"), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout.strip().splitlines()[-1])
    assert [x["round"] for x in doc["rounds"]] == [1, 2]
    archs = [v["arch"] for v in doc["validated"]]
    assert len(archs) == 4 and len(set(archs)) == 4  # each round measures candidates not measured before
    assert all(v["measured_ms"] > 0 for v in doc["validated"])
    assert doc["best_judged_by"] == "measurement"
    measured = {v["arch"]: v["measured_ms"] for v in doc["validated"]}
    assert doc["best"]["arch"] in measured and doc["best"]["latency_ms"] == measured[doc["best"]["arch"]] <= 12
    assert doc["rounds"][0]["scale"] > 0 and "round 1: measured 2" in r.stderr
