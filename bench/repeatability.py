"""Repeatability of host-CPU medians across processes, and hwfarm's overhead vs a bare loop.

For each demo model: three `hwfarm profile --force` runs, each in its own process with its
own dataset, plus a baseline: a bare onnxruntime loop (same thread settings) in this process.
Prints each median, their largest deviation from their mean (the ± figure), and hwfarm's
median / the bare loop's median (hwfarm's own overhead; 1.00 = none).

    python bench/repeatability.py [--models resnet8-cifar,mobilenet-v1-0.25-128] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def bare_ort_median_ms(path: Path, runs: int = 300) -> float:
    """The baseline: onnxruntime timed in a plain loop, 1 thread, no hwfarm in between."""
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    feed = {inp.name: np.random.default_rng(0).standard_normal(inp.shape).astype(np.float32)}
    for _ in range(20):
        sess.run(None, feed)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, feed)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mlp,resnet8-cifar,mobilenet-v1-0.25-128")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    from farm.workload import load_workload
    from farm.zoo.onnx_models import export_demo_model

    with tempfile.TemporaryDirectory() as tmp:
        tmpd = Path(tmp)
        reg = tmpd / "devices.yaml"
        reg.write_text("devices:\n  - name: host-cpu\n    url: local://cpu\n    threads: 1\n")
        print(f"{'model':24} {'MACs':>7} {'median ms per process':30} {'±dev':>7} {'bare ort':>9} {'ratio':>6}")
        worst = 0.0
        for name in args.models.split(","):
            path = tmpd / f"{name}.onnx"
            export_demo_model(name, path)
            medians = []
            for i in range(args.repeats):
                out = subprocess.run(
                    [sys.executable, "-m", "farm.cli", "--registry", str(reg), "--db", str(tmpd / f"{name}{i}.db"),
                     "profile", str(path), "--device", "host-cpu", "--json"],
                    cwd=ROOT, capture_output=True, text=True, check=True)
                medians.append(json.loads(out.stdout)["latency_ms"])
            mean = statistics.fmean(medians)
            dev = max(abs(m - mean) for m in medians) / mean
            worst = max(worst, dev)
            base = bare_ort_median_ms(path)
            macs = load_workload(path).graph.macs
            print(f"{name:24} {macs / 1e6:6.2f}M {', '.join(f'{m:.4f}' for m in medians):30} {100 * dev:6.2f}% "
                  f"{base:9.4f} {mean / base:6.3f}")
        print(f"\nlargest deviation of a median from its model's mean: ±{100 * worst:.2f}% (acceptance: ±3%)")


if __name__ == "__main__":
    main()
