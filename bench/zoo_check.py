"""The zoo against published figures, and the FBNet macro network against HW-NAS-Bench.

1. Every reference net of ``farm.zoo.nets``: our MACs and trainable parameters next to the
   published ones (torchvision model pages, Keras Applications, Howard et al. 2017).
2. FBNet: HW-NAS-Bench's ``raspi4``/``pixel3``/``eyeriss``/``fpga`` columns are sums of per-
   (layer, op) lookup-table entries. We recover that table by least squares over the 5,000
   architectures of ../shared/data/fbnet-latency/latency_ms.csv and report, per device, the
   fit's largest residual (≈ 0: additive), the median/min Spearman ρ between the table and our
   per-(layer, op) MACs within each layer, and ρ between whole-network MACs and latency.
   The end-to-end columns (pixel2, server CPUs) are not additive and are shown for contrast.

    python bench/zoo_check.py [--csv ../shared/data/fbnet-latency/latency_ms.csv]
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# name → (trainable params, GMACs) as published (sources in farm/zoo/*.py docstrings)
PUBLISHED = {
    "mobilenet_v1": (4_231_976, 0.569), "mobilenet_v2": (3_504_872, 0.30), "resnet18": (11_689_512, 1.81),
    "resnet50": (25_557_032, 4.09), "squeezenet1_1": (1_235_496, 0.35), "googlenet": (6_624_904, 1.50),
    "vgg16": (138_357_544, 15.47),
}


def _ranks(a: np.ndarray) -> np.ndarray:
    order = np.argsort(a, kind="stable")
    r = np.empty(len(a))
    r[order] = np.arange(len(a))
    for v in np.unique(a):
        r[a == v] = r[a == v].mean()
    return r


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(_ranks(np.asarray(a, float)), _ranks(np.asarray(b, float)))[0, 1])


def nets_table() -> None:
    from farm.zoo.nets import NETS, build_net

    print(f"{'net':18s} {'input':>12s} {'MMACs':>9s} {'published':>9s} {'params':>12s} {'trainable':>12s} "
          f"{'published':>12s}")
    for name in NETS:
        g = build_net(name)
        trainable = (sum(n.params for n in g.nodes if n.op in ("Conv", "Gemm"))
                     + sum(n.params // 2 for n in g.nodes if n.op == "BatchNormalization"))
        pub_p, pub_m = PUBLISHED.get(name, (None, None))
        print(f"{name:18s} {'x'.join(map(str, g.inputs[0].shape[1:])):>12s} {g.macs / 1e6:9.1f} "
              f"{f'{pub_m * 1e3:.0f}' if pub_m else '-':>9s} {g.params:12,d} {trainable:12,d} "
              f"{f'{pub_p:,d}' if pub_p else '-':>12s}")


def fbnet_check(path: Path) -> None:
    from farm.zoo.fbnet import NUM_LAYERS, OPS, build_fbnet, layer_macs, parse_arch

    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    X = np.array([parse_arch(r["op_idx"]) for r in rows])
    A = np.zeros((len(rows), NUM_LAYERS * len(OPS) + 1))
    A[np.arange(len(rows))[:, None], np.arange(NUM_LAYERS) * len(OPS) + X] = 1
    A[:, -1] = 1
    macs = np.array([layer_macs(build_fbnet([o] * NUM_LAYERS)) for o in range(len(OPS))]).T  # 22 × 9
    total = macs[np.arange(NUM_LAYERS), X].sum(axis=1)
    print(f"\nFBNet ({len(rows)} architectures): per-layer lookup table recovered by least squares")
    print(f"{'device':12s} {'max |resid| ms':>15s} {'ρ within layers (median/min)':>30s} {'ρ(total MACs, latency)':>24s}")
    for dev in ("raspi4", "pixel3", "eyeriss", "fpga", "pixel2", "gold_6226"):
        y = np.array([float(r[dev]) for r in rows])
        coef, *_ = np.linalg.lstsq(A, y, rcond=None)
        lut = coef[:-1].reshape(NUM_LAYERS, len(OPS))
        rho = [spearman(lut[i], macs[i]) for i in range(NUM_LAYERS)]
        print(f"{dev:12s} {np.abs(A @ coef - y).max():15.4f} {np.median(rho):18.2f} / {min(rho):.2f}"
              f" {spearman(total, y):24.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", type=Path, default=ROOT / "../shared/data/fbnet-latency/latency_ms.csv")
    args = ap.parse_args()
    nets_table()
    if args.csv.is_file():
        fbnet_check(args.csv)
    else:
        print(f"\n{args.csv}: not found; FBNet check skipped")


if __name__ == "__main__":
    main()
