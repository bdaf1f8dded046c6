"""Random MLPs on a device, against its trained predictor: does a network of Gemms cost what
its lone Gemms add up to?

A lone batch-1 Gemm run back to back keeps its weights in the core's cache; an MLP whose
layers each fit that cache and whose whole does not reads every layer's weights from the
next level at each inference. The predictor learns where that happens, and what it costs,
from the kernel dataset's Gemm chains (``stream`` in the bundle). This bench, through the
`hwfarm` command as a user runs it:

1. writes ``--n`` random MLPs (seeded: 2–8 layers of 64–2048 units, half with BN + ReLU
   after each Gemm as the MLPerf Tiny FC-AutoEncoder, half with ReLU; 0.05–25 MB of weights),
2. `hwfarm profile NETS --device D` into a scratch dataset (``--work``; the kernel dataset
   at ``--db`` is only read),
3. predicts each with the device's newest bundle beside ``--db``, and with the same bundle
   without its streamed-weight term (the baseline, in the same run).

Prints each net's measured median, both predictions, and ±10% accuracy of each. No net
here is in any dataset the predictor was trained on.

    taskset -c 1 .venv/bin/python bench/generic_mlps.py --db /tmp/hostacc10/hwfarm.db   # ~1 min
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WIDTHS = (64, 128, 192, 256, 320, 384, 512, 768, 1024, 2048)


def random_mlp(rng: np.random.Generator, i: int):  # -> farm.ir.graph.Graph
    from farm.ir.builder import IRBuilder

    inputs = int(rng.choice((128, 256, 640, 1024)))
    widths = [int(w) for w in rng.choice(WIDTHS, int(rng.integers(2, 9)))]
    bn = i % 2 == 0
    b = IRBuilder((1, inputs))
    x = "input"
    for j, w in enumerate(widths):
        x = b.gemm(f"fc{j}", x, w)
        x = b.relu(f"relu{j}", b.bn(f"bn{j}", x) if bn else x)
    return b.build(f"mlp{i:02d}-{inputs}-{'-'.join(map(str, widths))}{'-bn' if bn else ''}", x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="host-cpu", help="device name from devices.yaml")
    ap.add_argument("--db", type=Path, required=True, help="the kernel dataset whose newest bundle predicts")
    ap.add_argument("--work", type=Path, default=Path("/tmp/hwfarm-mlps"), help="nets and their measurements")
    ap.add_argument("--n", type=int, default=16, help="random MLPs")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    import onnx

    import predictors
    from farm.formats.onnx_export import graph_to_onnx

    rng = np.random.default_rng(a.seed)
    graphs = [random_mlp(rng, i) for i in range(a.n)]
    folder = a.work / "nets"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for g in graphs:
        p = folder / f"{g.name}.onnx"
        if not p.exists():
            onnx.save(graph_to_onnx(g), p)
        paths.append(p)
    print(f"profiling {len(paths)} MLPs on {a.device}…", file=sys.stderr)
    out = subprocess.run([sys.executable, "-m", "farm.cli", "--registry", str(ROOT / "devices.yaml"), "--db",
                          str(a.work / "mlps.db"), "profile", *map(str, paths), "--device", a.device, "--json"],
                         capture_output=True, text=True, cwd=ROOT)
    measured = {}
    for line in out.stdout.splitlines():
        o = json.loads(line)
        if o.get("latency_ms"):
            measured[Path(o["model"]).name] = float(o["latency_ms"])
    if not measured:
        sys.exit(f"profiling failed: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else 'no output'}")
    pred = predictors.load(a.device, db=a.db)
    with_term = pred.latency.predict(graphs)
    levels = pred.latency.stream_levels_
    pred.latency.stream_levels_ = []
    without = pred.latency.predict(graphs)
    print(f"bundle {pred.bundle_id}: streamed-weight levels "
          + (", ".join(f"{c:.0f} KB at {r * 1e6:.1f} ns/KB" for c, r in levels) or "none"))
    print("| MLP | weights MB | largest layer MB | measured ms | predicted | error | without the term | error |")
    print("|---|---|---|---|---|---|---|---|")
    hits, hits0 = [], []
    for g, p, p0, path in zip(graphs, with_term, without, paths, strict=True):
        m = measured.get(path.name)
        if m is None:
            continue
        w = [n.params * 4 / 2**20 for n in g.nodes if n.op == "Gemm"]
        e, e0 = p / m - 1, p0 / m - 1
        hits.append(abs(e) <= 0.10)
        hits0.append(abs(e0) <= 0.10)
        print(f"| {g.name} | {sum(w):.2f} | {max(w):.2f} | {m:.4f} | {p:.4f} | {e:+.1%} | {p0:.4f} | {e0:+.1%} |")
    print(f"\n±10% accuracy on {len(hits)} MLPs: {np.mean(hits):.0%} with the streamed-weight term, "
          f"{np.mean(hits0):.0%} without (the same bundle)")


if __name__ == "__main__":
    main()
