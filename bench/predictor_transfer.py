"""Few-shot latency transfer on real devices (issue #5's targets), with the baselines computed
in the same run: ridge on the sources' log-latencies, random forest on one-hot ops.

    .venv/bin/python bench/predictor_transfer.py [--seeds 5] [--data ../shared/data] [--curve 100,300]
    .venv/bin/python bench/predictor_transfer.py --expect 100

``--expect N`` prints only the 10-shot means, over seeds 0..N-1 (~2 min for 100): the figure to
expect on a random draw of shots, where the protocol's 5 seeds are one sample of it.
``--curve`` adds more shot counts on every target of both spaces, against the booster used
alone (``boost_weights=(1.0,)``, before its weight was cross-validated) in the same run.

Protocol (predictors.benchmark): HELP's. Published reference figures: HELP (Lee et al.,
NeurIPS 2021) as quoted in ../shared/data/nb201-latency/README.md and
../shared/data/fbnet-latency/README.md and in issue #5.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from predictors.benchmark import default_model, read_table, run_bench  # noqa: E402
from predictors.encodings import n_cost_features  # noqa: E402
from predictors.transfer import OneHotForestRegressor, SourceRidgeRegressor, TransferRegressor  # noqa: E402

NB201_SOURCES = "1080ti_1,1080ti_32,1080ti_256,silver_4114,pixel3,samsung_s7,titanx_1,titanx_32,titanx_256,gold_6240"
FBNET_SOURCES = "1080ti_1,1080ti_32,1080ti_64,silver_4114,pixel3,samsung_s7,titanx_1,titanx_32,titanx_64,gold_6240"
NB201_TARGETS = ("titan_rtx_256", "gold_6226", "fpga", "pixel2", "raspi4", "eyeriss")
FBNET_TARGETS = ("raspi4", "eyeriss", "fpga", "pixel2", "samsung_s7")
HELP_NB201 = {"titan_rtx_256": 0.987, "gold_6226": 0.989, "fpga": 0.985, "pixel2": 0.802, "raspi4": 0.890,
              "eyeriss": 0.940}  # HELP, 10 shots (nb201-latency/README.md)


def _cmd(csv: str, space: str, target: str, shots: int, seeds: int, sources: str) -> str:
    return (f"hwfarm predictor bench --csv {csv} --space {space} --target {target} --shots {shots} "
            f"--seeds {seeds} --sources {sources}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--data", default=str(ROOT / ".." / "shared" / "data"))
    ap.add_argument("--curve", default="", help="more shot counts, e.g. 100,300 (~10 min on one core)")
    ap.add_argument("--expect", type=int, default=0, metavar="N",
                    help="only the 10-shot means, over N seeds (~2 min for 100)")
    args = ap.parse_args()
    if args.expect:
        _expect(args.expect, args.data)
        return
    seeds = args.seeds
    t0 = time.perf_counter()
    ridge = lambda k, s: SourceRidgeRegressor()  # noqa: E731

    # ---- NB201, 10 shots
    nb_csv = f"{args.data}/nb201-latency/latency_ms.csv"
    nb = read_table(nb_csv, "nb201")
    print(f"## NB201, 10 shots, sources {NB201_SOURCES} ({seeds} seeds; Spearman ρ / ±10% acc)\n")
    print("| target | ours ρ | ours acc10 | ridge ρ | HELP ρ (published) |\n|---|---|---|---|---|")
    ours_rho, ridge_rho = [], []
    for t in NB201_TARGETS:
        o = run_bench(nb, t, [10], seeds=seeds, sources=NB201_SOURCES)["10"]
        r = run_bench(nb, t, [10], seeds=seeds, sources=NB201_SOURCES, make_model=ridge)["10"]
        ours_rho.append(o["spearman"])
        ridge_rho.append(r["spearman"])
        print(f"| {t} | {o['spearman']:.3f} | {100 * o['acc10']:.1f}% | {r['spearman']:.3f} | {HELP_NB201[t]:.3f} |")
    print(f"| **mean** | **{np.mean(ours_rho):.3f}** | | {np.mean(ridge_rho):.3f} | 0.932 |\n")
    print(f"each row: `{_cmd('../shared/data/nb201-latency/latency_ms.csv', 'nb201', 'TARGET', 10, seeds, NB201_SOURCES)}`\n")

    # ---- NB201 raspi4, 900 shots
    nc = n_cost_features("nb201")
    forest = lambda k, s: OneHotForestRegressor(n_cost_features=nc, random_state=s)  # noqa: E731
    o = run_bench(nb, "raspi4", [900], seeds=seeds, sources=NB201_SOURCES)["900"]
    f = run_bench(nb, "raspi4", [900], seeds=seeds, sources="none", make_model=forest)["900"]
    n = run_bench(nb, "raspi4", [900], seeds=seeds, sources="none")["900"]
    print(f"## NB201 raspi4, 900 shots ({seeds} seeds)\n")
    print("| model | ρ | ±10% acc | RMSPE % |\n|---|---|---|---|")
    print(f"| ours (sources) | {o['spearman']:.3f} | {100 * o['acc10']:.1f}% | {o['rmspe']:.1f} |")
    print(f"| ours (--sources none) | {n['spearman']:.3f} | {100 * n['acc10']:.1f}% | {n['rmspe']:.1f} |")
    print(f"| random forest, one-hot ops | {f['spearman']:.3f} | {100 * f['acc10']:.1f}% | {f['rmspe']:.1f} |")
    print("| random forest (issue #5, published) | 0.951 | 66% | |\n")
    print(f"`{_cmd('../shared/data/nb201-latency/latency_ms.csv', 'nb201', 'raspi4', 900, seeds, NB201_SOURCES)}`\n")

    # ---- FBNet, 10 shots
    fb_csv = f"{args.data}/fbnet-latency/latency_ms.csv"
    fb = read_table(fb_csv, "fbnet")
    print(f"## FBNet, 10 shots (sample rows 0-3999, test 4000-4999), sources {FBNET_SOURCES} ({seeds} seeds)\n")
    print("| target | ours ρ | ours acc10 | ridge ρ |\n|---|---|---|---|")
    ours_fb, ridge_fb = [], []
    for t in FBNET_TARGETS:
        o = run_bench(fb, t, [10], seeds=seeds, sources=FBNET_SOURCES, make_model=default_model("fbnet"))["10"]
        r = run_bench(fb, t, [10], seeds=seeds, sources=FBNET_SOURCES, make_model=ridge)["10"]
        if t in ("raspi4", "eyeriss", "fpga"):
            ours_fb.append(o["spearman"])
            ridge_fb.append(r["spearman"])
        print(f"| {t} | {o['spearman']:.3f} | {100 * o['acc10']:.1f}% | {r['spearman']:.3f} |")
    print(f"| **mean raspi4, eyeriss, fpga** | **{np.mean(ours_fb):.3f}** | | {np.mean(ridge_fb):.3f} |")
    print("| HELP (published), mean of the three | 0.910 | | |\n")
    print(f"each row: `{_cmd('../shared/data/fbnet-latency/latency_ms.csv', 'fbnet', 'TARGET', 10, seeds, FBNET_SOURCES)}`"
          " (samsung_s7 as target leaves the source list)\n")
    if args.curve:
        _curve([int(k) for k in args.curve.split(",")], seeds, {"nb201": nb, "fbnet": fb})
    print(f"({time.perf_counter() - t0:.0f} s)")


def _blocks_of_5(per_seed) -> list[float]:
    """Means of consecutive 5-seed blocks: what the 5-seed protocol would have reported."""
    return [float(np.mean(per_seed[i:i + 5])) for i in range(0, len(per_seed) - 4, 5)]


def _expect(seeds: int, data: str) -> None:
    """10-shot Spearman per target over many seeds, with the spread of the 5-seed protocol's figure."""
    t0 = time.perf_counter()
    print(f"## 10 shots, {seeds} seeds (Spearman ρ): mean, and the range of 5-seed means over seed blocks\n")
    print("| space | target | mean ρ | std over seeds | 5-seed blocks: min … max |\n|---|---|---|---|---|")
    for space, targets, sources in (("nb201", NB201_TARGETS, NB201_SOURCES), ("fbnet", FBNET_TARGETS[:3], FBNET_SOURCES)):
        table = read_table(f"{data}/{space}-latency/latency_ms.csv", space)
        per_seed = []
        for t in targets:
            res = run_bench(table, t, [10], seeds=seeds, sources=sources, make_model=default_model(space),
                            keep_seeds=True)["10"]
            rows = [m["spearman"] for m in res["per_seed"]]
            per_seed.append(rows)
            blocks = _blocks_of_5(rows)
            print(f"| {space} | {t} | {np.mean(rows):.4f} | {np.std(rows):.4f} | {min(blocks):.3f} … {max(blocks):.3f} |")
        mean = np.mean(per_seed, axis=0)  # the space's mean over targets, per seed
        blocks = _blocks_of_5(mean)
        print(f"| {space} | **mean** | **{np.mean(mean):.4f}** | {np.std(mean):.4f} | "
              f"{min(blocks):.3f} … {max(blocks):.3f} (seeds 0-4: {np.mean(mean[:5]):.4f}) |")
    print(f"\n({time.perf_counter() - t0:.0f} s)")


def _curve(shots: list[int], seeds: int, tables: dict) -> None:
    """More shots on every target: the default model against the booster used alone."""
    print(f"## More shots ({seeds} seeds; Spearman ρ / ±10% acc): cross-validated booster weight vs booster alone\n")
    print("| space | target | " + " | ".join(f"{k} shots" for k in shots) + " |\n|---|---|" + "---|" * len(shots))
    for space, targets, sources in (("nb201", NB201_TARGETS, NB201_SOURCES), ("fbnet", FBNET_TARGETS, FBNET_SOURCES)):
        nc = n_cost_features(space)
        alone = lambda k, s, nc=nc: TransferRegressor(n_cost_features=nc, random_state=s, boost_weights=(1.0,))  # noqa: E731
        means: dict[int, list[tuple[float, float]]] = {k: [] for k in shots}
        cells = []
        for t in targets:
            o = run_bench(tables[space], t, shots, seeds=seeds, sources=sources)
            b = run_bench(tables[space], t, shots, seeds=seeds, sources=sources, make_model=alone)
            for k in shots:
                means[k].append((o[str(k)]["spearman"], b[str(k)]["spearman"]))
            cells.append(f"| {space} | {t} | " + " | ".join(
                f"{o[str(k)]['spearman']:.3f} / {100 * o[str(k)]['acc10']:.0f}% "
                f"(alone {b[str(k)]['spearman']:.3f} / {100 * b[str(k)]['acc10']:.0f}%)" for k in shots) + " |")
        print("\n".join(cells))
        print(f"| {space} | **mean ρ** | " + " | ".join(
            f"**{np.mean([m[0] for m in means[k]]):.3f}** (alone {np.mean([m[1] for m in means[k]]):.3f})"
            for k in shots) + " |")
    print()


if __name__ == "__main__":
    main()
