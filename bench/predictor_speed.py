"""How fast the predictors answer, against the slower path in the same run.

1. A batch of 100,000 NB201 cells (architecture strings, as a search asks): the device's
   graph-level space model vs. building each cell's graph and predicting kernel by kernel.
2. One ResNet-50-size ONNX file (102 MB, 25.6 M params) from disk, parse included: reading
   its structure only (`read_onnx_structure`) vs. the full import `hwfarm profile` uses
   (`load_workload`: read, hash, decode, shape-infer). nn-Meter reports ~0.2–0.5 s per model.

The predictor is trained here on a simulated Raspberry Pi 4 (noise-free kernel latencies of
the default sampling plan), so the benchmark needs no dataset; speed does not depend on it.

    .venv/bin/python bench/predictor_speed.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

from farm.formats.onnx import read_onnx_structure
from farm.formats.onnx_export import graph_to_onnx
from farm.sim.model import simulate
from farm.sim.profile import load_profile
from farm.workload import load_workload
from farm.zoo.nb201 import build_nb201
from farm.zoo.nets import build_net
from predictors.kernel_model import KernelLevelPredictor
from predictors.kernels import FusionRules
from predictors.sampling import build_graph, make_plan
from predictors.space_model import SpaceModel, sample_archs


def _timeit(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    prof = load_profile("raspi4")
    rules = FusionRules(tuple(tuple(p) for p in prof.fusion), prof.fold_constants, "profile:raspi4")
    plan = make_plan(budget=400, seed=0, fusion=rules.patterns)
    graphs = [build_graph(s) for s in plan]
    print(f"training on {len(graphs)} simulated kernel latencies (raspi4)…", file=sys.stderr)
    kernel = KernelLevelPredictor(rules=rules).fit(graphs, [simulate(g, prof).latency_ms for g in graphs])
    train = sample_archs("nb201", 600, seed=1)
    space = SpaceModel(space="nb201").fit(train, kernel.predict([build_nb201(a) for a in train]))

    rng = np.random.default_rng(0)
    pool = sample_archs("nb201", 15625, seed=2)
    batch = [pool[i] for i in rng.integers(0, len(pool), 100_000)]
    space.predict(batch[:1000])  # warm: the cell-string table is built once per process
    t_fast = _timeit(lambda: space.predict(batch), 5)
    few = batch[:200]
    t_slow = _timeit(lambda: kernel.predict([build_nb201(a) for a in few]), 1) * len(batch) / len(few)

    print("\n## NB201: predict_many on 100,000 cells (strings)")
    print("| path | cells/s | time for 100k |")
    print("|---|---|---|")
    print(f"| graph-level space model (`predict_many(archs, space='nb201')`) | {len(batch) / t_fast:,.0f} "
          f"| {t_fast:.3f} s |")
    print(f"| build graph + kernel-level model, per cell (baseline) | {len(batch) / t_slow:,.0f} | {t_slow:.1f} s |")
    print(f"speed-up: {t_slow / t_fast:,.0f}x")

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "resnet50.onnx"
        onnx.save(graph_to_onnx(build_net("resnet50")), path)
        size_mb = path.stat().st_size / 1e6
        read_onnx_structure(path)  # warm the page cache for both paths alike
        t_struct = _timeit(lambda: kernel.predict([read_onnx_structure(path)]), 7)
        t_full = _timeit(lambda: kernel.predict([load_workload(path).graph]), 3)
        t_parse = _timeit(lambda: read_onnx_structure(path), 7)
    print(f"\n## One ResNet-50 query from a {size_mb:.0f} MB ONNX file, parse included (median)")
    print("| path | ms |")
    print("|---|---|")
    print(f"| structure-only read + predict (`hwfarm predict`, `predictors.load(...).predict(path)`) "
          f"| {1e3 * t_struct:.1f} |")
    print(f"|   of which reading the structure | {1e3 * t_parse:.1f} |")
    print(f"| full import (`load_workload`) + predict (baseline) | {1e3 * t_full:.1f} |")
    print(f"speed-up: {t_full / t_struct:.1f}x; nn-Meter reports ~200–500 ms per model")


if __name__ == "__main__":
    main()
