"""Do host-CPU measurements repeat? Separate `hwfarm profile` runs, a busy core, paired A/B, build cost.

Everything is measured twice in the same run, interleaved so both see the same machine:
with this release's default (the quiet estimator over rounds in fresh sessions, judged by the
reference workload: ``farm.estimate``) and with the previous default as the baseline (one
pooled round: ``--estimator pooled --rounds 1`` and the old per-round policy).

Parts (``--parts``, default all):

- ``repeat``: ``--runs`` separate ``hwfarm profile --force`` processes per model, one dataset
  per policy. Per policy: the reported latencies' max/min, how often a run's 95% interval
  contains the median of the other runs, the interval's mean half-width, seconds per run.
- ``busy``: the same with a busy process (a pure-Python loop) pinned to CPU 1 while
  profiling; each run's deviation from the quiet figure (the median of ``repeat``'s runs),
  and whether the record says unstable.
- ``paired``: ``hwfarm profile A B --paired`` in ``--runs`` processes (B/A and its
  interval); the baseline divides two separate pooled runs.
- ``build``: the same seeded kernel plan (``--budget`` models) measured in fresh datasets
  with the dataset build's settings and the previous ones; seconds per model and the ratio.

    taskset -c 0 .venv/bin/python bench/repeatability.py            # ~15 min on the 2-core VM
    .venv/bin/python bench/repeatability.py --parts repeat --runs 5 --json out.json
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
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# The previous release's `hwfarm profile` default: one pooled round of this policy.
OLD = ["--estimator", "pooled", "--rounds", "1", "--warmup-time", "0.2", "--min-time", "0.5", "--min-runs", "20",
       "--max-time", "10"]
MODELS = {  # name: (zoo net, options) -- ~0.5 ms and ~8 ms on the 2-core EPYC VM
    "small": ("mobilenet_v2", ["alpha=0.35", "resolution=96"]),
    "large": ("mobilenet_v2", []),
    "pair-a": ("mobilenet_v2", ["alpha=0.5", "resolution=96"]),
}


def hwfarm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "farm.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          check=check)


def export(name: str, out: Path) -> Path:
    net, opts = MODELS[name]
    d = out / name
    d.mkdir(exist_ok=True)
    hwfarm("zoo", "export", net, *sum((["--set", o] for o in opts), []), "-o", str(d))
    (path,) = d.glob("*.onnx")
    return path


def profile(reg: Path, db: Path, models: list[Path], extra: list[str]) -> tuple[list[dict[str, Any]], float]:
    t = time.perf_counter()
    p = hwfarm("--registry", str(reg), "--db", str(db), "profile", *map(str, models), "--device", "host-cpu",
               "--force", "--json", *extra)
    return [json.loads(line) for line in p.stdout.splitlines() if line.strip()], time.perf_counter() - t


def summary(objs: list[dict[str, Any]], secs: list[float]) -> dict[str, Any]:
    lat = [o["latency_ms"] for o in objs]
    cover = []
    for i, o in enumerate(objs):
        others = statistics.median(lat[:i] + lat[i + 1:])
        lo, hi = o["latency_stats"]["ci95"]
        cover.append(lo <= others <= hi)
    halves = [max(o["latency_ms"] - o["latency_stats"]["ci95"][0], o["latency_stats"]["ci95"][1] - o["latency_ms"])
              / o["latency_ms"] for o in objs]
    return {"latency_ms": lat, "max_over_min": max(lat) / min(lat), "ci_contains_others": sum(cover) / len(cover),
            "ci_half_width_mean": statistics.fmean(halves), "unstable": sum(bool(o["provenance"].get("unstable"))
                                                                           for o in objs),
            "seconds_per_run": statistics.fmean(secs)}


def part_repeat(reg: Path, tmp: Path, models: dict[str, Path], runs: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("small", "large"):
        got: dict[str, tuple[list[dict[str, Any]], list[float]]] = {"new": ([], []), "old": ([], [])}
        for i in range(runs):
            for label, extra in (("new", []), ("old", OLD)):
                (o,), s = profile(reg, tmp / f"repeat-{name}-{label}.db", [models[name]], extra)
                got[label][0].append(o)
                got[label][1].append(s)
                print(f"  {name} run {i + 1} {label}: {o['latency_ms']:.4f} ms "
                      f"ci95 {o['latency_stats']['ci95'][0]:.4f}–{o['latency_stats']['ci95'][1]:.4f}"
                      + (" unstable" if o["provenance"].get("unstable") else "") + f" ({s:.1f} s)", flush=True)
        out[name] = {label: summary(*v) for label, v in got.items()}
    return out


def part_busy(reg: Path, tmp: Path, models: dict[str, Path], runs: int, quiet: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    busy = subprocess.Popen(["taskset", "-c", "1", sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        for name in ("small", "large"):
            res: dict[str, Any] = {}
            for label, extra in (("new", []), ("old", OLD)):
                ref = statistics.median(quiet[name][label]["latency_ms"])
                rows = []
                for _ in range(max(2, runs // 2 + 1)):
                    (o,), _s = profile(reg, tmp / f"repeat-{name}-{label}.db", [models[name]], extra)
                    dev = o["latency_ms"] / ref - 1
                    rows.append({"latency_ms": o["latency_ms"], "deviation": dev,
                                 "unstable": bool(o["provenance"].get("unstable"))})
                    print(f"  busy {name} {label}: {o['latency_ms']:.4f} ms ({dev:+.1%} from quiet)"
                          + (" unstable" if rows[-1]["unstable"] else ""), flush=True)
                res[label] = {"runs": rows, "within_5pct_or_flagged": sum(abs(r["deviation"]) <= 0.05 or r["unstable"]
                                                                         for r in rows) / len(rows)}
            out[name] = res
    finally:
        busy.kill()
    return out


def part_paired(reg: Path, tmp: Path, models: dict[str, Path], runs: int) -> dict[str, Any]:
    a, b = models["pair-a"], models["small"]
    new, old = [], []
    for i in range(runs):
        p = hwfarm("--registry", str(reg), "--db", str(tmp / "paired.db"), "profile", str(a), str(b), "--device",
                   "host-cpu", "--paired", "--json")
        o = json.loads(p.stdout)
        new.append(o)
        (oa, ob), _ = profile(reg, tmp / "paired-old.db", [a, b], OLD)
        old.append(ob["latency_ms"] / oa["latency_ms"])
        print(f"  paired run {i + 1}: B/A {o['ratio']:.4f} ({o['ci95'][0]:.4f}–{o['ci95'][1]:.4f}, "
              f"{o['pairs']} pairs); separate pooled runs: {old[-1]:.4f}", flush=True)

    def spread(xs: list[float]) -> float:
        m = statistics.fmean(xs)
        return max(abs(x - m) for x in xs) / m

    ratios = [o["ratio"] for o in new]
    return {"new": {"ratios": ratios, "max_deviation": spread(ratios),
                    "ci_half_width_mean": statistics.fmean((o["ci95"][1] - o["ci95"][0]) / 2 / o["ratio"] for o in new)},
            "old": {"ratios": old, "max_deviation": spread(old)}}


def part_build(tmp: Path, budget: int) -> dict[str, Any]:
    from farm.registry.spec import load_registry
    from farm.store.sqlite import SqliteStore
    from predictors.dataset import measure_specs
    from predictors.sampling import make_plan

    spec = load_registry(ROOT / "devices.yaml").get("host-cpu")
    plan = make_plan(budget=budget, seed=5)
    out: dict[str, Any] = {}
    for label, quiet in (("old", False), ("new", True)):
        store = SqliteStore(tmp / f"build-{label}.db")
        t = time.perf_counter()
        res = measure_specs(store, spec, list(plan), models_dir=tmp / f"models-{label}", quiet=quiet)
        secs = time.perf_counter() - t
        ms = [r.measurement for r in res if r.measurement is not None]
        extra = sum(len(m.provenance.get("rounds") or [1]) - 1 for m in ms)
        out[label] = {"seconds": secs, "models": len(res), "seconds_per_model": secs / len(res),
                      "extra_rounds": extra, "unstable": sum(bool(m.provenance.get("unstable")) for m in ms)}
        print(f"  build {label}: {secs:.1f} s for {len(res)} models, {extra} extra rounds, "
              f"{out[label]['unstable']} unstable", flush=True)
        store.close()
    out["ratio"] = out["new"]["seconds"] / out["old"]["seconds"]
    return out


def report(res: dict[str, Any]) -> None:
    if "repeat" in res:
        print("\n| model | policy | latencies of the runs (ms) | max/min | CI contains the others' median | "
              "CI ± (mean) | unstable | s per run |")
        print("|---|---|---|---|---|---|---|---|")
        for name, by in res["repeat"].items():
            for label, s in by.items():
                print(f"| {name} | {'quiet (default)' if label == 'new' else 'pooled, 1 round (previous)'} | "
                      f"{', '.join(f'{x:.4f}' for x in s['latency_ms'])} | **{s['max_over_min']:.3f}** | "
                      f"{s['ci_contains_others']:.0%} | {s['ci_half_width_mean']:.1%} | {s['unstable']} | "
                      f"{s['seconds_per_run']:.1f} |")
    if "busy" in res:
        print("\n| model | policy | busy core: deviation from the quiet figure | within 5% or flagged |")
        print("|---|---|---|---|")
        for name, by in res["busy"].items():
            for label, s in by.items():
                devs = ", ".join(f"{r['deviation']:+.1%}" + (" (unstable)" if r["unstable"] else "") for r in s["runs"])
                print(f"| {name} | {label} | {devs} | {s['within_5pct_or_flagged']:.0%} |")
    if "paired" in res:
        p = res["paired"]
        print(f"\nA/B over {len(p['new']['ratios'])} invocations: --paired {', '.join(f'{x:.4f}' for x in p['new']['ratios'])}"
              f" (±{p['new']['max_deviation']:.2%}, CI ±{p['new']['ci_half_width_mean']:.2%}); separate pooled runs "
              f"{', '.join(f'{x:.4f}' for x in p['old']['ratios'])} (±{p['old']['max_deviation']:.2%})")
    if "build" in res:
        b = res["build"]
        print(f"\ndataset build, {b['new']['models']} kernel models: {b['new']['seconds']:.1f} s with the quiet "
              f"estimator ({b['new']['extra_rounds']} extra rounds, {b['new']['unstable']} unstable) against "
              f"{b['old']['seconds']:.1f} s pooled: **{b['ratio']:.2f}x**")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--parts", default="repeat,busy,paired,build")
    ap.add_argument("--budget", type=int, default=120, help="kernel models in the build part")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    res: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S")}
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        reg = ROOT / "devices.yaml"
        models = {name: export(name, tmp) for name in MODELS}
        if "repeat" in parts or "busy" in parts:
            print("repeat: separate processes, quiet estimator (new) and one pooled round (old)", flush=True)
            res["repeat"] = part_repeat(reg, tmp, models, args.runs)
        if "busy" in parts:
            print("busy: a pure-Python loop pinned to CPU 1", flush=True)
            res["busy"] = part_busy(reg, tmp, models, args.runs, res["repeat"])
        if "paired" in parts:
            print("paired: B/A", flush=True)
            res["paired"] = part_paired(reg, tmp, models, args.runs)
        if "build" in parts:
            print("build: a seeded kernel plan", flush=True)
            res["build"] = part_build(tmp, args.budget)
    report(res)
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
