"""int8 quantization: onnxruntime static QDQ with per-channel weights, held-out accuracy,
the run directory, and `hwfarm compress quantize` as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from compress.evaluate import accuracy_onnx, image_input, logits_onnx, resolve_model
from compress.quantize import QuantizeConfig, quantize_int8, run_quantize
from compress.report import FIGURE_FILE, MODEL_FILE, POINTS_FILE, REPORT_FILE
from farm.errors import InputError, ModelError
from farm.workload import load_workload
from nas.data import load_dataset

from ..conftest import gemm_model, run_cli

torch = pytest.importorskip("torch")

REGISTRY = """\
devices:
  - name: host-cpu
    url: local://cpu
    runtime: onnxruntime
    threads: 1
  - name: sim-raspi4
    url: sim://raspi4?seed=0
    runtime: sim
  - name: sim-edgetpu
    url: sim://edgetpu?seed=0
    runtime: sim
"""
CONTRACT = ("model", "accuracy_before", "accuracy_after", "latency_ms_before", "latency_ms_after", "measured",
            "speedup", "size_kb_before", "size_kb_after")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, float]:
    """A small CNN trained on digits (8×8, 1.4 k images: ~97% held out in a few seconds),
    exported as a batch-1 ONNX file; and its torch accuracy on the held-out split."""
    from torch import nn

    from nas.train import TrainConfig, evaluate, fit

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a shared 2-core machine: a second thread only waits on the first
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
    try:
        fit(net, load_dataset("digits", "train"), TrainConfig(epochs=15, lr=0.1))
        acc = evaluate(net, load_dataset("digits", "test"))
    finally:
        torch.set_num_threads(threads)
    path = tmp_path_factory.mktemp("model") / "cnn.onnx"
    torch.onnx.export(net, (torch.zeros(1, 1, 8, 8),), str(path), dynamo=False, external_data=False,
                      input_names=["input"], output_names=["logits"])
    return path, acc


@pytest.fixture(scope="module")
def int8(trained, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("int8") / "cnn-int8.onnx"
    quantize_int8(trained[0], out, data=load_dataset("digits", "train"))
    return out


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    p = tmp_path / "devices.yaml"
    p.write_text(REGISTRY)
    return p


def _initializers(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    return {i.name: i for i in model.graph.initializer}


def test_int8_model_is_qdq_with_per_channel_weights(trained, int8):
    model = onnx.load(str(int8))
    ops = [n.op_type for n in model.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    inits = _initializers(model)
    producer = {o: n for n in model.graph.node for o in n.output}
    convs = [n for n in model.graph.node if n.op_type in ("Conv", "Gemm")]
    assert len(convs) == 3
    for n in convs:
        act, w = (producer[x] for x in n.input[:2])
        assert act.op_type == "DequantizeLinear" and w.op_type == "DequantizeLinear"
        wq, scale = inits[w.input[0]], inits[w.input[1]]
        assert wq.data_type == onnx.TensorProto.INT8
        trans_b = any(a.name == "transB" and a.i for a in n.attribute)
        out_channels = wq.dims[0] if n.op_type == "Conv" or trans_b else wq.dims[1]
        assert list(scale.dims) == [out_channels], "one scale per output channel"
    # activations are uint8 (onnxruntime's U8S8, the fast pairing on x86)
    q_in = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "input")
    assert inits[q_in.input[2]].data_type == onnx.TensorProto.UINT8
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["hwfarm.bit_widths"]) == {"*": [8, 8]}
    assert json.loads(meta["hwfarm.quantization"])["calibration"]["images"] == 256
    # the farm reads the file (shapes static, batch 1), the MAC nodes carry their bit widths
    graph = load_workload(int8).graph
    assert {n.attrs.get("w_bits") for n in graph.nodes if n.macs} == {8}
    assert int8.stat().st_size < 0.7 * trained[0].stat().st_size


def test_per_tensor_option_gives_one_scale(trained, tmp_path):
    out = tmp_path / "pt.onnx"
    r = quantize_int8(trained[0], out, data=load_dataset("digits", "train"), per_channel=False,
                      calibration_images=32)
    assert r.calibration_images == 32 and r.quantized_ops == 3 and r.float_ops == 0
    model = onnx.load(str(out))
    inits, producer = _initializers(model), {o: n for n in model.graph.node for o in n.output}
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    assert list(inits[producer[conv.input[1]].input[1]].dims) == []


def test_accuracy_is_genuine_and_int8_keeps_it(trained, int8):
    path, torch_acc = trained
    test = load_dataset("digits", "test")
    before = accuracy_onnx(path, test)
    after = accuracy_onnx(int8, test)
    assert before > 90.0, "the fixture network is trained"
    assert before == pytest.approx(torch_acc, abs=0.3)  # the same network through onnxruntime
    assert abs(after - before) <= 3.0
    # a net that knows nothing scores chance, so the evaluator is not flattering
    rng = np.random.default_rng(0)
    shuffled = load_dataset("digits", "test")
    shuffled = type(shuffled)(shuffled.name, shuffled.split, shuffled.x, rng.permutation(shuffled.y))
    assert accuracy_onnx(path, shuffled) < 30.0


def test_batched_logits_match_one_image_at_a_time(int8):
    import onnxruntime as ort

    x = load_dataset("digits", "test").x[:40]
    got = logits_onnx(int8, x, batch_size=16)
    sess = ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"])
    want = np.concatenate([sess.run(None, {"input": x[i:i + 1]})[0] for i in range(len(x))])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_a_model_that_hard_codes_its_batch_runs_one_image_at_a_time(tmp_path):
    """Reshape to [1, 16]: a copy with a symbolic batch computes the wrong thing, so the
    evaluator must notice and run the file itself."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.standard_normal((16, 10)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["input", "shape"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["y"])],
        "fixed-batch", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
        initializer=[numpy_helper.from_array(np.array([1, 16], np.int64), "shape"), numpy_helper.from_array(w, "w")])
    p = tmp_path / "fixed.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), p)
    x = rng.standard_normal((11, 1, 4, 4)).astype(np.float32)
    np.testing.assert_allclose(logits_onnx(p, x, batch_size=4), x.reshape(11, 16) @ w, rtol=1e-5, atol=1e-5)


def test_image_input_refuses_a_model_without_a_4d_image(tmp_path):
    p = tmp_path / "mlp.onnx"
    onnx.save(gemm_model(), p)
    with pytest.raises(ModelError, match="not a 4-D float image"):
        image_input(p)
    with pytest.raises(ModelError, match="not found"):
        image_input(tmp_path / "none.onnx")


def test_data_must_fit_the_model(trained, tmp_path):
    with pytest.raises(InputError, match="takes 1x8x8 images"):
        quantize_int8(trained[0], tmp_path / "x.onnx", data=load_dataset("digits", "train", input_size=16))
    assert not (tmp_path / "x.onnx").exists()


def test_model_directory_gives_the_onnx_and_its_dataset(trained, tmp_path, registry):
    d = tmp_path / "mdir"
    d.mkdir()
    (d / "model.onnx").write_bytes(trained[0].read_bytes())
    (d / "arch.json").write_text(json.dumps({"format": "hwfarm-model/1", "arch": "cnn", "in_channels": 1,
                                             "input_size": 8, "num_classes": 10, "files": {}, "data": "digits",
                                             "accuracy": 97.0}))
    r = resolve_model(d)
    assert (r.onnx, r.data, r.accuracy) == (d / "model.onnx", "digits", 97.0)
    with pytest.raises(InputError, match="not a model directory"):
        resolve_model(tmp_path)
    # no --data: the directory's dataset; a simulated device profiles both models once
    rep = run_quantize(d, device="sim-raspi4", out=tmp_path / "run", registry=registry, db=tmp_path / "h.db",
                       config=QuantizeConfig(calibration_images=64))
    assert rep.data == "digits" and rep.measured and rep.simulated and rep.speedup_ci95 is None
    assert rep.details["accuracy_recorded"] == 97.0
    assert {p.name for p in (tmp_path / "run").iterdir()} == {MODEL_FILE, REPORT_FILE, FIGURE_FILE, POINTS_FILE}


def test_cli_json_contract_and_run_directory(trained, tmp_path, registry):
    out = tmp_path / "run"
    r = run_cli("--registry", str(registry), "--db", str(tmp_path / "h.db"), "compress", "quantize", str(trained[0]),
                "--device", "host-cpu", "--data", "digits", "--rounds", "2", "--calibration", "64", "--out", str(out),
                "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout.strip().splitlines()[-1])
    assert list(doc)[:len(CONTRACT)] == list(CONTRACT)
    assert doc["measured"] is True and doc["simulated"] is False and doc["pairs"] == 2
    assert doc["speedup"] > 0 and doc["latency_ms_before"] > 0 and doc["latency_ms_after"] > 0
    lo, hi = doc["speedup_ci95"]
    assert lo <= doc["speedup"] <= hi
    assert doc["size_kb_after"] < doc["size_kb_before"]
    assert abs(doc["accuracy_before"] - doc["accuracy_after"]) <= 3.0
    assert Path(doc["model"]) == out / MODEL_FILE and Path(doc["model"]).is_file()
    assert json.loads((out / REPORT_FILE).read_text()) == doc
    assert (out / FIGURE_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = (out / POINTS_FILE).read_text().splitlines()
    assert rows[0].startswith("label,") and [x.split(",")[0] for x in rows[1:]] == ["original", "int8"]
    # the table went to stderr, the JSON alone is the last stdout line
    assert "speedup" in r.stderr and "int8" in r.stderr


@pytest.mark.parametrize("case,args,message", [
    ("missing file", ["{tmp}/nope.onnx", "--device", "sim-raspi4", "--data", "digits"], "not found"),
    ("no image input", ["{mlp}", "--device", "sim-raspi4", "--data", "digits"], "not a 4-D float image"),
    ("unknown device", ["{model}", "--device", "pixel99", "--data", "digits"], "no device named 'pixel99'"),
    ("mixed bits on an ONNX file", ["{model}", "--device", "sim-raspi4", "--data", "digits", "--bits", "mixed"],
     "needs a model directory"),
])
def test_cli_bad_input_is_one_line_exit_2_and_writes_nothing(case, args, message, trained, tmp_path, registry):
    mlp = tmp_path / "mlp.onnx"
    onnx.save(gemm_model(), mlp)
    out = tmp_path / "run"
    args = [a.format(tmp=tmp_path, mlp=mlp, model=trained[0]) for a in args]
    r = run_cli("--registry", str(registry), "--db", str(tmp_path / "h.db"), "compress", "quantize", *args,
                "--out", str(out), "--json")
    assert r.returncode == 2, (case, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], (case, r.stderr)
    assert r.stdout == ""
    assert not out.exists()
    assert {p.name for p in tmp_path.iterdir()} == {"mlp.onnx", "devices.yaml"}


@pytest.mark.parametrize("case,kwargs,message", [
    ("unknown dataset", {"data": "cifar99"}, "unknown dataset 'cifar99'"),
    ("no dataset", {}, "pass --data"),
    ("int-only device", {"data": "digits", "device": "sim-edgetpu"}, "not yet implemented"),
    ("unreachable target", {"data": "digits", "config": QuantizeConfig(calibration_images=16, max_latency_ms=1e-9)},
     "above --max-latency-ms"),
])
def test_bad_input_raises_and_writes_nothing(case, kwargs, message, trained, tmp_path, registry):
    out = tmp_path / "run"
    kwargs = {"device": "sim-raspi4", **kwargs}
    with pytest.raises(InputError, match=message):
        run_quantize(trained[0], out=out, registry=registry, db=tmp_path / "h.db", **kwargs)
    assert not out.exists()
    assert {p.name for p in tmp_path.iterdir()} <= {"devices.yaml", "h.db", "h.db-wal", "h.db-shm"}


def test_existing_run_directory_is_kept_unless_overwrite(trained, tmp_path, registry):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        run_quantize(trained[0], device="sim-raspi4", data="digits", out=out, registry=registry,
                     db=tmp_path / "h.db")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    # a run that fails after it began puts the overwritten folder back
    with pytest.raises(InputError, match="above --max-latency-ms"):
        run_quantize(trained[0], device="sim-raspi4", data="digits", out=out, overwrite=True, registry=registry,
                     db=tmp_path / "h.db", config=QuantizeConfig(calibration_images=16, max_latency_ms=1e-9))
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    run_quantize(trained[0], device="sim-raspi4", data="digits", out=out, overwrite=True, registry=registry,
                 db=tmp_path / "h.db", config=QuantizeConfig(calibration_images=16))
    assert sorted(p.name for p in out.iterdir()) == sorted([MODEL_FILE, REPORT_FILE, FIGURE_FILE, POINTS_FILE])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temporary folders left"
