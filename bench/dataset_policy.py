"""What a kernel-dataset model costs on the host CPU, and what the shorter protocol changes.

The same sampled plan (``--budget`` models, seeded) is measured on ``host-cpu`` twice, each in
a fresh dataset: with ``hwfarm profile``'s default protocol and with the kernel-dataset
protocol (``predictors.dataset.DATASET_POLICY``). Prints seconds per model (wall clock of the
whole build: writing the ONNX files, one agent start, measuring, storing) and how far the
two protocols' medians differ.

    .venv/bin/python bench/dataset_policy.py --budget 60
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from farm.measurement import Policy
from farm.registry.spec import load_registry
from farm.store.sqlite import SqliteStore
from predictors.dataset import DATASET_POLICY, measure_specs
from predictors.sampling import make_plan


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=int, default=60)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--registry", default="devices.yaml")
    ap.add_argument("--device", default="host-cpu")
    args = ap.parse_args()
    spec = load_registry(args.registry).get(args.device)
    plan = make_plan(budget=args.budget, seed=args.seed)
    medians: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, policy in (("profile default", Policy()), ("dataset", DATASET_POLICY)):
            store = SqliteStore(Path(tmp) / f"{label.replace(' ', '_')}.db")
            t = time.perf_counter()
            res = measure_specs(store, spec, plan, models_dir=Path(tmp) / "models", policy=policy)
            wall = time.perf_counter() - t
            medians[label] = {r.spec.name: r.latency_ms for r in res if r.latency_ms is not None}
            stops = statistics.multimode(r.measurement.stop_reason for r in res if r.measurement)
            print(f"{label:16s} {len(plan)} models  {wall:6.1f} s  {wall / len(plan):.3f} s/model  "
                  f"most common stop: {stops[0]}")
    a, b = medians["profile default"], medians["dataset"]
    rel = sorted(abs(b[k] / a[k] - 1) for k in a if k in b)
    print(f"median |dataset/default - 1| = {100 * statistics.median(rel):.1f}%, "
          f"p90 = {100 * rel[int(0.9 * (len(rel) - 1))]:.1f}% over {len(rel)} models")


if __name__ == "__main__":
    main()
