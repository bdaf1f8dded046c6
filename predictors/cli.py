"""``hwfarm predictor …`` and ``hwfarm predict`` (plugged in through the ``hwfarm.commands``
entry points in pyproject.toml, so the farm never imports this layer)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

app = typer.Typer(help="Latency/energy predictors: train, list, show, evaluate, benchmark.", no_args_is_help=True)

# ------------------------------------------------------------------ train / list / show / eval / predict


def _ctx() -> Any:
    """The global options (--db, --registry) and consoles of the ``hwfarm`` command."""
    from farm import cli

    return cli


def _bundle_dir(bundle_dir: Optional[Path]) -> Path:
    from predictors.bundle import bundles_dir

    return bundle_dir or bundles_dir(_ctx().STATE.db)


def _open(device: str) -> tuple[Any, Any]:
    from farm.registry.spec import load_registry
    from farm.store.sqlite import SqliteStore

    c = _ctx()
    spec = load_registry(c.STATE.registry).get(device)
    if not Path(c.STATE.db).exists():
        from farm.errors import InputError

        raise InputError(f"{c.STATE.db}: no dataset here (profile or build one first, or pass --db)")
    return spec, SqliteStore(c.STATE.db)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


@app.command("train")
def train_cmd(
    device: str = typer.Option(..., "--device", "-d", help="Device name from the registry."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Train on measurements at this thread count."),
    bundle_dir: Optional[Path] = typer.Option(None, "--bundle-dir", help="Where to write the bundle "
                                              "(default: a folder next to the --db file)."),
    space: Optional[str] = typer.Option(None, "--space", help="Also train graph-level models of these search "
                                        "spaces (nb201,fbnet) for fast batched queries."),
    as_json: bool = typer.Option(False, "--json", help="The bundle's summary as JSON on stdout."),
) -> None:
    """Train a device's latency (and energy) predictor on its kernel measurements."""
    from farm.errors import InputError
    from predictors.api import train
    from predictors.encodings import SPACES

    spaces = tuple(s.strip() for s in space.split(",") if s.strip()) if space else ()
    for s in spaces:
        if s not in SPACES:
            raise InputError(f"--space: unknown space {s!r}; known: {', '.join(SPACES)}")
    c = _ctx()
    spec, store = _open(device)
    with c.err.status("training…") as status:
        info = train(store, spec, db=c.STATE.db, threads=threads, bundle_dir=_bundle_dir(bundle_dir),
                     spaces=spaces, progress=lambda msg: status.update(msg))
    if as_json:
        c.emit_json(info.summary())
        return
    _print_summary(info.summary())


def _print_summary(s: dict[str, Any]) -> None:
    c = _ctx()
    m = s.get("metrics", {})
    c.out.print(f"bundle [bold]{s['id']}[/] for {s['device']} ({s['runtime']}, {s['threads']} thread(s)"
                f"{', simulated' if s.get('simulated') else ''}) at {s['path']}")
    kernels = m.get("kernels", {})
    c.out.print(f"  trained on {m.get('n_train', 0)} kernel measurements: "
                + ", ".join(f"{t} {n}" for t, n in sorted(kernels.items())))
    if m.get("n_slowed_left_out"):
        c.out.print(f"  left out {m['n_slowed_left_out']} kernel measurements contention slowed throughout")
    nets = m.get("networks")
    if nets:
        rho = f", Spearman {nets['spearman']:.3f}" if "spearman" in nets else ""  # (needs 3 models or more)
        c.out.print(f"  on {nets['n']} whole models never seen in training: ±10% accuracy {_pct(nets.get('acc10'))}, "
                    f"median error {_pct(nets.get('median_ape'))}{rho}")
    else:
        c.out.print("  no whole-model measurements to evaluate on yet (profile some models on this device)")
    if s.get("energy"):
        c.out.print("  energy model: yes (the device measured energy)")
    for space in s.get("spaces", []):
        sm = m.get(f"space:{space}", {})
        fid = sm.get("fidelity_vs_kernel_model", {})
        c.out.print(f"  space {space}: graph-level model on {sm.get('n_measured', 0)} measured + "
                    f"{sm.get('n_distilled', 0)} distilled architectures; agrees with the kernel-level model "
                    f"within ±10% on {_pct(fid.get('acc10'))} of 100 others")


@app.command("list")
def list_cmd(
    device: Optional[str] = typer.Option(None, "--device", "-d", help="Only this device's bundles."),
    bundle_dir: Optional[Path] = typer.Option(None, "--bundle-dir", help="Bundle folder (default: beside --db)."),
    as_json: bool = typer.Option(False, "--json", help="JSON list on stdout."),
) -> None:
    """Trained predictor bundles, newest first."""
    from rich.table import Table

    from predictors.bundle import list_bundles

    c = _ctx()
    found = [b.summary() for b in list_bundles(_bundle_dir(bundle_dir), device=device)]
    if as_json:
        c.emit_json(found)
        return
    if not found:
        c.err.print(f"no predictor bundles in {_bundle_dir(bundle_dir)} (hwfarm predictor train --device NAME)")
        return
    table = Table(title=f"predictor bundles in {_bundle_dir(bundle_dir)}", title_justify="left")
    for col in ("id", "device", "runtime", "thr", "created", "kernels", "nets ±10%", "energy"):
        table.add_column(col)
    for s in found:
        m = s["metrics"]
        nets = m.get("networks") or {}
        table.add_row(s["id"], s["device"], str(s["runtime"]), str(s["threads"]), s["created"], str(m.get("n_train")),
                      _pct(nets.get("acc10")), "yes" if s["energy"] else "-")
    c.out.print(table)


@app.command("show")
def show_cmd(
    bundle: str = typer.Argument(..., help="Bundle id or directory."),
    bundle_dir: Optional[Path] = typer.Option(None, "--bundle-dir", help="Bundle folder (default: beside --db)."),
    as_json: bool = typer.Option(False, "--json", help="bundle.json's summary as JSON on stdout."),
) -> None:
    """One bundle: device, runtime, data, fusion rules, per-type models and metrics."""
    from predictors.bundle import find_bundle

    c = _ctx()
    info = find_bundle(_bundle_dir(bundle_dir), bundle=bundle)
    s = info.summary() | {"fusion": info.meta.get("fusion"),
                          "types": {t: {"features": v.get("features"), "n_samples": v.get("n_samples")}
                                    for t, v in (info.meta.get("latency") or {}).get("types", {}).items()},
                          "stream_levels": ((info.meta.get("latency") or {}).get("stream") or {}).get("levels", [])}
    if as_json:
        c.emit_json(s)
        return
    _print_summary(s)
    fusion = s.get("fusion") or {}
    c.out.print(f"  fusion rules ({fusion.get('source')}): "
                + ", ".join("+".join(p) for p in fusion.get("patterns", [])))
    for t, v in s["types"].items():
        c.out.print(f"  {t:9s} n={v['n_samples'] or '-':<5} features: {', '.join(v['features'] or [])}")
    c.out.print("  streamed Gemm weights: " + (", ".join(f"past {lv['cache_kb']:.0f} KB, {lv['ms_per_kb'] * 1e6:.1f} ns/KB"
                                                          for lv in s["stream_levels"]) or "none learned"))


@app.command("eval")
def eval_cmd(
    device: str = typer.Option(..., "--device", "-d", help="Device name from the registry."),
    bundle: Optional[str] = typer.Option(None, "--bundle", help="Bundle id or directory (default: the newest)."),
    as_json: bool = typer.Option(False, "--json", help="Metrics and per-model rows as JSON on stdout."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Also draw predicted against measured, log-log "
                                        "with the ±10% band, to this .svg file."),
) -> None:
    """Accuracy on the dataset's whole-model measurements of the device."""
    from rich.table import Table

    from predictors.api import evaluate, load
    from predictors.plot import check_path

    c = _ctx()
    if plot is not None:
        check_path(plot)
    spec, store = _open(device)
    p = load(bundle or device, db=c.STATE.db)
    res = evaluate(p, store, spec)
    if plot is not None:
        _eval_plot(plot, res)
        c.err.print(f"plot: {plot}", highlight=False)
    if as_json:
        c.emit_json(res)
        return
    table = Table(title=f"{device}: predicted vs measured (bundle {p.bundle_id})", title_justify="left")
    for col in ("model", "measured ms", "predicted ms", "interval", "error"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in res["models"]:
        lo, hi = r["interval_ms"]
        table.add_row(Path(r["model"]).name, f"{r['measured_ms']:.4g}", f"{r['predicted_ms']:.4g}",
                      f"{lo:.3g}–{hi:.3g}", f"{100 * r['error']:+.1f}%")
    c.out.print(table)
    m = res["metrics"]
    c.out.print(f"{m['n']} models: ±10% accuracy {_pct(m['acc10'])}, median error {_pct(m['median_ape'])}"
                + (f", Spearman {m['spearman']:.3f}" if "spearman" in m else ""))


def _eval_plot(path: Path, res: dict[str, Any]) -> None:
    from predictors.plot import scatter, write_svg

    m = res["metrics"]
    rows = res["models"]
    sub = (f"{m['n']} models: ±10% accuracy {_pct(m['acc10'])}, median error {_pct(m['median_ape'])}"
           + (f", Spearman {m['spearman']:.3f}" if "spearman" in m else ""))
    write_svg(path, scatter([r["measured_ms"] for r in rows], [r["predicted_ms"] for r in rows],
                            [Path(r["model"]).name for r in rows], title=f"{res['device']}: predicted vs measured",
                            subtitle=sub, desc=f"hwfarm predictor eval, device {res['device']}, bundle {res['bundle']}"))


def predict(
    models: list[Path] = typer.Argument(..., help="ONNX or TFLite model files."),
    device: str = typer.Option(..., "--device", "-d", help="Device whose predictor answers."),
    bundle: Optional[str] = typer.Option(None, "--bundle", help="Bundle id or directory (default: the device's newest)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per model on stdout."),
) -> None:
    """Predict latency (and energy) of models on a device, without running them."""
    from rich.table import Table

    from predictors.api import load

    c = _ctx()
    p = load(bundle or device, db=c.STATE.db)
    if bundle is not None and p.device != device:
        from farm.errors import InputError

        raise InputError(f"bundle {p.bundle_id!r} was trained for device {p.device!r}, not {device!r}")
    preds = p.predict_many([str(m) for m in models])
    if as_json:
        for m, r in zip(models, preds, strict=True):
            c.emit_json({"model": str(m), "device": device, "latency_ms": r.latency_ms,
                          "latency_interval_ms": list(r.latency_interval_ms), "energy_mj": r.energy_mj,
                          "kernels": [k.to_json() for k in r.kernels], "bundle": p.bundle_id,
                          "fallback_kernels": [k.name for k in r.fallback_kernels],
                          "simulated": bool(p.info.meta.get("simulated"))})
        return
    table = Table(title=f"predicted on {device} (bundle {p.bundle_id})", title_justify="left")
    for col in ("model", "latency ms", "interval", "energy mJ", "kernels", "fallback"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for m, r in zip(models, preds, strict=True):
        lo, hi = r.latency_interval_ms
        table.add_row(m.name, f"{r.latency_ms:.4g}", f"{lo:.3g}–{hi:.3g}",
                      "-" if r.energy_mj is None else f"{r.energy_mj:.4g}", str(len(r.kernels)),
                      str(len(r.fallback_kernels)) or "-")
    c.out.print(table)
    if any(r.fallback_kernels for r in preds):
        c.err.print("fallback: kernels of a type without a trained model were estimated by the device's roofline "
                    "(--json lists them)")


# ------------------------------------------------------------------ bench (the few-shot transfer protocol)


def _parse_shots(text: str) -> list[int]:
    from farm.errors import InputError

    try:
        shots = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise InputError(f"--shots {text!r}: expected comma-separated integers, e.g. 10,100,900") from None
    if not shots:
        raise InputError("--shots: give at least one shot count, e.g. 10,100,900")
    return shots


@app.command("bench")
def bench(
    csv_path: str = typer.Option(..., "--csv", help="Latency table: an architecture column and one column per device (ms)."),
    space: str = typer.Option(..., "--space", help="How to read the architecture column: nb201 (arch_str) or fbnet (op_idx)."),
    target: str = typer.Option(..., "--target", help="The device column to predict."),
    shots: str = typer.Option("10,100,900", "--shots", help="Comma-separated numbers of target measurements."),
    seeds: int = typer.Option(5, "--seeds", help="Random training draws per shot count (metrics are their mean)."),
    sources: str = typer.Option("all", "--sources", help="Transfer sources: all (every other device), none, or COL,COL,..."),
    as_json: bool = typer.Option(False, "--json", help='Print {"<shots>": {"spearman", "kendall", "acc10", "rmspe", ...}}.'),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Also draw the metrics against shots (Spearman ± std "
                                        "over seeds, Kendall, ±10% accuracy) to this .svg file."),
) -> None:
    """Few-shot latency benchmark (HELP's protocol): train on SHOTS random target measurements
    plus the sources' latencies, test on the rest within the target's 10th-90th percentile."""
    import json
    import sys

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from predictors.benchmark import read_table, resolve_sources, run_bench
    from predictors.plot import check_path

    if plot is not None:
        check_path(plot)
    shot_counts = _parse_shots(shots)
    table = read_table(csv_path, space)
    src = resolve_sources(table, target, sources)
    err = Console(stderr=True)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task(f"bench {target}", total=len(shot_counts) * max(seeds, 0))
        result = run_bench(table, target, shot_counts, seeds=seeds, sources=src if src else "none",
                           on_step=lambda: bar.advance(task))
    if plot is not None:
        _bench_plot(plot, result, target=target, space=space, n_sources=len(src), seeds=seeds)
        err.print(f"plot: {plot}", highlight=False)
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    out = Console(width=max(100, Console().width))
    t = Table(title=f"{target} on {space} ({len(src)} sources, {seeds} seeds; test rows within p10-p90)")
    for col in ("shots", "Spearman ρ", "Kendall τ", "±10% acc", "RMSPE %", "test rows"):
        t.add_column(col, justify="right")
    for k, row in result.items():
        t.add_row(k, f"{row['spearman']:.3f} ± {row['std_spearman']:.3f}", f"{row['kendall']:.3f}",
                  f"{100 * row['acc10']:.1f}%", f"{row['rmspe']:.1f}", f"{int(row['n_test'])}")
    out.print(t)
    out.print(f"sources: {', '.join(src) if src else 'none'}", highlight=False)


def _bench_plot(path: Path, result: dict[str, dict[str, Any]], *, target: str, space: str, n_sources: int,
                seeds: int) -> None:
    from predictors.plot import Series, curve, write_svg

    ks = [int(k) for k in result]
    rows = list(result.values())
    series = [Series("Spearman ρ", [r["spearman"] for r in rows], [r["std_spearman"] for r in rows]),
              Series("Kendall τ", [r["kendall"] for r in rows]),
              Series("±10% accuracy", [r["acc10"] for r in rows])]
    write_svg(path, curve(ks, series, title=f"{target} on {space}: few-shot transfer",
                          subtitle=f"{n_sources} sources, {seeds} seeds; test rows within the target's p10-p90",
                          xlabel="target measurements (shots)", logx=len(ks) > 1))
