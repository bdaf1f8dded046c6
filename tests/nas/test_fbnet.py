"""FBNetSpace and `hwfarm nas export --space fbnet|NET`: sampling, both spellings, index
lookup in the shared table, one-line errors (exit 2, no file), runnable ONNX output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from farm.errors import InputError
from farm.formats.onnx import graph_from_onnx
from farm.zoo.fbnet import build_fbnet, parse_arch
from farm.zoo.nets import build_net
from nas.spaces import SPACES, FBNetSpace

from ..conftest import run_cli

CSV = Path(__file__).resolve().parents[2] / "../shared/data/fbnet-latency/latency_ms.csv"
ARCH = ("k5_e6-skip-k3_e1_g2-skip-k5_e1-skip-skip-skip-k5_e6-k5_e1-k3_e1_g2-k5_e1-k5_e6-k3_e6-k3_e3-k5_e6-"
        "k3_e6-k3_e3-k5_e1-k3_e3-k5_e1-k5_e1_g2")
IDX = "7-8-1-8-4-8-8-8-7-4-1-4-7-3-2-7-3-2-4-2-4-5"


def test_registered_and_samples_valid_distinct_architectures():
    space = SPACES["fbnet"]
    assert isinstance(space, FBNetSpace) and space.size == 9 ** 22
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(20)]
    assert len(set(archs)) == 20 and all(space.resolve(a) == a for a in archs)
    assert space.sample(np.random.default_rng(5)) == space.sample(np.random.default_rng(5))
    g = space.to_graph(archs[0])
    assert g.outputs[0].shape == (1, 100) and space.encode(archs[0]) == parse_arch(archs[0])


def test_resolve_spellings_and_index(tmp_path):
    space = FBNetSpace()
    assert space.resolve(IDX) == ARCH and space.resolve(f"  {ARCH} ") == ARCH
    table = tmp_path / "t.csv"
    table.write_text(f"arch_idx,arch,op_idx,raspi4\n0,{ARCH},{IDX},30.2\n")
    assert space.resolve("0", table=table) == ARCH
    with pytest.raises(InputError, match="no architecture with arch_idx 1"):
        space.resolve("1", table=table)
    with pytest.raises(InputError, match="needs a table"):
        space.resolve("0")
    bad = tmp_path / "nb.csv"
    bad.write_text("arch_idx,arch_str\n0,|skip_connect~0|\n")
    with pytest.raises(InputError, match="not an FBNet table"):
        space.resolve("0", table=bad)
    with pytest.raises(InputError, match="layer 3: unknown op 'k3_e2'"):
        space.resolve(ARCH.replace("k3_e1_g2", "k3_e2", 1))


@pytest.mark.skipif(not CSV.is_file(), reason="shared FBNet table not present")
def test_index_lookup_in_the_shared_table():
    assert FBNetSpace().resolve("0", table=CSV) == ARCH


@pytest.mark.parametrize("spec", [IDX, ARCH])
def test_cli_export_by_spelling_runs(tmp_path, spec):
    out = tmp_path / "f.onnx"
    p = run_cli("nas", "export", "--space", "fbnet", "--arch", spec, "--out", str(out))
    assert p.returncode == 0, p.stderr
    assert ARCH in p.stderr
    m = onnx.load(out)
    g = graph_from_onnx(m)
    ref = build_fbnet(ARCH)
    assert (g.macs, g.params) == (ref.macs, ref.params)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"input": np.zeros((1, 3, 32, 32), np.float32)})
    assert y.shape == (1, 100)


@pytest.mark.skipif(not CSV.is_file(), reason="shared FBNet table not present")
def test_cli_export_by_index_uses_the_shared_table(tmp_path):
    out = tmp_path / "zero.onnx"
    p = run_cli("nas", "export", "--space", "fbnet", "--arch", "0", "--out", str(out), cwd=Path(__file__).parents[2])
    assert p.returncode == 0, p.stderr
    assert graph_from_onnx(onnx.load(out)).macs == build_fbnet(ARCH).macs


def test_cli_export_a_reference_net_with_options(tmp_path):
    out = tmp_path / "mbv2.onnx"
    p = run_cli("nas", "export", "--space", "mobilenet_v2", "--arch", "alpha=0.5,resolution=96,classes=10",
                "--out", str(out))
    assert p.returncode == 0, p.stderr
    g = graph_from_onnx(onnx.load(out))
    assert g.macs == build_net("mobilenet_v2", alpha=0.5, resolution=96, classes=10).macs
    assert g.outputs[0].shape == (1, 10)
    p = run_cli("nas", "export", "--space", "ds_cnn", "--arch", "default", "--out", str(tmp_path / "kws.onnx"))
    assert p.returncode == 0, p.stderr


@pytest.mark.parametrize("args, match", [
    (["--space", "fbnet", "--arch", "7-8-1"], "expected 22"),
    (["--space", "fbnet", "--arch", "0", "--table", "/nonexistent.csv"], "no such file"),
    (["--space", "darts", "--arch", IDX], "unknown space 'darts'"),
    (["--space", "resnet18", "--arch", "depth=34"], "unknown option 'depth'"),
    (["--space", "resnet18", "--arch", "dtype=int8"], "only float32"),
    (["--space", "mobilenet_v1", "--arch", "alpha"], "expected key=value"),
])
def test_cli_bad_specs_exit_2_with_one_line(tmp_path, args, match):
    out = tmp_path / "x.onnx"
    p = run_cli("nas", "export", *args, "--out", str(out))
    assert p.returncode == 2, p.stderr
    assert match in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.iterdir())
