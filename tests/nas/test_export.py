"""`hwfarm nas export`: an NB201 architecture as an ONNX file that profiles anywhere."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from farm.formats.onnx import graph_from_onnx
from farm.zoo.nb201 import build_nb201
from nas.spaces import NB201Space

from ..conftest import FAST, REGISTRY, run_cli

ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"


def test_export_by_string_then_profile(tmp_path):
    out = tmp_path / "cell.onnx"
    p = run_cli("nas", "export", "--space", "nb201", "--arch", ARCH, "--out", str(out))
    assert p.returncode == 0, p.stderr
    g = graph_from_onnx(onnx.load(out))
    ref = build_nb201(ARCH)
    assert (g.macs, g.params) == (ref.macs, ref.params)
    reg = tmp_path / "devices.yaml"
    reg.write_text(REGISTRY + "  - name: sim-pixel3\n    url: sim://pixel3?seed=0\n")
    for device in ("host-cpu", "sim-pixel3"):
        r = run_cli("--registry", str(reg), "--db", str(tmp_path / "h.db"), "profile", str(out), "--device", device,
                    "--json", *FAST)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["latency_ms"] > 0


def test_export_by_index_uses_the_table(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text(f"arch_idx,arch_str,dev\n7,{ARCH},1.0\n")
    out = tmp_path / "seven.onnx"
    p = run_cli("nas", "export", "--space", "nb201", "--arch", "7", "--table", str(table), "--out", str(out))
    assert p.returncode == 0, p.stderr and ARCH in p.stderr
    assert run_cli("nas", "export", "--space", "nb201", "--arch", "8", "--table", str(table),
                   "--out", str(out)).returncode == 2


@pytest.mark.parametrize("args, match", [(["--space", "darts", "--arch", ARCH], "unknown space"),
                                         (["--space", "nb201", "--arch", "|conv~0|"], "3 '+'-separated")])
def test_bad_requests_exit_2(tmp_path, args, match):
    p = run_cli("nas", "export", *args, "--out", str(tmp_path / "x.onnx"))
    assert p.returncode == 2 and match in p.stderr and not (tmp_path / "x.onnx").exists()


def test_space_samples_valid_architectures():
    space, rng = NB201Space(), np.random.default_rng(0)
    archs = {space.sample(rng) for _ in range(50)}
    assert len(archs) > 40 and all(space.resolve(a) == a for a in archs)


def test_export_tflite_int8_then_profile_on_an_int8_accelerator(tmp_path):
    from farm.formats.tflite import graph_from_tflite

    out = tmp_path / "cell.tflite"
    p = run_cli("nas", "export", "--space", "nb201", "--arch", ARCH, "--dtype", "int8", "--out", str(out))
    assert p.returncode == 0, p.stderr
    g = graph_from_tflite(out.read_bytes())
    assert g.macs == build_nb201(ARCH).macs and g.inputs[0].dtype == "int8"
    reg = tmp_path / "devices.yaml"
    reg.write_text(REGISTRY + "  - name: sim-edgetpu\n    url: sim://edgetpu?seed=0\n")
    r = run_cli("--registry", str(reg), "--db", str(tmp_path / "h.db"), "profile", str(out), "--device", "sim-edgetpu",
                "--json", *FAST)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["latency_ms"] > 0
    bad = run_cli("nas", "export", "--space", "nb201", "--arch", ARCH, "--dtype", "int8", "--out", str(tmp_path / "x.onnx"))
    assert bad.returncode == 2 and "--dtype" in bad.stderr and not (tmp_path / "x.onnx").exists()
