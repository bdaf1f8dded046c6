"""External LiteRT delegates (e.g. libedgetpu.so.1) on agent devices: a library that does
not load is a failed health check and a clear job error, never a crash or a stored record."""

from __future__ import annotations

import json

import pytest

from farm.zoo.tflite_models import conv_model

from ..conftest import FAST, run_cli

pytest.importorskip("ai_edge_litert")


def test_missing_delegate_is_a_failed_check_and_a_clear_error(tmp_path):
    reg = tmp_path / "devices.yaml"
    reg.write_text("devices:\n  - name: coral\n    url: local://cpu\n    runtime: litert\n"
                   f"    delegate: {tmp_path / 'libedgetpu.so.1'}\n    timeout_s: 60\n")
    model = tmp_path / "m.tflite"
    model.write_bytes(conv_model())
    db = tmp_path / "farm.db"
    c = run_cli("--registry", str(reg), "--db", str(db), "devices", "check", "coral", "--json")
    health = json.loads(c.stdout)
    assert c.returncode == 1 and health["status"] == "unavailable"
    assert "cannot load LiteRT delegate" in health["detail"] and "libedgetpu.so.1" in health["detail"]
    p = run_cli("--registry", str(reg), "--db", str(db), "profile", str(model), "--device", "coral", "--json", *FAST)
    assert p.returncode == 1 and "cannot load LiteRT delegate" in p.stderr and "Traceback" not in p.stderr
    assert p.stdout.strip() == ""
