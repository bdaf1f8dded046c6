"""The `hwfarm` command end to end, in fresh processes, against the real host CPU."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import pytest

from ..conftest import FAST, run_cli


@pytest.fixture
def farm(tmp_path, registry_file):
    """Run hwfarm with this test's registry and dataset."""
    db = tmp_path / "hwfarm.db"

    def hw(*args, **kw):
        return run_cli("--registry", str(registry_file), "--db", str(db), *args, **kw)

    hw.db = db
    hw.registry = registry_file
    return hw


def _one_error_line(proc) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_devices_list_and_check_json(farm):
    p = farm("devices", "list", "--json")
    assert p.returncode == 0, p.stderr
    (dev,) = json.loads(p.stdout)
    assert dev["name"] == "host-cpu" and dev["kind"] == "local"
    c = farm("devices", "check", "--json")
    assert c.returncode == 0, c.stderr
    health = json.loads(c.stdout.splitlines()[0])
    assert health["ok"] and health["facts"]["runtimes"]["onnxruntime"]


def test_profile_json_contract_store_and_cache(farm, onnx_file):
    a, b = onnx_file("a", 16), onnx_file("b", 32)
    p = farm("profile", str(a), str(b), "--device", "host-cpu", *FAST, "--json")
    assert p.returncode == 0, p.stderr
    objs = [json.loads(line) for line in p.stdout.splitlines()]
    assert [o["model"] for o in objs] == [str(a), str(b)]
    for o in objs:
        assert o["device"] == "host-cpu" and o["latency_ms"] > 0 and len(o["workload"]) == 64
        assert {"mean", "p10", "p90", "std", "cv", "n"} <= set(o["latency_stats"])
        assert o["provenance"]["runtime"] == "onnxruntime" and o["provenance"]["threads"] == 1
        assert o["provenance"]["simulated"] is False and o["source"] == "measured"
    con = sqlite3.connect(farm.db)
    assert con.execute("SELECT COUNT(*) FROM measurements").fetchone()[0] == 2
    # Same key again: answered from the dataset, nothing measured.
    again = farm("profile", str(a), "--device", "host-cpu", *FAST, "--json")
    o = json.loads(again.stdout)
    assert o["source"] == "cached" and o["latency_ms"] == objs[0]["latency_ms"]
    assert con.execute("SELECT COUNT(*) FROM measurements").fetchone()[0] == 2
    forced = farm("profile", str(a), "--device", "host-cpu", *FAST, "--json", "--force")
    assert json.loads(forced.stdout)["source"] == "measured"
    assert con.execute("SELECT COUNT(*) FROM measurements").fetchone()[0] == 3
    # Different threads → a different key → measured.
    t2 = farm("profile", str(a), "--device", "host-cpu", *FAST, "--json", "--threads", "2")
    assert json.loads(t2.stdout)["provenance"]["threads"] == 2
    # The machine's widest SIMD extension, as /proc/cpuinfo names it (what a runtime's kernels pick).
    from farm.agent.facts import simd

    assert o["provenance"]["simd"] == simd()


def test_profile_records_the_contention_gate_and_leaves_contended_runs_out(farm, onnx_file):
    a = onnx_file("a", 16)
    p = farm("profile", str(a), "--device", "host-cpu", *FAST, "--json")
    o = json.loads(p.stdout)
    gate = o["provenance"]["contention"]
    assert gate["gate"] == 1.25 and gate["probe_fast_us"] > 0 and 0 <= gate["contended_share"] <= 1
    con = sqlite3.connect(farm.db)
    samples, outliers = con.execute("SELECT samples_json, outliers_json FROM measurements").fetchone()
    samples, outliers = json.loads(samples), json.loads(outliers)
    # Every contended run is recorded with the others and counted out (unless fewer than 6 are left).
    if len(samples) - gate["contended_runs"] >= 6:
        assert len(outliers) >= gate["contended_runs"]
    assert o["latency_stats"]["n"] == len(samples) - len(outliers)
    off = farm("profile", str(a), "--device", "host-cpu", *FAST, "--json", "--gate", "0", "--force")
    assert json.loads(off.stdout)["provenance"]["contention"] is None
    bad = farm("profile", str(a), "--device", "host-cpu", "--gate", "0.5")
    assert bad.returncode == 2 and "--gate 0.5" in bad.stderr and "Traceback" not in bad.stderr


ONE_ROUND = FAST[:-4]  # the fast policy without its --rounds 1 --max-rounds 1


def test_profile_in_rounds_pools_each_models_rounds_into_one_record(farm, onnx_file):
    a, b = onnx_file("a", 16), onnx_file("b", 32)
    p = farm("profile", str(a), str(b), "--device", "host-cpu", *ONE_ROUND, "--estimator", "pooled", "--rounds", "2",
             "--json")
    assert p.returncode == 0, p.stderr
    objs = [json.loads(line) for line in p.stdout.splitlines()]
    con = sqlite3.connect(farm.db)
    for o in objs:
        rounds = o["provenance"]["rounds"]
        assert len(rounds) == 2 and o["latency_stats"]["stop_reason"] == "2 rounds" and o["settings"]["rounds"] == 2
        assert all(r["n"] >= 5 for r in rounds)
        assert o["latency_stats"]["n"] == sum(r["n"] for r in rounds)  # every round's inliers, none cut again
    (ra, rb) = (o["provenance"]["rounds"] for o in objs)  # a, b, a, b
    assert ra[0]["measured_at"] <= rb[0]["measured_at"] <= ra[1]["measured_at"] <= rb[1]["measured_at"]
    assert con.execute("SELECT COUNT(*) FROM measurements").fetchone()[0] == 2
    one = farm("profile", str(a), "--device", "host-cpu", *ONE_ROUND, "--estimator", "pooled", "--json")
    assert json.loads(one.stdout)["source"] == "measured" and "rounds" not in json.loads(one.stdout)["provenance"]
    bad = farm("profile", str(a), "--device", "host-cpu", "--rounds", "0")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_profile_by_default_estimates_the_quiet_state_over_fresh_sessions(farm, onnx_file):
    a = onnx_file("a", 16)
    p = farm("profile", str(a), "--device", "host-cpu", *ONE_ROUND, "--rounds", "3", "--max-rounds", "4", "--json")
    assert p.returncode == 0, p.stderr
    o = json.loads(p.stdout)
    prov, rounds = o["provenance"], o["provenance"]["rounds"]
    assert o["settings"]["estimator"] == "quiet" and o["settings"]["max_rounds"] == 4
    assert 3 <= len(rounds) <= 4 and prov["estimator"] == "quiet" and isinstance(prov["unstable"], bool)
    assert len({r["session"] for r in rounds}) == len(rounds), "every round a fresh runtime session"
    assert all(r["reference_us"] > 0 and isinstance(r["quiet"], bool) for r in rounds)
    assert prov["reference"]["workload"] and prov["reference"]["floor_us"] > 0
    lo, hi = o["latency_stats"]["ci95"]
    assert lo <= o["latency_ms"] <= hi
    # the record is recomputable from what it stores
    from farm.estimate import quiet_estimate
    from farm.measurement import record_rounds
    m = sqlite3.connect(farm.db).execute("SELECT id FROM measurements").fetchone()[0]
    from farm.store.sqlite import SqliteStore
    stored = SqliteStore(farm.db).get_measurement(m)
    assert quiet_estimate(record_rounds(stored), prov["reference"]["floor_us"], need=3).median_ms == \
        pytest.approx(o["latency_ms"])
    for bad_args, msg in ((["--estimator", "mean"], "--estimator mean"),
                          (["--estimator", "pooled", "--max-rounds", "3"], "--max-rounds"),
                          (["--rounds", "5", "--max-rounds", "3"], "below --rounds")):
        bad = farm("profile", str(a), "--device", "host-cpu", *bad_args)
        assert bad.returncode == 2 and msg in bad.stderr and "Traceback" not in bad.stderr


def test_profile_paired_reports_b_over_a_with_its_interval(farm, tmp_path):
    import onnx

    from ..conftest import matmul_model
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    onnx.save(matmul_model(192), a)
    onnx.save(matmul_model(48), b)
    p = farm("profile", str(a), str(b), "--device", "host-cpu", *ONE_ROUND, "--paired", "--rounds", "4", "--json")
    assert p.returncode == 0, p.stderr
    o = json.loads(p.stdout)
    assert set(o) >= {"a", "b", "ratio", "ci95", "pairs", "per_round", "unstable"}
    assert len(o["per_round"]) == 4 and o["ci95"][0] <= o["ratio"] <= o["ci95"][1]
    assert o["ratio"] < 0.5, "a 48-wide matmul is much faster than a 192-wide one"
    ra, rb = o["a"]["provenance"]["rounds"], o["b"]["provenance"]["rounds"]
    for i in range(3):  # interleaved: a1 b1 a2 b2 ...
        assert ra[i]["measured_at"] <= rb[i]["measured_at"] <= ra[i + 1]["measured_at"]
    text = farm("profile", str(a), str(b), "--device", "host-cpu", *ONE_ROUND, "--paired", "--rounds", "2")
    assert text.returncode == 0 and "b.onnx / a.onnx = " in text.stdout, text.stdout
    one = farm("profile", str(a), "--device", "host-cpu", "--paired")
    assert one.returncode == 2 and "--paired compares two models" in one.stderr


def test_profile_table_output(farm, onnx_file):
    p = farm("profile", str(onnx_file("a")), "--device", "host-cpu", *FAST)
    assert p.returncode == 0, p.stderr
    assert "median" in p.stdout and "a.onnx" in p.stdout
    assert "stored in" in p.stderr


def test_inspect_json_contract(farm, onnx_file):
    p = farm("inspect", str(onnx_file("a", 64)), "--json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["macs"] == 32 * 64 + 64 * 8 and d["params"] == 32 * 64 + 64 + 64 * 8
    assert [n["op"] for n in d["nodes"]] == ["Gemm", "Relu", "MatMul"]
    assert {"name", "op", "inputs", "outputs", "macs", "params"} <= set(d["nodes"][0])
    t = farm("inspect", str(onnx_file("b")))
    assert t.returncode == 0 and "Gemm" in t.stdout


def _db_state(db: Path):
    return db.read_bytes() if db.exists() else None


@pytest.mark.parametrize("case", ["corrupt_yaml", "duplicate", "unknown_scheme", "missing_model", "truncated_model",
                                  "unknown_device", "empty_model", "text_as_onnx"])
def test_bad_input_exits_2_with_one_line_and_store_unchanged(farm, onnx_file, tmp_path, case):
    good = onnx_file("good")
    seeded = farm("profile", str(good), "--device", "host-cpu", *FAST)  # a dataset with data in it
    assert seeded.returncode == 0, seeded.stderr
    before = _db_state(farm.db)
    model, device = str(good), "host-cpu"
    if case == "corrupt_yaml":
        farm.registry.write_text("devices:\n  - name: host-cpu\n    url: [local://cpu\n")
    elif case == "duplicate":
        farm.registry.write_text(farm.registry.read_text() + "  - name: host-cpu\n    url: local://cpu\n")
    elif case == "unknown_scheme":
        farm.registry.write_text(farm.registry.read_text() + "  - name: x\n    url: ftp://box\n")
    elif case == "missing_model":
        model = str(tmp_path / "nope.onnx")
    elif case == "truncated_model":
        data = good.read_bytes()
        model = str(tmp_path / "trunc.onnx")
        Path(model).write_bytes(data[: len(data) // 2])
    elif case == "unknown_device":
        device = "host-gpu"
    elif case == "empty_model":
        model = str(tmp_path / "empty.onnx")
        Path(model).write_bytes(b"")
    elif case == "text_as_onnx":
        model = str(tmp_path / "notes.onnx")
        Path(model).write_text("these are my notes, not a model\n" * 20)
    p = farm("profile", str(good), model, "--device", device, *FAST)
    assert p.returncode == 2, (p.returncode, p.stderr)
    line = _one_error_line(p)
    assert line.startswith("hwfarm: error: ")
    assert ("devices.yaml" in line) or (Path(model).name in line), line
    assert _db_state(farm.db) == before


def test_unreachable_device_is_exit_1(farm, onnx_file, tmp_path):
    port = tmp_path / "no-such-tty"
    # a short outage window: the farm default (minutes) would wait for the board to come back
    farm.registry.write_text(farm.registry.read_text() + f"  - name: mcu\n    url: serial://{port}\n    outage_s: 1\n")
    listed = farm("devices", "list", "--json")
    assert "mcu" in listed.stdout
    p = farm("profile", str(onnx_file("a")), "--device", "mcu", *FAST)
    assert p.returncode == 1 and "hwfarm: error: device 'mcu': cannot open serial port" in p.stderr
    assert "Traceback" not in p.stderr and "retry" in p.stderr  # retried with backoff, then failed
    c = farm("devices", "check", "mcu", "--json")
    assert c.returncode == 1 and json.loads(c.stdout)["status"] in ("unreachable", "unavailable")


def test_debug_shows_traceback(farm, tmp_path):
    p = farm("--debug", "inspect", str(tmp_path / "missing.onnx"))
    assert p.returncode == 2 and "Traceback" in p.stderr


def test_devices_add_remove_via_cli(farm):
    p = farm("devices", "add", "rpi", "ssh://pi@127.0.0.1:2222", "--set", "threads=4", "--set", "tags=[arm]")
    assert p.returncode == 0, p.stderr
    assert "# test registry" in farm.registry.read_text()
    devs = json.loads(farm("devices", "list", "--json").stdout)
    assert [d["name"] for d in devs] == ["host-cpu", "rpi"] and devs[1]["threads"] == 4
    bad = farm("devices", "add", "x", "local://cpu", "--set", "threads")
    assert bad.returncode == 2
    assert farm("devices", "remove", "rpi").returncode == 0
    assert farm("devices", "remove", "rpi").returncode == 2


def test_dataset_show_and_export(farm, onnx_file, tmp_path):
    assert farm("dataset", "show").returncode == 2  # no dataset yet: clear error
    farm("profile", str(onnx_file("a")), str(onnx_file("b", 8)), "--device", "host-cpu", *FAST)
    show = farm("dataset", "show", "--json")
    rows = [json.loads(line) for line in show.stdout.splitlines()]
    assert len(rows) == 2 and rows[0]["device"] == "host-cpu" and rows[0]["samples_ms"]
    out = tmp_path / "d.csv"
    assert farm("dataset", "export", "--format", "csv", "--out", str(out)).returncode == 0
    with open(out) as f:
        recs = list(csv.DictReader(f))
    assert {r["model"] for r in recs} == {"a", "b"} and float(recs[0]["median_ms"]) > 0
    pq = pytest.importorskip("pyarrow.parquet")
    outp = tmp_path / "d.parquet"
    assert farm("dataset", "export", "--format", "parquet", "--out", str(outp)).returncode == 0
    assert pq.read_table(outp).num_rows == 2
    assert farm("dataset", "export", "--format", "xlsx").returncode == 2
