"""LiteRT: the runner, .tflite graph import, and .tflite models profiled through the CLI."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("ai_edge_litert")

from farm.agent.litert import LiteRtRunner  # noqa: E402
from farm.agent.runners import ModelLoadError, get_runner  # noqa: E402
from farm.errors import ModelError  # noqa: E402
from farm.tflite_graph import graph_from_tflite  # noqa: E402
from farm.workload import load_workload  # noqa: E402
from farm.zoo.tflite_models import conv_model, fc_model, fc_model_int8  # noqa: E402

from ..conftest import FAST, run_cli  # noqa: E402


@pytest.fixture
def tfl(tmp_path):
    def write(name, data):
        p = tmp_path / f"{name}.tflite"
        p.write_bytes(data)
        return p

    return write


def test_runner_contract(tfl):
    r = get_runner("litert")
    assert isinstance(r, LiteRtRunner) and r.available()
    assert r.version().startswith("ai-edge-litert ")
    for threads in (1, 2):
        run = r.prepare(str(tfl("fc", fc_model())), threads=threads)
        run()
        run()
    r.prepare(str(tfl("q", fc_model_int8())), threads=1)()


@pytest.mark.parametrize("data", [b"\x00" * 64, b"hello, not a flatbuffer", fc_model()[:200]])
def test_runner_rejects_bad_files(tfl, data):
    with pytest.raises(ModelLoadError, match="bad.tflite"):
        LiteRtRunner().prepare(str(tfl("bad", data)), threads=1)


def test_graph_counts():
    g = graph_from_tflite(conv_model(size=16, cin=3, cout=8))
    conv, add = g.nodes
    assert (conv.op, add.op) == ("CONV_2D", "ADD")
    assert conv.macs == 16 * 16 * 8 * 3 * 3 * 3 and conv.params == 8 * 27 + 8
    assert conv.outputs[0].shape == (1, 16, 16, 8) and add.macs == 0
    fc = graph_from_tflite(fc_model(64, 32)).nodes[0]
    assert fc.macs == 64 * 32 and fc.params == 64 * 32 + 32 and fc.weights == ("w", "b")
    q = graph_from_tflite(fc_model_int8(64, 16)).nodes[0]
    assert q.dtype == "int8" and q.inputs[1].dtype == "int8" and q.inputs[2].dtype == "int32"
    assert g.source_format == "tflite" and [t.shape for t in g.inputs] == [(1, 16, 16, 3)]


@pytest.mark.parametrize("cut", [8, 100, 0.5, 0.95])
def test_graph_rejects_truncated(cut):
    data = conv_model()
    n = cut if isinstance(cut, int) else int(len(data) * cut)
    with pytest.raises(ModelError, match="m.tflite"):
        graph_from_tflite(data[:n], source="m.tflite")


def test_tflite_detected_by_magic_without_suffix(tmp_path):
    p = tmp_path / "model.bin"
    p.write_bytes(fc_model())
    w = load_workload(p)
    assert w.format == "tflite" and w.graph.macs == 64 * 32


def test_profile_tflite_on_host_cpu(tmp_path, registry_file, tfl):
    p = run_cli("--registry", str(registry_file), "--db", str(tmp_path / "h.db"), "profile", str(tfl("c", conv_model())),
                "--device", "host-cpu", *FAST, "--json")
    assert p.returncode == 0, p.stderr
    o = json.loads(p.stdout)
    assert o["provenance"]["runtime"] == "litert" and o["provenance"]["runtime_version"].startswith("ai-edge-litert")
    assert o["latency_ms"] > 0 and o["settings"]["runtime"] == "litert"
