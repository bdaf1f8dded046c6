"""int8 on host-cpu: the measured speedup of onnxruntime static quantization, and what it costs in accuracy.

Trains a CNN where compute dominates (default: ResNet-18 at half width on mnist_5k upsampled to
96×96; ``--arch`` takes any ``hwfarm train`` spec), writes it as a model directory, then runs
``hwfarm compress quantize``'s library path (:func:`compress.quantize.run_quantize`): static int8
(QDQ, per-channel weights, 256 calibration images of the training split), accuracy before and
after on the 1,000 held-out images, and both models measured on ``--device`` by the farm in
paired rounds (:func:`farm.compare`: the speedup with its 95% interval). The baseline is the
float model itself, measured in the same paired rounds. As a cross-check, a plain
``InferenceSession.run`` loop at 1 thread times both models alternately in this process.

Issue #29's target: ≥ 1.6× measured speedup with ≤ 1 point accuracy drop.

    .venv/bin/python bench/quantize_speedup.py                       # ~4 min on the 2-core VM
    .venv/bin/python bench/quantize_speedup.py --arch mobilenet_v2:width=0.5 --steps 120
    .venv/bin/python bench/quantize_speedup.py --model hwfarm-models/DIR --json   # no training
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _train(arch: str, data: str, size: int, steps: int, lr: float, out: Path) -> dict[str, Any]:
    import torch

    from nas.data import load_dataset
    from nas.modeldir import save_model_dir
    from nas.modules import build_module
    from nas.train import TrainConfig, evaluate, fit

    torch.manual_seed(0)
    module = build_module(arch, num_classes=10, in_channels=1, input_size=size)
    train, test = load_dataset(data, "train", input_size=size), load_dataset(data, "test", input_size=size)
    per_epoch = -(-len(train) // 64)
    cfg = TrainConfig(epochs=-(-steps // per_epoch), lr=lr, max_steps=steps)
    res = fit(module, train, cfg)
    acc = evaluate(module, test)
    save_model_dir(out, arch_spec=arch, module=module, dataset=data, input_size=size, in_channels=1,
                   num_classes=10, accuracy=acc,
                   train={"steps": res.steps, "lr": lr, "seconds": round(res.seconds, 1)})
    return {"steps": res.steps, "train_s": res.seconds, "torch_accuracy": acc}


def _plain_loop(a: Path, b: Path, x: Any, *, alternations: int = 5, runs: int = 30) -> tuple[float, float]:
    """Median ms of each model under a bare InferenceSession.run loop (1 thread), alternating."""
    import onnxruntime as ort

    def sess(p: Path) -> Any:
        o = ort.SessionOptions()
        o.intra_op_num_threads, o.inter_op_num_threads = 1, 1
        return ort.InferenceSession(str(p), o, providers=["CPUExecutionProvider"])

    sa, sb = sess(a), sess(b)
    name = sa.get_inputs()[0].name
    ta: list[float] = []
    tb: list[float] = []
    for _ in range(alternations):
        for s, acc in ((sa, ta), (sb, tb)):
            for _ in range(3):
                s.run(None, {name: x})
            for _ in range(runs):
                t0 = time.perf_counter()
                s.run(None, {name: x})
                acc.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ta), statistics.median(tb)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="resnet18:width=0.5", help="hwfarm train spec of the CNN to train")
    ap.add_argument("--data", default="mnist_5k")
    ap.add_argument("--input-size", type=int, default=96)
    ap.add_argument("--steps", type=int, default=80, help="training steps of 64 images (63 = one epoch)")
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--model", type=Path, help="a model directory or .onnx to quantize instead of training one")
    ap.add_argument("--device", default="host-cpu")
    ap.add_argument("--rounds", type=int, default=12, help="paired rounds of each model")
    ap.add_argument("--registry", type=Path, default=ROOT / "devices.yaml")
    ap.add_argument("--db", type=Path, help="dataset file (default: a temporary one)")
    ap.add_argument("--workdir", type=Path, help="where the model and the run go (default: a temporary folder)")
    ap.add_argument("--json", action="store_true", help="the result as one JSON object, the last stdout line")
    args = ap.parse_args()

    from rich.console import Console
    from rich.table import Table

    from compress.evaluate import image_input, resolve_model
    from compress.quantize import QuantizeConfig, run_quantize
    from farm.workload import load_workload
    from nas.data import load_dataset

    con = Console(stderr=args.json, highlight=False, width=None if (sys.stderr if args.json else sys.stdout).isatty() else 160)
    tmp = tempfile.TemporaryDirectory(prefix="quantize-bench-")
    work = args.workdir or Path(tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    db = args.db or work / "bench.db"
    trained: dict[str, Any] = {}
    t0 = time.perf_counter()
    if args.model is None:
        model = work / "model"
        with con.status(f"training {args.arch} on {args.data} {args.input_size}² ({args.steps} steps)…"):
            trained = _train(args.arch, args.data, args.input_size, args.steps, args.lr, model)
        arch = args.arch
    else:
        model, arch = args.model, str(args.model)
    src = resolve_model(model)
    inp = image_input(src.onnx)
    run = work / "run"
    with con.status("quantizing, measuring…") as spin:
        rep = run_quantize(model, device=args.device, out=run, data=src.data or args.data, overwrite=True,
                           registry=args.registry, db=db, config=QuantizeConfig(rounds=args.rounds),
                           on_status=lambda m: spin.update(m + "…"))
    x = load_dataset(rep.data, "test", input_size=inp.size, channels=inp.channels).x[:1]
    with con.status("plain onnxruntime loop…"):
        plain_a, plain_b = _plain_loop(src.onnx, Path(rep.model), x)
    macs = load_workload(src.onnx).graph.macs
    seconds = time.perf_counter() - t0

    t = Table(title=f"int8 (onnxruntime static, QDQ, per-channel) on {args.device}, 1 thread", title_justify="left")
    for c in ("model", "MACs", "accuracy %", "farm ms (paired)", "plain loop ms", "size KB"):
        t.add_column(c, justify="left" if c == "model" else "right")
    t.add_row(f"{arch} float32 {inp.size}²", f"{macs / 1e6:.1f} M", f"{rep.accuracy_before:.2f}",
              f"{rep.latency_ms_before:.3f}" if rep.latency_ms_before else "—", f"{plain_a:.3f}",
              f"{rep.size_kb_before:.0f}")
    t.add_row("int8", "", f"{rep.accuracy_after:.2f}", f"{rep.latency_ms_after:.3f}" if rep.latency_ms_after else "—",
              f"{plain_b:.3f}", f"{rep.size_kb_after:.0f}")
    con.print(t)
    ci = rep.speedup_ci95
    sp = f"{rep.speedup:.2f}x" if rep.speedup else "—"
    ci_s = f" (95% CI {ci[0]:.2f}–{ci[1]:.2f}, {rep.pairs} pairs)" if ci else ""
    con.print(f"speedup {sp}{ci_s}; plain loop {plain_a / plain_b:.2f}x; accuracy drop {rep.accuracy_drop:+.2f} "
              f"points; size {rep.size_kb_before / rep.size_kb_after:.1f}x smaller; "
              f"target ≥ 1.6x and ≤ 1 point: "
              f"{'met' if (rep.speedup or 0) >= 1.6 and rep.accuracy_drop <= 1 else 'missed'}; {seconds:.0f} s")
    if trained:
        con.print(f"trained {trained['steps']} steps in {trained['train_s']:.0f} s")
    if rep.predicted_ms_after is not None:
        err = (rep.predicted_ms_after / rep.latency_ms_after - 1) * 100 if rep.latency_ms_after else float("nan")
        con.print(f"predictor ({rep.bundle}): int8 {rep.predicted_ms_after:.3f} ms predicted, {err:+.1f}% off")
    if args.json:
        doc = {**rep.to_json(), "arch": arch, "input_size": inp.size, "macs": macs, "plain_ms_before": plain_a,
               "plain_ms_after": plain_b, "plain_speedup": plain_a / plain_b, "seconds": seconds, **trained}
        sys.stdout.write(json.dumps(doc) + "\n")
    tmp.cleanup()


if __name__ == "__main__":
    main()
