"""Latency-driven pruning, proven on the host CPU: a MobileNetV2 trained on mnist_5k at 96×96,
pruned to the same measured latency by the progressive loop (NetAdapt) and by uniform ratios,
each measured against the original in paired rounds (1 thread), accuracy on the held-out images.

Both methods are given the farm as ``measure`` (:class:`compress.prune.FarmLatency`): the target
is the original's measured latency / ``--target-speedup``; progressive steps until a
measurement is under it (the predictor ranking its proposals), uniform bisects its one ratio on
measurements. So they meet at the same measured latency, and the head-to-head paired
measurement says how close they came.

The issue's targets: ≥ 1.8× measured speedup with ≤ 1 point accuracy drop, and the
latency-driven allocation more accurate than uniform pruning at the same measured latency.
Both pruned models get the same fine-tuning budget (uniform's final fine-tune is as long as
progressive's short fine-tunes and its final one together), distilled from the original.

The latency cost is the device's predictor bundle (``--predictor DIR``, or the newest bundle
of ``--device`` beside ``--db``: ``hwfarm dataset build --device host-cpu`` then
``hwfarm predictor train --device host-cpu``). The trained original is kept in ``--work`` and
reused by the next run with the same settings.

    nice -n 10 .venv/bin/python bench/prune_speedup.py --predictor PATH/TO/host-cpu-bundle --final-epochs 2
        # 2-core VM: ~3 min to train the original (kept), then ~12-15 min
    .venv/bin/python bench/prune_speedup.py --width 0.35 --input-size 48 --epochs 1 --step-steps 5   # a quick look
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/hwfarm-prune-bench"), help="Models, dataset, results.")
    ap.add_argument("--width", type=float, default=1.0, help="MobileNetV2 width multiplier.")
    ap.add_argument("--input-size", type=int, default=96)
    ap.add_argument("--data", default="mnist_5k")
    ap.add_argument("--epochs", type=int, default=4, help="Training epochs of the original.")
    ap.add_argument("--device", default="host-cpu")
    ap.add_argument("--registry", type=Path, default=ROOT / "devices.yaml")
    ap.add_argument("--db", type=Path, default=None, help="Dataset the measurements go to (default: WORK/bench.db).")
    ap.add_argument("--predictor", default=None, help="Predictor bundle directory or id (default: the device's "
                    "newest beside --db).")
    ap.add_argument("--target-speedup", type=float, default=2.0, help="Measured speedup both methods prune to.")
    ap.add_argument("--methods", default="progressive,uniform", help="Comma-separated: progressive, uniform, search.")
    ap.add_argument("--criterion", default="l1")
    ap.add_argument("--alignment", type=int, default=None, help="Channel multiple (default: read off the predictor).")
    ap.add_argument("--step-steps", type=int, default=20, help="Fine-tune steps after each progressive step.")
    ap.add_argument("--step-fraction", type=float, default=0.12, help="Latency each progressive step cuts.")
    ap.add_argument("--val-images", type=int, default=128, help="Training images that score proposals.")
    ap.add_argument("--final-epochs", type=int, default=1, help="Final fine-tune of progressive (distilled).")
    ap.add_argument("--trials", type=int, default=12, help="Search trials (with --methods search).")
    ap.add_argument("--rounds", type=int, default=12, help="Paired rounds of each measurement.")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (on a shared machine more only wait).")
    ap.add_argument("--json", action="store_true", help="The result as one JSON object on the last stdout line.")
    args = ap.parse_args()

    import dataclasses

    import torch

    from compress.evaluate import accuracy_onnx, measure_speedup
    from compress.prune import METHODS, FarmLatency, PredictorLatency, PruneConfig, detect_alignment, onnx_bytes
    from farm.api import compare
    from nas.data import load_dataset
    from nas.modeldir import is_model_dir, load_model_dir, save_model_dir
    from nas.modules import build_module
    from nas.train import TrainConfig, evaluate, fit
    from predictors.api import load as load_predictor

    torch.set_num_threads(args.threads)
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    db = args.db or work / "bench.db"
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:
        if m not in METHODS:
            ap.error(f"--methods: unknown {m!r}")
    t_start = time.perf_counter()
    size, spec = args.input_size, f"mobilenet_v2:width={args.width:g},strides=imagenet"
    log(f"loading {args.data} at {size}x{size}")
    train = load_dataset(args.data, "train", input_size=size)
    test = load_dataset(args.data, "test", input_size=size)
    shape = (1, 1, size, size)

    base_dir = work / f"original-w{args.width:g}-{size}-e{args.epochs}"
    if is_model_dir(base_dir):
        log(f"reusing the trained original in {base_dir}")
        base = load_model_dir(base_dir).module
    else:
        log(f"training {spec} for {args.epochs} epoch(s) on {len(train)} images")
        torch.manual_seed(0)
        base = build_module(spec, input_size=size)
        t = time.perf_counter()
        res = fit(base, train, TrainConfig(epochs=args.epochs))
        log(f"trained in {time.perf_counter() - t:.0f} s; held-out accuracy {evaluate(base, test):.2f}%")
        save_model_dir(base_dir, arch_spec=spec, module=base, dataset=args.data, input_size=size, in_channels=1,
                       num_classes=10, accuracy=evaluate(base, test), train={"epochs": args.epochs,
                                                                             "steps": res.steps})
    base.eval()
    original_onnx = base_dir / "model.onnx"

    predictor = load_predictor(args.predictor or args.device, db=db)
    if args.alignment is None:
        alignment, source = detect_alignment(predictor)
    else:
        alignment, source = args.alignment, "given"
    lat = PredictorLatency(predictor, shape)
    measure = FarmLatency(args.device, shape, registry=args.registry, db=db)
    ms0 = lat.latency_ms(base)
    measured0 = measure.latency_ms(base)
    target = measured0 / args.target_speedup
    log(f"predictor {predictor.bundle_id}: original {ms0:.3f} ms predicted, {measured0:.3f} ms measured; target "
        f"{target:.3f} ms measured; alignment {alignment} ({source})")
    acc0 = accuracy_onnx(original_onnx, test)
    cfg = PruneConfig(criterion=args.criterion, epochs=args.final_epochs, step_steps=args.step_steps,
                      step_fraction=args.step_fraction, val_images=args.val_images, trials=args.trials)

    results: dict[str, Any] = {}
    files: dict[str, Path] = {}
    budget = None  # fine-tuning steps of the first method: the others get as many
    for name in methods:
        c = cfg if budget is None else dataclasses.replace(cfg, final_steps=budget)
        log(f"{name}: pruning to {target:.3f} ms measured")
        last = [""]

        def progress(what: str, done: int, total: int, last: list[str] = last) -> None:
            if what != last[0]:
                last[0] = what
                log(f"  {what} ({total})")

        t = time.perf_counter()
        r = METHODS[name](base, input_shape=shape, train=train, test=test, latency=lat, target_ms=target, config=c,
                          alignment=alignment, progress=progress, measure=measure)
        secs = time.perf_counter() - t
        if budget is None:
            budget = r.train_steps
        path = work / f"{name}.onnx"
        path.write_bytes(onnx_bytes(r.module, shape))
        files[name] = path
        acc = accuracy_onnx(path, test)
        log(f"{name}: {r.measured_ms_after:.3f} ms measured, {r.predicted_ms_after:.3f} predicted "
            f"({r.predicted_speedup:.2f}x), accuracy {acc:.2f}% ({acc - acc0:+.2f}), {r.train_steps} fine-tune steps, "
            f"{secs:.0f} s")
        results[name] = {"accuracy": acc, "accuracy_drop": acc0 - acc, "predicted_ms": r.predicted_ms_after,
                         "loop_measured_ms": r.measured_ms_after,
                         "predicted_speedup": r.predicted_speedup, "train_steps": r.train_steps,
                         "seconds": round(secs, 1), "params": sum(p.numel() for p in r.module.parameters()),
                         "trace": [s.to_json() for s in r.steps], "channels": dict(r.channels_after)}

    for name, path in files.items():
        log(f"measuring the original against {name} on {args.device} ({args.rounds} paired rounds)")
        m = measure_speedup(original_onnx, path, device=args.device, registry=args.registry, db=db,
                            rounds=args.rounds)
        results[name].update({"measured_ms": m.after_ms, "original_ms": m.before_ms, "speedup": m.speedup,
                              "speedup_ci95": list(m.ci95) if m.ci95 else None, "pairs": m.pairs,
                              "measure_error": m.error})
    head = None
    if "progressive" in files and "uniform" in files:
        log("measuring progressive against uniform (paired)")
        cmp = compare(files["progressive"], files["uniform"], device=args.device, rounds=args.rounds,
                      registry=args.registry, db=db)
        head = {"uniform_over_progressive": cmp.ratio.ratio, "ci95": [cmp.ratio.ci_low, cmp.ratio.ci_high],
                "pairs": cmp.ratio.pairs}

    doc: dict[str, Any] = {
        "arch": spec, "input_size": size, "data": args.data, "device": args.device, "bundle": predictor.bundle_id,
        "alignment": alignment, "alignment_source": source, "criterion": args.criterion,
        "target_speedup_measured": args.target_speedup, "target_ms": target, "accuracy_original": acc0,
        "predicted_ms_original": ms0, "measured_ms_original": measured0,
        "params_original": sum(p.numel() for p in base.parameters()), "methods": results, "head_to_head": head,
        "seconds": round(time.perf_counter() - t_start, 1),
    }
    if "progressive" in results:
        p = results["progressive"]
        doc["target_speedup_met"] = bool(p.get("speedup") and p["speedup"] >= 1.8)
        doc["target_accuracy_met"] = bool(p["accuracy_drop"] <= 1.0)
        if "uniform" in results:
            doc["beats_uniform"] = bool(p["accuracy"] > results["uniform"]["accuracy"])
    (work / "results.json").write_text(json.dumps(doc, indent=1) + "\n")

    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{spec} at {size}x{size} on {args.data}, {args.device} (1 thread), target "
                    f"{args.target_speedup:g}x measured", title_justify="left")
    for col in ("model", "accuracy %", "drop", "predicted ms", "measured ms", "speedup (95% CI)", "params",
                "fine-tune steps"):
        t.add_column(col, justify="left" if col == "model" else "right")
    orig_ms = next((r.get("original_ms") for r in results.values() if r.get("original_ms")), None)
    t.add_row("original", f"{acc0:.2f}", "", f"{ms0:.3f}", f"{orig_ms:.3f}" if orig_ms else "—", "",
              f"{doc['params_original']:,}", "")
    for name, r in results.items():
        ci = r.get("speedup_ci95")
        sp = f"{r['speedup']:.2f}x" + (f" ({ci[0]:.2f}–{ci[1]:.2f})" if ci else "") if r.get("speedup") else "—"
        t.add_row(name, f"{r['accuracy']:.2f}", f"{r['accuracy_drop']:+.2f}", f"{r['predicted_ms']:.3f}",
                  f"{r['measured_ms']:.3f}" if r.get("measured_ms") else "—", sp, f"{r['params']:,}",
                  str(r["train_steps"]))
    con = Console(stderr=args.json, highlight=False, width=160)
    con.print(t)
    if head:
        con.print(f"uniform / progressive measured latency: {head['uniform_over_progressive']:.3f} "
                  f"(95% CI {head['ci95'][0]:.3f}–{head['ci95'][1]:.3f})")
    con.print(f"{doc['seconds']:.0f} s in all; results in {work / 'results.json'}")
    if args.json:
        sys.stdout.write(json.dumps(doc) + "\n")


if __name__ == "__main__":
    main()
