"""``hwfarm train``: a real (tiny) training run writes a model directory whose held-out accuracy
is well above chance and reproducible from the files; bad requests exit 2 with one line and
write nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

pytest.importorskip("torch")

from farm.errors import InputError  # noqa: E402
from nas.data import load_dataset  # noqa: E402
from nas.modeldir import load_model_dir  # noqa: E402
from nas.train import evaluate  # noqa: E402
from nas.train_cli import default_out, train  # noqa: E402

from ..conftest import run_cli  # noqa: E402


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(train)
    return app


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny nets train fastest on one thread (and far faster than on two a busy host shares)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_train_through_hwfarm_writes_a_model_that_scores_well_above_chance(tmp_path):
    out = tmp_path / "r8"
    p = run_cli("train", "--arch", "resnet8", "--data", "digits", "--epochs", "1", "--out", str(out), "--json",
                cwd=tmp_path, env={"OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout.strip().splitlines()[-1])
    assert {"model", "arch", "data", "input_size", "epochs", "accuracy", "train_seconds", "params", "macs",
            "size_kb"} <= res.keys()
    assert (res["model"], res["arch"], res["data"], res["input_size"], res["epochs"]) == (
        str(out), "resnet8", "digits", 8, 1)
    assert res["accuracy"] > 60.0  # chance is 10%; one epoch (23 steps) of ResNet-8 on digits gets ~90%
    assert res["params"] > 0 and res["macs"] > 0 and res["size_kb"] > 0 and res["train_seconds"] > 0
    loaded = load_model_dir(out)
    meta = loaded.meta
    assert meta["data"] == "digits" and meta["accuracy"] == pytest.approx(res["accuracy"], abs=0.01)
    assert meta["train"]["epochs"] == 1 and meta["train"]["held_out_images"] == 359
    # The files reproduce the number: the held-out accuracy of the loaded module.
    assert evaluate(loaded.module, load_dataset("digits", "test")) == pytest.approx(res["accuracy"], abs=0.01)


def test_bad_data_exits_2_with_one_line_and_writes_nothing(tmp_path):
    p = run_cli("train", "--arch", "resnet8", "--data", "cifar10", cwd=tmp_path)
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip() == "hwfarm: error: --data 'cifar10': unknown dataset; known: mnist_5k, digits"
    assert list(tmp_path.iterdir()) == []


def test_existing_output_is_refused_before_training(tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    p = run_cli("train", "--arch", "resnet8", "--data", "digits", "--out", str(out), cwd=tmp_path)
    assert p.returncode == 2 and "exists and is not an empty folder" in p.stderr and "--overwrite" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    assert [x.name for x in out.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("args, match", [
    (["--arch", "alexnet", "--data", "digits"], "unknown architecture 'alexnet'"),
    (["--arch", "vgg:depth=12", "--data", "digits"], "vgg: option depth='12'"),
    (["--arch", "resnet8", "--data", "digits", "--input-size", "1000"], "--input-size must be between 4 and 256"),
    (["--arch", "resnet8", "--data", "digits", "--channels", "2"], "--channels 2: expected 1 or 3"),
    (["--arch", "resnet8", "--data", "digits", "--lr", "0"], "--lr 0.0: must be above 0"),
])
def test_bad_requests_are_one_line_input_errors_and_write_nothing(tmp_path, monkeypatch, args, match):
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(_app(), args)
    assert isinstance(r.exception, InputError) and match in str(r.exception) and "\n" not in str(r.exception)
    assert list(tmp_path.iterdir()) == []


def test_cli_runner_defaults_and_overwrite(tmp_path, monkeypatch):
    """The function itself (no entry point): default --out under ./hwfarm-models, 3 channels,
    --overwrite replaces, and without it the second run is refused."""
    monkeypatch.chdir(tmp_path)
    args = ["--arch", "ds_cnn:filters=8,blocks=1", "--data", "digits", "--epochs", "1", "--channels", "3", "--json"]
    r = CliRunner().invoke(_app(), args)
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout.strip().splitlines()[-1])
    expected = Path("hwfarm-models") / "ds_cnn-filters8-blocks1-digits-8"
    assert res["model"] == str(expected) and res["input_size"] == 8 and res["channels"] == 3
    assert load_model_dir(tmp_path / expected).input_shape == (1, 3, 8, 8)
    r = CliRunner().invoke(_app(), args)
    assert isinstance(r.exception, InputError) and "exists and is a model directory" in str(r.exception)
    r = CliRunner().invoke(_app(), [*args, "--overwrite", "--seed", "1"])
    assert r.exit_code == 0, r.output
    assert load_model_dir(tmp_path / expected).meta["train"]["seed"] == 1


def test_default_out_names():
    assert default_out("vgg:depth=11,width=0.25", "mnist_5k", 32) == Path("hwfarm-models/vgg-depth11-width0.25-mnist_5k-32")
    assert default_out("resnet8", "digits", 8) == Path("hwfarm-models/resnet8-digits-8")
    nb = default_out("nb201:|nor_conv_3x3~0|+|skip_connect~0|none~1|+|none~0|none~1|none~2|", "digits", 16)
    assert nb.name.startswith("nb201-") and nb.name.endswith("-digits-16") and "|" not in nb.name
