"""`hwfarm dataset build`: end to end on a sim device, resumable (in-process and after kill -9 on
the real host CPU), stored graphs are single kernels, bad input exits 2 and writes nothing."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from farm.errors import InputError
from farm.registry.spec import DeviceSpec
from farm.sim.profile import load_profile
from farm.store.sqlite import SqliteStore
from predictors.dataset import DATASET_POLICY, kernel_samples, measure_specs, models_dir_for, summarize_results
from predictors.fusion import detected_fusion_rules
from predictors.sampling import OVERHEAD, kernel_type_of, make_plan, single_kernel

from ..conftest import ROOT, run_cli

REG = """devices:
  - name: sim-raspi4
    url: sim://raspi4?seed=0
    runtime: sim
  - name: host-cpu
    url: local://cpu
    runtime: onnxruntime
    threads: 1
  - name: phone
    url: adb://127.0.0.1:5555
"""
SIM = DeviceSpec(name="sim-raspi4", url="sim://raspi4?seed=0", runtime="sim")


@pytest.fixture
def reg(tmp_path) -> Path:
    p = tmp_path / "devices.yaml"
    p.write_text(REG)
    return p


def _cli(reg: Path, db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("--registry", str(reg), "--db", str(db), "dataset", *args, cwd=ROOT)


def _rows(db: Path) -> list[tuple[int, str]]:
    if not db.exists():
        return []
    try:
        return sqlite3.connect(db, timeout=5).execute("SELECT id, workload FROM measurements ORDER BY id").fetchall()
    except sqlite3.OperationalError:
        return []


def test_build_on_sim_end_to_end_then_nothing_twice(tmp_path, reg):
    db = tmp_path / "farm.db"
    r = _cli(reg, db, "build", "--device", "sim-raspi4", "--budget", "40", "--seed", "3", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["models"] == 40 and out["measured"] == 40 and out["failed"] == 0
    assert {tuple(x) for x in out["fusion_rules"]} == set(load_profile("raspi4").fusion)
    assert set(out["kernels"]) >= {"conv", "dwconv", "gemm", "eltwise", "act", OVERHEAD}
    assert sum(k["models"] for k in out["kernels"].values()) == 40
    assert out["kernels"]["conv"]["min_ms"] <= out["kernels"]["conv"]["median_ms"] <= out["kernels"]["conv"]["max_ms"]

    store = SqliteStore(db)
    rules = detected_fusion_rules(store, "sim-raspi4")
    assert rules is not None
    ms = store.measurements(device="sim-raspi4")
    built = [m for m in ms if m.settings.policy == DATASET_POLICY]  # fusion tests use the default protocol
    assert len(built) == 40 and all(m.provenance["simulated"] for m in built)
    for m in built:  # the contract with the predictor: each stored graph is one kernel of its type
        rec = store.get_workload(m.workload)
        assert rec is not None and rec.source_path is not None
        folder = Path(rec.source_path).parent.name
        if folder == OVERHEAD and "+" in rec.name:  # chains of minimal ops: overhead + n × dispatch
            assert len(rec.graph.nodes) in (2, 4) and rec.graph.macs == 0
            continue
        k = single_kernel(rec.graph, rules)
        assert k is not None, rec.name
        assert kernel_type_of(k) == ("act" if folder == OVERHEAD else folder)
    assert Path(out["models_dir"]) == models_dir_for(db)
    assert out["models_kept"] is False and not (tmp_path / "farm-models" / "conv").exists()  # emptied folders go too
    assert list((tmp_path / "farm-models" / "fusion").glob("*.onnx"))  # small: kept
    samples = kernel_samples(store, "sim-raspi4")
    singles = {m.workload for m in built if len(store.get_workload(m.workload).graph.nodes) == 1
               or Path(store.get_workload(m.workload).source_path).parent.name != OVERHEAD}
    assert singles <= {s.measurement.workload for s in samples}
    assert len(samples) < len(ms)  # the unfused fusion-test chains are not training samples
    assert {s.kernel_type for s in samples} >= {"conv", "dwconv", "gemm", "eltwise", "act"}
    conv_bn_relu = [s for s in samples if s.kernel.ops == ("Conv", "BatchNormalization", "Relu")]
    assert conv_bn_relu and all(s.kernel_type in ("conv", "dwconv") for s in conv_bn_relu)
    assert len(kernel_samples(store, "sim-raspi4", fusion=())) < len(samples)  # without rules: fused ones drop out

    again = _cli(reg, db, "build", "--device", "sim-raspi4", "--budget", "40", "--seed", "3", "--json")
    assert again.returncode == 0, again.stderr
    second = json.loads(again.stdout)
    assert second["cached"] == 40 and second["measured"] == 0
    assert len(SqliteStore(db).measurements(device="sim-raspi4")) == len(ms)  # nothing measured twice

    table = _cli(reg, db, "build", "--device", "sim-raspi4", "--budget", "10", "--kernels", "conv,gemm",
                 "--refine", "0", "--force")
    assert table.returncode == 0, table.stderr
    assert len(SqliteStore(db).measurements(device="sim-raspi4")) == len(ms) + 10  # --force measures again
    assert "conv" in table.stdout and "gemm" in table.stdout and "dwconv" not in table.stdout
    assert "fusion rules of sim-raspi4: Conv+BatchNormalization" in table.stderr
    kept = _cli(reg, db, "build", "--device", "sim-raspi4", "--budget", "5", "--kernels", "gemm", "--refine", "0",
                "--keep-models", "--json")
    assert kept.returncode == 0 and json.loads(kept.stdout)["models_kept"] is True
    assert list((tmp_path / "farm-models" / "gemm").glob("*.onnx"))


def test_interrupted_build_resumes_without_repeating(tmp_path):
    store = SqliteStore(tmp_path / "d.db")
    plan = make_plan(budget=30, seed=0, fusion=load_profile("raspi4").fusion)
    first = measure_specs(store, SIM, plan[:12], models_dir=tmp_path / "models")
    assert [r.source for r in first] == ["measured"] * 12
    # A process died while measuring the 13th model: its job is left "running" under a dead owner.
    from predictors.dataset import dataset_settings, write_models

    (w,) = write_models([plan[12]], tmp_path / "models")
    store.put_workload(w)
    store.enqueue(SIM.name, w.hash, dataset_settings(SIM))
    job, _ = store.claim(SIM.name, f"{socket.gethostname()}:999999999")
    assert job is not None and store.get_job(job.id).status == "running"
    requeued: list[list[int]] = []
    rest = measure_specs(store, SIM, plan, models_dir=tmp_path / "models", on_requeue=requeued.append)
    assert requeued == [[job.id]]
    assert [r.source for r in rest[:12]] == ["cached"] * 12
    assert [r.source for r in rest[12:]] == ["measured"] * 18
    assert [r.measurement.id for r in rest[:12]] == [r.measurement.id for r in first]  # type: ignore[union-attr]
    ms = store.measurements(device=SIM.name)
    assert len(ms) == 30 and len({m.workload for m in ms}) == 30
    assert store.get_job(job.id).status == "done"
    s = summarize_results(rest)
    assert sum(v["cached"] for v in s.values()) == 12 and sum(v["measured"] for v in s.values()) == 18


def test_kill_9_on_the_real_host_then_rerun(tmp_path, reg):
    """A small real build on the host CPU, killed mid-way: the re-run keeps what was done."""
    db = tmp_path / "host.db"
    cmd = [sys.executable, "-m", "farm.cli", "--registry", str(reg), "--db", str(db), "dataset", "build",
           "--device", "host-cpu", "--kernels", "act,eltwise", "--budget", "10", "--refine", "0",
           "--no-detect-fusion", "--json"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while len(_rows(db)) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _rows(db)
    assert 2 <= len(before) < 10, "the kill should land mid-build"
    rerun = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    out = json.loads(rerun.stdout)
    after = _rows(db)
    # the plan's 10 models, then its 5 minimal models' second sitting
    assert len(after) == 10 + 5 and after[: len(before)] == before
    assert out["cached"] == len(before) and out["measured"] == 10 - len(before) and out["overhead_again"] == 5
    m = SqliteStore(db).measurements(device="host-cpu")[0]
    assert m.provenance["simulated"] is False and m.settings.policy == DATASET_POLICY and m.latency_ms > 0
    assert out["fusion_rules"] == []


@pytest.mark.parametrize(("args", "message"), [
    (["build", "--device", "nope"], "no device named 'nope'"),
    (["build", "--device", "sim-raspi4", "--kernels", "conv,lstm"], "unknown kernel type(s) lstm"),
    (["build", "--device", "sim-raspi4", "--budget", "0"], "--budget 0"),
    (["build", "--device", "sim-raspi4", "--models-dir", "{file}"], "cannot create the models folder"),
    (["fusion", "--device", "nope"], "no device named 'nope'"),
])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, reg, args, message):
    db = tmp_path / "farm.db"
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    r = _cli(reg, db, *[x.replace("{file}", str(a_file / "sub")) for x in args])
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not db.exists()


def test_device_that_cannot_run_onnx_exits_2_before_writing(tmp_path, reg):
    # Fusion detection times ONNX test models; `dataset build` writes .tflite kernels for such
    # a device instead (tests/predictors/test_tflite_plan.py).
    db = tmp_path / "farm.db"
    r = _cli(reg, db, "fusion", "--device", "phone")
    assert r.returncode == 2 and "takes .tflite models" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not db.exists() and not (tmp_path / "farm-models").exists()


def _slow_provenance(db: Path, ids: list[int]) -> None:
    """Mark measurements as the contention gate reports a run it saw slowed throughout."""
    con = sqlite3.connect(db)
    for i in ids:
        (prov,) = con.execute("SELECT provenance_json FROM measurements WHERE id = ?", (i,)).fetchone()
        p = json.loads(prov) | {"contention": {"gate": 1.25, "contended_share": 1.0, "contended_runs": 20}}
        con.execute("UPDATE measurements SET provenance_json = ? WHERE id = ?", (json.dumps(p), i))
    con.commit()
    con.close()


def test_kernels_slowed_throughout_are_left_out_of_training_but_not_for_good(tmp_path, reg):
    from farm.registry.spec import load_registry
    from predictors.api import training_set

    db = tmp_path / "farm.db"
    assert _cli(reg, db, "build", "--device", "sim-raspi4", "--budget", "30", "--seed", "4", "--json").returncode == 0
    spec = load_registry(reg).get("sim-raspi4")
    before = training_set(SqliteStore(db), spec)
    n_train = len(before.subset(True)[0])
    ids = [i for i, _ in _rows(db)]
    _slow_provenance(db, ids[:5])
    ts = training_set(SqliteStore(db), spec)
    n = ts.n_slowed_kernels  # the first rows hold fusion-test models too: those are not training kernels
    assert 0 < n <= 5 and len(ts.subset(True)[0]) == n_train - n
    assert len(ts.subset(False)[0]) == len(before.subset(False)[0])  # evaluation data is never left out
    # Slowed for most of the dataset: that is the device's speed (a throttled board), kept.
    _slow_provenance(db, ids)
    ts = training_set(SqliteStore(db), spec)
    assert ts.n_slowed_kernels == 0 and len(ts.subset(True)[0]) == n_train



def test_calibration_networks_are_measured_for_training_never_for_evaluation(tmp_path, reg):
    from farm.registry.spec import load_registry
    from predictors.api import training_set
    from predictors.calibration import calibration_plan, default_calibration

    assert default_calibration(None) == 32 and default_calibration(299) == 0 and default_calibration(600) == 10
    assert [s.name for s in calibration_plan(4)] == [s.name for s in calibration_plan(4)]  # deterministic
    assert {s.space for s in calibration_plan(4)} == {"nb201", "fbnet"}
    db = tmp_path / "farm.db"
    r = _cli(reg, db, "build", "--device", "sim-raspi4", "--budget", "30", "--seed", "2", "--calibration", "2", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["kernels"]["calibration"]["models"] == 2 and out["kernels"]["calibration"]["failed"] == 0
    ts = training_set(SqliteStore(db), load_registry(reg).get("sim-raspi4"))
    graphs, lat, _ = ts.calibration_nets()
    assert len(graphs) == 2 and all(v > 0 for v in lat)
    assert not ts.subset(False)[0]  # generated: never evaluation data
    assert ts.rules.layout_block == 0  # a simulated device has no blocked layout
    # seeded noise does not drift: one round on a simulated device
    assert all(m.settings.rounds == 1 for m in SqliteStore(db).measurements(device="sim-raspi4"))
    # --calibration 0: none; a budget below 300 measures none by default
    r0 = _cli(reg, tmp_path / "b.db", "build", "--device", "sim-raspi4", "--budget", "30", "--seed", "2", "--json")
    assert "calibration" not in json.loads(r0.stdout)["kernels"]
    assert json.loads(r0.stdout)["overhead_again"] == 0  # nor a second sitting of the minimal models


def test_calibration_networks_on_a_real_device_are_measured_in_rounds(tmp_path, reg):
    from farm.registry.spec import load_registry
    from predictors.api import training_set
    from predictors.build import CALIBRATION_ROUNDS
    from predictors.dataset import DATASET_EXTRA_ROUNDS

    db = tmp_path / "host.db"
    r = _cli(reg, db, "build", "--device", "host-cpu", "--kernels", "act", "--budget", "3", "--refine", "0",
             "--no-detect-fusion", "--calibration", "2", "--json")
    assert r.returncode == 0, r.stderr
    ms = SqliteStore(db).measurements(device="host-cpu")
    kernels = [m for m in ms if m.settings.rounds == 1]
    nets = [m for m in ms if m.settings.rounds == CALIBRATION_ROUNDS]
    # kernels in one round (and the two minimal models sat again at the end), networks in three
    assert len(kernels) == 3 + 2 and len(nets) == 2
    # three quiet rounds wanted, a slow one measured again (at most DATASET_EXTRA_ROUNDS more)
    assert all(CALIBRATION_ROUNDS <= len(m.provenance["rounds"]) <= CALIBRATION_ROUNDS + DATASET_EXTRA_ROUNDS
               and m.provenance["estimator"] == "quiet" for m in nets)
    out = json.loads(r.stdout)
    assert out["models"] == 3 + 2 and out["measured"] == 5 and out["overhead_again"] == 2  # the budget, then the sittings
    names = {SqliteStore(db).get_workload(m.workload).name: m for m in kernels}
    assert {"overhead-relu-c1", "overhead-relu-c1-s2", "overhead-relu-c8", "overhead-relu-c8-s2"} <= set(names)
    first, second = names["overhead-relu-c1"], names["overhead-relu-c1-s2"]
    assert first.workload != second.workload and first.id < second.id  # its own workload, measured after
    ts = training_set(SqliteStore(db), load_registry(reg).get("host-cpu"))
    assert len(ts.calibration_nets()[0]) == 2


def test_build_rounds_measures_the_kernels_in_interleaved_rounds(tmp_path, reg):
    from farm.registry.spec import load_registry
    from predictors.api import training_set

    db = tmp_path / "host.db"
    args = ("build", "--device", "host-cpu", "--kernels", "act", "--budget", "3", "--refine", "0",
            "--no-detect-fusion", "--calibration", "0", "--rounds", "2", "--json")
    r = _cli(reg, db, *args)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["rounds"] == 2 and out["measured"] == 3 and out["overhead_again"] == 2
    ms = SqliteStore(db).measurements(device="host-cpu")
    plan = [m for m in ms if m.settings.rounds == 2]
    # each record: two quiet rounds wanted, up to DATASET_EXTRA_ROUNDS more for slow ones
    from predictors.dataset import DATASET_EXTRA_ROUNDS
    assert len(plan) == 3 and all(2 <= len(m.provenance["rounds"]) <= 2 + DATASET_EXTRA_ROUNDS for m in plan)
    assert len([m for m in ms if m.settings.rounds == 1]) == 2  # the second sitting: one round, as always
    again = json.loads(_cli(reg, db, *args).stdout)  # resumed with the same rounds: nothing to measure
    assert again["cached"] == 3 and again["measured"] == 0
    ts = training_set(SqliteStore(db), load_registry(reg).get("host-cpu"))
    # the rounds' records train like any other, except one a noisy host slowed throughout
    assert len(ts.subset(True)[0]) == 3 + 2 - ts.n_slowed_kernels and ts.n_slowed_kernels <= 2
    r = _cli(reg, db, "build", "--device", "host-cpu", "--rounds", "0")
    assert r.returncode == 2 and "--rounds" in r.stderr and "Traceback" not in r.stderr


def test_build_as_a_library_call_reports_what_the_cli_prints(tmp_path):
    from predictors.build import build

    store = SqliteStore(tmp_path / "lib.db")
    notes: list[str] = []
    phases: list[tuple[str, int, int]] = []

    def progress(title: str, total: int, rounds: int):
        import contextlib

        phases.append((title, total, rounds))

        class Quiet:
            def on_event(self, e):
                pass

            def on_cached(self, n):
                pass

        return contextlib.nullcontext(Quiet())

    first = build(store, SIM, budget=6, kernels=("gemm",), refine=0, calibration=0, detect=False,
                  progress=progress, on_note=notes.append)
    assert first.models_dir == tmp_path / "lib-models" and first.models_kept is False
    assert first.counts == {"measured": 6, "cached": 0, "failed": 0} and not first.failures
    assert notes == ["fusion rules of sim-raspi4: none"]
    assert phases == [("kernels on sim-raspi4", 6, 1)]
    doc = first.to_json()
    assert list(doc) == ["device", "db", "models_dir", "models_kept", "fusion_rules", "plan", "models", "measured",
                         "cached", "failed", "overhead_again", "rounds", "elapsed_s", "kernels"]
    assert doc["db"] == str(tmp_path / "lib.db") and doc["plan"] == "onnx" and doc["fusion_rules"] == []
    again = build(store, SIM, budget=6, kernels=("gemm",), refine=0, calibration=0, detect=False)
    assert again.counts == {"measured": 0, "cached": 6, "failed": 0}
    with pytest.raises(InputError, match="--budget 0"):
        build(store, SIM, budget=0)
    with pytest.raises(InputError, match="--dtype 'int8'"):
        build(store, SIM, dtype="int8")
