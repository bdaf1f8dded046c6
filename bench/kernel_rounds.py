"""What measuring kernels in rounds (``dataset build --rounds N``) buys: how well a kernel's
median repeats from one build to the next.

The same seeded plan (``--budget`` kernel models) is measured on ``host-cpu`` four times, each
in a fresh dataset and back to back: twice in one round (the baseline, the default) and twice
in ``--rounds`` interleaved rounds. Per kernel, the two builds' medians are compared; prints
the median and p90 of |second / first - 1| and the share of kernels within ±2% and ±5%, with
each build's wall time.

    taskset -c 1 .venv/bin/python bench/kernel_rounds.py --budget 300 --rounds 3
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from farm.registry.spec import load_registry
from farm.store.sqlite import SqliteStore
from predictors.dataset import measure_specs
from predictors.sampling import make_plan


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--registry", default="devices.yaml")
    ap.add_argument("--device", default="host-cpu")
    args = ap.parse_args()
    spec = load_registry(args.registry).get(args.device)
    plan = make_plan(budget=args.budget, seed=args.seed)
    builds: dict[str, list[dict[str, float]]] = {}
    print(f"{len(plan)} kernel models on {spec.name}, each plan measured twice per setting, back to back\n")
    with tempfile.TemporaryDirectory() as tmp:
        for rounds in (1, args.rounds):
            label = f"{rounds} round" + ("s" if rounds > 1 else "")
            for n in (1, 2):
                store = SqliteStore(Path(tmp) / f"r{rounds}-{n}.db")
                t = time.perf_counter()
                res = measure_specs(store, spec, plan, models_dir=Path(tmp) / "models", rounds=rounds)
                wall = time.perf_counter() - t
                builds.setdefault(label, []).append({r.spec.name: r.latency_ms for r in res if r.latency_ms})
                print(f"  {label}, build {n}: {wall:6.1f} s", flush=True)
    print("\n| kernels measured in | median abs. difference | p90 | within ±2% | within ±5% | kernels |")
    print("|---|---|---|---|---|---|")
    for label, (a, b) in builds.items():
        common = sorted(set(a) & set(b))
        d = np.abs(np.array([b[k] / a[k] - 1.0 for k in common]))
        print(f"| {label} | {100 * np.median(d):.2f}% | {100 * np.quantile(d, 0.9):.2f}% | "
              f"{100 * np.mean(d <= 0.02):.0f}% | {100 * np.mean(d <= 0.05):.0f}% | {len(common)} |")


if __name__ == "__main__":
    main()
