"""Kernel-level predictor accuracy on whole networks never seen in training, per device.

For each device, through the `hwfarm` command exactly as a user runs it (the dataset through
the library function that command runs):

1. `predictors.build.build` (`hwfarm dataset build --device D [--budget N]`): single-kernel
   models measured on D,
2. `hwfarm profile NETS --device D --rounds 3`: the held-out networks — reference nets
   (MobileNetV1/V2, ResNet-18/50, SqueezeNet, GoogLeNet, the MLPerf Tiny nets) and random
   NB201 and FBNet architectures — measured on D, every net once, then every net again, three
   times (a shared machine drifts by tens of per cent over minutes; one measurement samples
   one moment of it, the predictor's kernels span the whole build),
3. `hwfarm predictor train --device D`, then `hwfarm predictor eval --device D`: each
   network's prediction against its measured median,
4. `hwfarm profile NETS --device D --rounds 3` once more, into a scratch dataset: how often two
   measurements of the same network agree within ±10% (what bounds any predictor's score
   against one measurement; `--no-repeat` skips it).

Prints ±10% accuracy (the share of networks predicted within ±10% of the measured median),
median error and Spearman ρ per device. The dataset is kept (default /tmp/hwfarm-accuracy),
so a second run resumes instead of measuring again; each device's predicted-vs-measured plot
goes beside it (``eval-DEVICE.svg``).

    .venv/bin/python bench/predictor_accuracy.py --devices host-cpu            # real host, ~20 min
    .venv/bin/python bench/predictor_accuracy.py --devices host-cpu --build-rounds 3   # kernels in 3 rounds
    .venv/bin/python bench/predictor_accuracy.py --devices sim-raspi4,sim-pixel3 --budget 600
    .venv/bin/python bench/predictor_accuracy.py --devices sim-edgetpu,sim-cortex-m4 --budget 600   # int8

Devices with a TFLite plan (int8-only simulated profiles, LiteRT devices) get their held-out
nets as .tflite: int8 (and float32 where the device takes it), on MCUs only the nets whose
int8 activations and weights fit the SRAM and flash (plus MCU-sized variants, MCU_NETS), and
on the bit-serial BitFusion random per-layer bit widths from the plan's prior.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
NETS = ("mobilenet_v1", "mobilenet_v2", "resnet18", "resnet50", "squeezenet1_1", "googlenet", "resnet8", "ds_cnn",
        "mobilenet_v1_vww", "fc_autoencoder")


def hwfarm(work: Path, *args: str, db: str = "hwfarm.db") -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "farm.cli", "--registry", str(ROOT / "devices.yaml"), "--db",
           str(work / db), *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)


def build_dataset(work: Path, dev: str, *, budget: int | None, rounds: int) -> list[str]:
    """The device's kernel dataset in ``work/hwfarm.db`` (what ``hwfarm dataset build --device
    DEV`` does); the error lines, empty when it succeeded."""
    from farm.errors import HwfarmError
    from farm.registry.spec import load_registry
    from farm.store.sqlite import SqliteStore
    from predictors.build import build

    store = None
    try:
        store = SqliteStore(work / "hwfarm.db")
        report = build(store, load_registry(ROOT / "devices.yaml").get(dev), budget=budget, rounds=rounds)
    except HwfarmError as e:
        return [f"hwfarm: error: {e}"]
    finally:
        if store is not None:
            store.close()
    return [f"hwfarm: error: {x.spec.name}: {x.error}" for x in report.failures]


def export_nets(folder: Path, n_space: int) -> list[Path]:
    import onnx

    from farm.formats.onnx_export import graph_to_onnx
    from farm.zoo.nets import build_net
    from predictors.space_model import build_arch, sample_archs

    folder.mkdir(parents=True, exist_ok=True)
    graphs = [build_net(n) for n in NETS]
    from predictors.calibration import calibration_plan

    calibration = {(s.space, s.arch) for n in range(33) for s in calibration_plan(n)}  # what `dataset build` may train on
    for space in ("nb201", "fbnet"):
        graphs += [build_arch(space, a) for a in sample_archs(space, n_space, seed=123)
                   if (space, a) not in calibration]
    paths = []
    for i, g in enumerate(graphs):
        p = folder / f"{i:02d}-{g.name[:40].replace('|', '_').replace('~', '')}.onnx"
        if not p.exists():
            onnx.save(graph_to_onnx(g), p)
        paths.append(p)
    return paths


# Extra MCU-sized nets (the MLPerf Tiny nets at other widths, small MobileNets): an MCU's
# held-out set is every net here and in NETS whose int8 activations and weights fit it.
MCU_NETS = (("mobilenet_v1", {"alpha": 0.25, "resolution": 128}), ("mobilenet_v1", {"alpha": 0.5, "resolution": 96}),
            ("mobilenet_v2", {"alpha": 0.35, "resolution": 96}), ("resnet8", {"filters": 8}),
            ("resnet8", {"filters": 24}), ("ds_cnn", {"filters": 32}), ("ds_cnn", {"filters": 96}),
            ("fc_autoencoder", {"hidden": 256}), ("mobilenet_v1_vww", {"resolution": 128}))


def export_tflite_nets(folder: Path, n_space: int, dev: str) -> list[Path]:
    """The held-out nets as .tflite for a device with a TFLite plan: int8 (and float32 where
    the device takes it), only nets that fit an MCU's memories, and random per-layer bit
    widths (BIT_PRIOR) for a bit-serial device."""
    import numpy as np

    from farm.formats.tflite import graph_from_tflite
    from farm.formats.tflite_export import graph_to_tflite
    from farm.ir.graph import DTYPE_BYTES
    from farm.ir.memory import flash_kb, peak_sram_kb
    from farm.registry.spec import load_registry
    from farm.sim.profile import load_profile
    from farm.zoo.nets import build_net
    from predictors.space_model import build_arch, sample_archs
    from predictors.tflite_plan import BIT_PRIOR, bit_serial, plan_dtypes

    spec = load_registry(ROOT / "devices.yaml").get(dev)
    dtypes, bits = plan_dtypes(spec), bit_serial(spec)
    mcu = load_profile(spec.parsed_url.host).mcu if spec.kind == "sim" else None
    graphs = [build_net(n) for n in NETS] + ([build_net(n, **o) for n, o in MCU_NETS] if mcu else [])
    from predictors.calibration import calibration_plan

    calibration = {(s.space, s.arch) for n in range(33) for s in calibration_plan(n)}  # what `dataset build` may train on
    for space in ("nb201", "fbnet"):
        graphs += [build_arch(space, a) for a in sample_archs(space, n_space, seed=123)
                   if (space, a) not in calibration]
    paths = []
    for dtype in dtypes:
        sub = folder / (f"{dtype}-{dev}" if mcu is not None or bits else dtype)
        sub.mkdir(parents=True, exist_ok=True)
        for i, g in enumerate(graphs):
            if mcu is not None:
                f = DTYPE_BYTES[dtype] / 4.0
                if (peak_sram_kb(g)[0] * f + mcu.runtime_sram_kb > mcu.sram_kb
                        or flash_kb(g) * f + mcu.runtime_flash_kb > mcu.flash_kb):
                    continue
            p = sub / f"{i:02d}-{g.name[:40].replace('|', '_').replace('~', '')}.tflite"
            if not p.exists():
                data = graph_to_tflite(g, dtype=dtype)
                if bits:  # one (w, a) per MAC layer, drawn from the plan's prior
                    rng = np.random.default_rng([7, i])
                    vals, pr = [b for b, _ in BIT_PRIOR], np.array([w for _, w in BIT_PRIOR])
                    table = {n.name: [int(x) for x in rng.choice(vals, 2, p=pr / pr.sum())]
                             for n in graph_from_tflite(data).nodes if n.macs}
                    data = graph_to_tflite(g, dtype=dtype, bit_widths=table)
                p.write_bytes(data)
            paths.append(p)
    return paths


def roofline_baseline(work: Path, dev: str, models: list[dict[str, object]]) -> float:
    """±10% accuracy of the baseline computed in the same run: one roofline ``a + b·MACs +
    c·kB`` fitted (non-negative least squares) on the device's single-kernel measurements and
    applied to each held-out network's total MACs and bytes."""
    import numpy as np
    from scipy.optimize import nnls

    from farm.store.sqlite import SqliteStore
    from farm.workload import load_workload
    from predictors.dataset import kernel_samples

    ks = kernel_samples(SqliteStore(work / "hwfarm.db"), dev)
    A = np.array([[1.0, s.graph.macs / 1e6, s.graph.bytes_moved / 1024] for s in ks])
    y = np.array([s.measurement.latency_ms for s in ks])
    coef, _ = nnls(A / y[:, None], np.ones(len(y)))  # relative error
    hits = []
    for x in models:
        g = load_workload(str(x["model"])).graph
        pred = float(np.array([1.0, g.macs / 1e6, g.bytes_moved / 1024]) @ coef)
        hits.append(abs(pred / float(x["measured_ms"]) - 1) <= 0.1)  # type: ignore[arg-type]
    return float(np.mean(hits)) if hits else float("nan")


def baseline(work: Path, dev: str) -> dict[str, float]:
    """The same kernel-level predictor without boundary costs (chains ignored: each lone
    kernel's time less the overhead), trained and evaluated on the same dataset."""
    from farm.registry.spec import load_registry
    from farm.store.sqlite import SqliteStore
    from predictors.api import accuracy_metrics, training_set
    from predictors.kernel_model import KernelLevelPredictor

    spec = next(d for d in load_registry(ROOT / "devices.yaml").devices if d.name == dev)
    ts = training_set(SqliteStore(str(work / "hwfarm.db")), spec)
    g, y, _, _ = ts.subset(True)
    p = KernelLevelPredictor(rules=ts.rules, threads=ts.threads, boundary=False).fit(g, y)
    nets, ny, _, _ = ts.subset(False)
    return accuracy_metrics(p.predict(nets), ny)


def medians(stdout: str) -> dict[str, float]:
    """model → median ms from `hwfarm profile --json` (one object per line)."""
    out = {}
    for line in stdout.splitlines():
        o = json.loads(line)
        if o.get("latency_ms"):
            out[str(Path(o["model"]).name)] = float(o["latency_ms"])
    return out


def repeatability(work: Path, dev: str, nets: list[Path], first: dict[str, float], rounds: int) -> dict[str, float]:
    """The held-out networks profiled once more, into a scratch dataset (the first dataset is
    left as it was): the share whose two medians agree within ±10% bounds what any predictor
    can score against one measurement of each."""
    (work / "repeat.db").unlink(missing_ok=True)
    again = medians(hwfarm(work, "profile", *map(str, nets), "--device", dev, "--rounds", str(rounds), "--json",
                           db="repeat.db").stdout)
    ratio = np.array([again[n] / first[n] for n in first if n in again])
    if not len(ratio):
        return {"n": 0}
    return {"n": int(len(ratio)), "acc10": float(np.mean(np.abs(ratio - 1) <= 0.10)),
            "median_diff": float(np.median(np.abs(ratio - 1))), "p10": float(np.percentile(ratio - 1, 10)),
            "p90": float(np.percentile(ratio - 1, 90))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", default="host-cpu", help="comma-separated device names from devices.yaml")
    ap.add_argument("--budget", type=int, default=None, help="kernel models per device (default: the default plan)")
    ap.add_argument("--space-nets", type=int, default=12, help="random NB201 and FBNet networks each")
    ap.add_argument("--work", type=Path, default=Path("/tmp/hwfarm-accuracy"))
    ap.add_argument("--no-repeat", action="store_true",
                    help="skip profiling the held-out networks a second time (the repeatability column)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="measure the held-out networks in this many interleaved rounds (1: one measurement each)")
    ap.add_argument("--build-rounds", type=int, default=1,
                    help="measure the kernels in this many interleaved rounds (dataset build --rounds)")
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    from farm.registry.spec import load_registry
    from predictors.tflite_plan import plan_format

    onnx_nets: list[Path] | None = None
    rows = []
    for dev in a.devices.split(","):
        if plan_format(load_registry(ROOT / "devices.yaml").get(dev)) == "tflite":
            nets = export_tflite_nets(a.work / "nets-tflite", a.space_nets, dev)
        else:
            onnx_nets = onnx_nets or export_nets(a.work / "nets", a.space_nets)
            nets = onnx_nets
        print(f"[{dev}] kernel dataset…", file=sys.stderr)
        failed = build_dataset(a.work, dev, budget=a.budget, rounds=a.build_rounds)
        if failed:
            rows.append((dev, f"dataset build failed: {failed[-1:]}"))
            continue
        print(f"[{dev}] profiling {len(nets)} held-out networks in {a.rounds} round(s)…", file=sys.stderr)
        r = hwfarm(a.work, "profile", *map(str, nets), "--device", dev, "--rounds", str(a.rounds), "--json")
        measured = len(r.stdout.splitlines())
        first = medians(r.stdout)
        r = hwfarm(a.work, "predictor", "train", "--device", dev, "--json")
        if r.returncode != 0:
            rows.append((dev, f"train failed: {r.stderr.strip()}"))
            continue
        info = json.loads(r.stdout)
        r = hwfarm(a.work, "predictor", "eval", "--device", dev, "--json", "--plot", str(a.work / f"eval-{dev}.svg"))
        ev = json.loads(r.stdout)
        m = ev["metrics"]
        worst = max(ev["models"], key=lambda x: abs(x["error"]))
        m["baseline_acc10"] = roofline_baseline(a.work, dev, ev["models"])
        if not a.no_repeat:
            print(f"[{dev}] profiling the held-out networks again (repeatability)…", file=sys.stderr)
        rep = {"n": 0} if a.no_repeat else repeatability(a.work, dev, nets, first, a.rounds)
        rows.append((dev, info["metrics"]["n_train"], measured, m, baseline(a.work, dev), rep))
        print(f"[{dev}] worst: {Path(worst['model']).name} {100 * worst['error']:+.1f}%", file=sys.stderr)
        for x in sorted(ev["models"], key=lambda x: x["model"]):
            print(f"    {Path(x['model']).name:48s} measured {x['measured_ms']:9.4f} ms  predicted "
                  f"{x['predicted_ms']:9.4f} ms  {100 * x['error']:+6.1f}%", file=sys.stderr)
    print("\n| device | kernel models | held-out networks | ±10% accuracy | median error | Spearman ρ "
          "| roofline baseline ±10% | without boundary costs (same run): ±10% / median error "
          "| measured twice: within ±10% / median difference |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        if len(row) == 2:
            print(f"| {row[0]} | {row[1]} | | | | | | |")
            continue
        dev, n_train, n_nets, m, base, rep = row
        again = f"{100 * rep['acc10']:.0f}% / {100 * rep['median_diff']:.1f}%" if rep["n"] else "–"
        print(f"| {dev} | {n_train} | {m['n']} | {100 * m['acc10']:.0f}% | {100 * m['median_ape']:.1f}% "
              f"| {m.get('spearman', float('nan')):.3f} | {100 * m['baseline_acc10']:.0f}% "
              f"| {100 * base['acc10']:.0f}% / {100 * base['median_ape']:.1f}% | {again} |")


if __name__ == "__main__":
    main()
