"""LiteRT: the runner on schema-built .tflite models, and .tflite models profiled through the CLI."""

from __future__ import annotations

import json
import os
import sys
from importlib import metadata

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")

from farm.agent import litert  # noqa: E402
from farm.agent.litert import LiteRtRunner  # noqa: E402
from farm.agent.runners import ModelLoadError, RunnerUnavailable, get_runner  # noqa: E402
from farm.formats.tflite_builder import TfliteBuilder, conv_model, dwconv_model, fc_model, fc_model_int8  # noqa: E402
from farm.workload import load_workload  # noqa: E402

from ..conftest import FAST, run_cli  # noqa: E402

MODELS = {"fc": fc_model, "conv": conv_model, "dwconv": dwconv_model, "fc_int8": fc_model_int8}


@pytest.fixture
def tfl(tmp_path):
    def write(name, data):
        p = tmp_path / f"{name}.tflite"
        p.write_bytes(data)
        return p

    return write


def test_runner_is_registered_and_reports_its_version():
    r = get_runner("litert")
    assert isinstance(r, LiteRtRunner) and r.name == "litert" and r.available()
    assert r.version() == f"ai-edge-litert {metadata.version('ai-edge-litert')}"


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("threads", [1, 2])
def test_runner_runs_built_models(tfl, model, threads):
    run = LiteRtRunner().prepare(str(tfl(model, MODELS[model]())), threads=threads)
    assert run() is None
    run()


def test_prepared_callable_runs_the_model_on_its_inputs(tfl):
    """The callable invokes the interpreter prepare() built: outputs are there and ReLU'd."""
    from ai_edge_litert.interpreter import Interpreter

    path = str(tfl("fc", fc_model(8, 4)))
    seen = []
    real_invoke = Interpreter.invoke

    def spy(self):
        real_invoke(self)
        seen.append(self.get_tensor(self.get_output_details()[0]["index"]).copy())

    mp = pytest.MonkeyPatch()
    mp.setattr(Interpreter, "invoke", spy)
    try:
        run = LiteRtRunner().prepare(path, threads=1)
        run()
        run()
    finally:
        mp.undo()
    assert len(seen) == 3  # one check run at prepare time, then one per call
    assert seen[0].shape == (1, 4) and (seen[0] >= 0).all() and np.array_equal(seen[0], seen[2])


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts OS threads through /proc")
def test_threads_sets_the_interpreter_thread_pool(tfl):
    """num_threads=N gives the CPU backend a pool of N-1 workers next to the calling thread."""
    path = str(tfl("conv", conv_model()))

    def new_threads(threads):
        before = len(os.listdir("/proc/self/task"))
        run = LiteRtRunner().prepare(path, threads=threads)
        run()
        return len(os.listdir("/proc/self/task")) - before, run  # keep run: it owns the pool

    one, keep1 = new_threads(1)
    three, keep3 = new_threads(3)
    assert three - one == 2


def test_dynamic_input_shape_is_refused(tfl):
    s = (b := TfliteBuilder()).schema
    x = b.tensor("x", (1, 8), shape_signature=(-1, 8))
    w = b.tensor("w", (4, 8), data=np.ones((4, 8), np.float32))
    y = b.tensor("y", (1, 4), shape_signature=(-1, 4))
    b.op(s.BuiltinOperator.FULLY_CONNECTED, [x, w, -1], [y], s.BuiltinOptions.FullyConnectedOptions,
         s.FullyConnectedOptionsT())
    with pytest.raises(ModelLoadError, match=r"dyn\.tflite: input 'x' has a dynamic shape \[-1, 8\]"):
        LiteRtRunner().prepare(str(tfl("dyn", b.build([x], [y]))), threads=1)


@pytest.mark.parametrize("data", [
    b"", b"\x00" * 64, b"hello, not a flatbuffer", fc_model()[:8], fc_model()[:200], fc_model()[:-100],
], ids=["empty", "zeros", "text", "header", "truncated-head", "truncated-tail"])
def test_runner_rejects_bad_files(tfl, data):
    with pytest.raises(ModelLoadError, match="bad.tflite") as info:
        LiteRtRunner().prepare(str(tfl("bad", data)), threads=1)
    assert "\n" not in str(info.value)


def test_runner_rejects_missing_and_directory_paths(tmp_path):
    for path in (tmp_path / "nope.tflite", tmp_path):
        with pytest.raises(ModelLoadError, match=str(path)):
            LiteRtRunner().prepare(str(path), threads=1)


def test_missing_runtime_is_runner_unavailable(monkeypatch, tfl):
    monkeypatch.setattr(litert, "_PACKAGES", (("no_such_litert_pkg.interpreter", "no-such-litert"),))
    r = LiteRtRunner()
    assert not r.available()
    with pytest.raises(RunnerUnavailable, match="pip install ai-edge-litert"):
        r.version()
    with pytest.raises(RunnerUnavailable):
        r.prepare(str(tfl("fc", fc_model())), threads=1)


def test_falls_back_to_tflite_runtime(monkeypatch, tmp_path, tfl):
    """Boards with only ``tflite_runtime``: same interpreter API, version without dist metadata."""
    pkg = tmp_path / "site" / "fake_tflite_runtime"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "interpreter.py").write_text("from ai_edge_litert.interpreter import Interpreter, load_delegate\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setattr(litert, "_PACKAGES", (("no_such_litert_pkg.interpreter", "no-such-litert"),
                                              ("fake_tflite_runtime.interpreter", "fake-tflite-runtime")))
    try:
        r = LiteRtRunner()
        assert r.available() and r.version() == "fake-tflite-runtime"
        r.prepare(str(tfl("fc", fc_model())), threads=1)()
    finally:
        for m in ("fake_tflite_runtime", "fake_tflite_runtime.interpreter"):
            sys.modules.pop(m, None)


# ai_edge_litert's Delegate.__del__ trips over the half-built object a failed load leaves.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_unloadable_delegate_is_runner_unavailable(tfl):
    with pytest.raises(RunnerUnavailable, match="no_such_delegate.so"):
        LiteRtRunner().prepare(str(tfl("fc", fc_model())), threads=1, delegate="/nonexistent/no_such_delegate.so")


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
