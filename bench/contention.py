"""The contention gate: how much medians move between repeats, with and without it.

A shared VM's core runs at two speeds that switch every fraction of a second (a noisy
neighbour on the physical core). This benchmark first traces the machine: the speed probe
read every 50 ms for a few seconds, the share of readings more than 1.25x its fastest. Then,
for each model, it measures with the kernel dataset's policy (short windows, where one
window sees one speed) and with `hwfarm profile`'s default policy, ``--repeats`` times each,
gated and ungated runs interleaved so both see the same machine. Prints the spread of each
set of medians (largest / smallest) and their CV; the ungated rows are the baseline.

    taskset -c 1 .venv/bin/python bench/contention.py [--repeats 8] [--trace-s 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=8)
    ap.add_argument("--trace-s", type=float, default=5.0)
    args = ap.parse_args()

    import onnx

    from farm.agent.measure import Policy, SpeedProbe, run_protocol, summarize
    from farm.agent.runners import OnnxRuntimeRunner
    from farm.formats.onnx_export import graph_to_onnx
    from farm.zoo.nets import build_net
    from predictors.dataset import DATASET_POLICY
    from predictors.space_model import build_arch, sample_archs

    probe = SpeedProbe()
    probe.calibrate(0.5)
    readings = []
    end = time.perf_counter() + args.trace_s
    while time.perf_counter() < end:
        readings.append(probe.read())
        time.sleep(0.05)
    slow = sum(r > 1.25 * probe.best_us for r in readings) / len(readings)
    print(f"machine trace: {len(readings)} probe readings over {args.trace_s:.0f} s, fastest {probe.best_us:.2f} µs, "
          f"{100 * slow:.0f}% of them >1.25x slower\n")

    graphs = {"ds_cnn (12 kernels)": build_net("ds_cnn"),
              "nb201 cell net (~100 kernels)": build_arch("nb201", sample_archs("nb201", 12, seed=123)[7]),
              "resnet8": build_net("resnet8")}
    policies = {"dataset policy": DATASET_POLICY, "profile default": Policy()}
    print(f"{'model':32} {'policy':16} {'gate':>5} {'medians (ms): min … max':28} {'max/min':>8} {'CV':>7} {'contended':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, g in graphs.items():
            path = Path(tmp) / "m.onnx"
            onnx.save(graph_to_onnx(g), path)
            run = OnnxRuntimeRunner().prepare(str(path), threads=1)
            for pname, pol in policies.items():
                meds: dict[float, list[float]] = {0.0: [], pol.gate: []}
                share: list[float] = []
                for _ in range(args.repeats):
                    for gate in meds:
                        r = run_protocol(run, replace(pol, gate=gate), probe=probe)
                        meds[gate].append(summarize(list(r.samples_ms), contended=r.contended).median_ms)
                        if r.gate:
                            share.append(r.gate["contended_share"])
                for gate, ms in meds.items():
                    cv = statistics.stdev(ms) / statistics.fmean(ms)
                    c = f"{100 * statistics.fmean(share):.0f}%" if gate and share else "-"
                    print(f"{name:32} {pname:16} {gate or 'off':>5} {min(ms):10.4f} … {max(ms):<15.4f} "
                          f"{max(ms) / min(ms):8.3f} {100 * cv:6.1f}% {c:>9}")


if __name__ == "__main__":
    main()
