"""The simulator's whole calibration table: every profile against the data it is calibrated on.

NB201-calibrated CPU profiles (raspi4, pixel3, pixel2, samsung_s7): Spearman ρ and median
absolute percentage error over the NB201 cells not used to fit (14,625 by default).
Accelerator/MCU/BitFusion profiles: every published figure they are calibrated on,
simulated vs published, with its error (and energy for the MLPerf Tiny MCUs). It runs
`hwfarm sim calibrate --json` in a fresh process, exactly as a user would, and prints
Markdown tables.

    python bench/sim_calibration.py [--limit 2000] [--profile NAME ...]

The NB201 part takes a few minutes (14,625 graphs); --limit reports on a random subset.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=None, help="NB201 cells to report on (default: all held out)")
    ap.add_argument("--profile", action="append", default=None, help="only these profiles")
    args = ap.parse_args()
    cmd = [sys.executable, "-m", "farm.cli", "sim", "calibrate", "--json"]
    cmd += [x for p in args.profile or [] for x in ("--profile", p)]
    cmd += ["--limit", str(args.limit)] if args.limit else []
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if p.returncode not in (0, 1) or not p.stdout.strip():
        print(p.stderr, file=sys.stderr)
        return p.returncode or 1
    data = json.loads(p.stdout)
    nb201 = [r for r in data["profiles"] if "spearman" in r]
    published = [r for r in data["profiles"] if "figures" in r]
    t = data["targets"]
    if nb201:
        print(f"## NB201 (real measurements; targets ρ ≥ {t['spearman']}, MdAPE ≤ {t['mape']:.0%})\n")
        print("| profile | target | fit cells | eval cells | Spearman ρ | MdAPE | |")
        print("|---|---|---|---|---|---|---|")
        for r in nb201:
            print(f"| {r['profile']} | {r['target']} | {r['n_fit']} | {r['n_eval']} | {r['spearman']:.4f} | "
                  f"{r['mape']:.2%} | {'ok' if r['ok'] else 'MISSED'} |")
        print()
    if published:
        print("## Published figures (per profile: latency MdAPE / max APE / energy MdAPE)\n")
        print("| profile | calibrated on | figures | latency MdAPE | max APE | energy MdAPE |")
        print("|---|---|---|---|---|---|")
        for r in published:
            e = f"{r['energy_mape']:.1%}" if r.get("energy_mape") is not None else "–"
            print(f"| {r['profile']} | {r['target']} | {r['n_figures']} | {r['mape']:.1%} | {r['max_ape']:.1%} | {e} |")
        print("\n| profile | figure | published ms | simulated ms | error | published mJ | simulated mJ | error |")
        print("|---|---|---|---|---|---|---|---|")
        for r in published:
            for f in r["figures"]:
                en = (f"{f['published_mj']:.4g} | {f['simulated_mj']:.4g} | {f['energy_error']:+.1%}"
                      if "energy_error" in f else "– | – | –")
                print(f"| {r['profile']} | {f['figure']} | {f['published_ms']:.4g} | {f['simulated_ms']:.4g} | "
                      f"{f['error']:+.1%} | {en} |")
    print(f"\n({time.perf_counter() - t0:.0f} s; `{' '.join(cmd[2:])}`)")
    return p.returncode


if __name__ == "__main__":
    raise SystemExit(main())
