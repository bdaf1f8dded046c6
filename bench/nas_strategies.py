"""Every search strategy on the same tabular task, against random search (issue #28).

NAS-Bench-201 with its measured latency table as the cost model (a perfect predictor) and the
200-epoch CIFAR-10 table as accuracy: the budget is the column's 30th latency percentile; each
strategy gets the same number of trials; regret = best true accuracy within the budget minus
the accuracy of what the strategy returned (points), mean over seeds.

    .venv/bin/python bench/nas_strategies.py [--columns raspi4 pixel3] [--trials 100 300] [--seeds 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from nas.objectives import Constraints, TableAccuracy, TableLatencyModel, find_accuracy_table, shared_table
from nas.search import SearchConfig, search
from nas.strategies import STRATEGIES


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--columns", nargs="+", default=["raspi4", "pixel3"])
    ap.add_argument("--trials", nargs="+", type=int, default=[100, 300])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    acc = TableAccuracy.from_csv(find_accuracy_table("nb201"))
    csv = shared_table("nb201-latency/latency_ms.csv", "HWFARM_NB201_CSV", "the NB201 latency table")
    rows = []
    for col in a.columns:
        lat = TableLatencyModel.from_csv(csv, col)
        budget = float(np.percentile(list(lat.table.values()), 30))
        best = max(acc.table[k] for k, v in lat.table.items() if v <= budget)
        for trials in a.trials:
            for strat in a.strategies:
                regrets, feasible, secs = [], [], 0.0
                for seed in range(a.seeds):
                    t0 = time.perf_counter()
                    r = search("nb201", latency=lat, accuracy=acc, config=SearchConfig(
                        strategy=strat, trials=trials, seed=seed, constraints=Constraints(max_latency_ms=budget)))
                    secs += time.perf_counter() - t0
                    ok = r.best is not None and lat.table[r.best.arch] <= budget
                    feasible.append(ok)
                    regrets.append(best - acc.table[r.best.arch] if r.best is not None else best)
                rows.append({"column": col, "trials": trials, "strategy": strat, "regret": round(float(np.mean(regrets)), 3),
                             "regret_sd": round(float(np.std(regrets)), 3), "feasible_rate": float(np.mean(feasible)),
                             "seconds": round(secs / a.seeds, 3)})
                if not a.json:
                    r0 = rows[-1]
                    print(f"{col:10s} {trials:5d} {strat:10s} regret {r0['regret']:5.2f} ± {r0['regret_sd']:.2f}  "
                          f"feasible {r0['feasible_rate']:.0%}  {r0['seconds']:.2f} s/search", flush=True)
    if a.json:
        print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    main()
