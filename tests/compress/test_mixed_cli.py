"""`hwfarm compress quantize MODEL --bits mixed` / with memory limits: a model directory from
`hwfarm train`, fitted to a simulated MCU by the memory-driven rule, measured there."""

from __future__ import annotations

import json

import pytest

from ..conftest import run_cli

pytest.importorskip("torch")

REG = """devices:
  - name: sim-cortex-m7
    url: sim://cortex_m7?seed=0
    runtime: sim
  - name: host-cpu
    url: local://cpu
    runtime: onnxruntime
    threads: 1
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("mixed")
    (d / "devices.yaml").write_text(REG)
    r = run_cli("--registry", str(d / "devices.yaml"), "--db", str(d / "f.db"), "train", "--arch", "ds_cnn",
                "--data", "digits", "--input-size", "16", "--epochs", "1", "--out", str(d / "m"), "--json")
    assert r.returncode == 0, r.stderr
    return d


def test_memory_limit_on_an_mcu_is_met_by_the_memory_driven_bits_and_measured_there(trained):
    d = trained
    r = run_cli("--registry", str(d / "devices.yaml"), "--db", str(d / "f.db"), "compress", "quantize", str(d / "m"),
                "--device", "sim-cortex-m7", "--max-flash-kb", "75", "--trials", "2", "--qat-steps", "20",
                "--out", str(d / "run"), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout.strip().splitlines()[-1])
    for key in ("model", "accuracy_before", "accuracy_after", "latency_ms_before", "latency_ms_after", "measured",
                "speedup", "size_kb_before", "size_kb_after"):
        assert key in doc
    assert doc["measured"] is True and doc["method"] == "mixed" and doc["latency_ms_after"] > 0
    det = doc["details"]
    assert det["flash_kb"] <= 75  # the runtime's 64 KB included
    tried = {t["strategy"]: t["accuracy"] for t in det["tried"]}
    assert "memory-driven" in tried and tried["memory-driven"] > tried.get("uniform 2-bit", 0)
    assert any(w < 8 for w, _ in det["bits"].values())
    assert (d / "run" / "model.onnx").is_file() and (d / "run" / "model.tflite").is_file()


def test_mixed_precision_refuses_what_it_cannot_do_in_one_line(trained, tmp_path):
    d = trained
    base = ("--registry", str(d / "devices.yaml"), "--db", str(d / "f.db"), "compress", "quantize")
    onnx_file = d / "m" / "model.onnx"
    for args, says in (((str(onnx_file), "--device", "sim-cortex-m7", "--bits", "mixed"), "needs a model directory"),
                       ((str(d / "m"), "--device", "host-cpu", "--bits", "mixed"), "bit-width-aware device"),
                       ((str(d / "m"), "--device", "sim-cortex-m7", "--max-flash-kb", "1", "--trials", "0"),
                        "meets the limits")):
        r = run_cli(*base, *args, "--out", str(tmp_path / "out"))
        assert r.returncode == 2 and says in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert not (tmp_path / "out").exists()
