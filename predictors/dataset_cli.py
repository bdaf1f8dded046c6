"""``hwfarm dataset build`` and ``hwfarm dataset fusion``: kernel datasets through the farm.

Mounted into the built-in ``dataset`` group through the ``hwfarm.commands`` entry points
``dataset.build`` and ``dataset.fusion`` (pyproject.toml), so the farm never imports this layer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from farm.cli import STATE, emit_json, err, out
from farm.errors import InputError

__all__ = ["build", "fusion"]


def _fmt_ms(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.4f}" if x < 1 else f"{x:.3f}" if x < 100 else f"{x:.1f}"


class _Bar:
    """A rich progress bar on stderr fed by scheduler events (and cached answers)."""

    def __init__(self, description: str, total: int, rounds: int = 1) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=True,
                                 disable=total == 0)
        self.rounds = rounds  # each job advances the bar once per round
        self.task = self.progress.add_task(description, total=total * rounds)

    def __enter__(self) -> _Bar:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(None, None, None)

    def on_event(self, e: Any) -> None:
        if e.kind in ("round", "done"):
            self.progress.advance(self.task)
        elif e.kind == "failed":  # with the rounds it will not run
            self.progress.advance(self.task, max(self.rounds - (e.job.rounds_done if e.job is not None else 0), 1))
        if e.kind in ("retry", "waiting", "failed"):
            self.progress.console.print(f"{e.kind}: {e.message}", markup=False, highlight=False)

    def on_cached(self, n: int) -> None:
        self.progress.advance(self.task, n * self.rounds)


def _paths(ctx: typer.Context) -> tuple[Path, Path]:
    """(registry, db) as given to the running ``hwfarm``, read from the root command's
    parameters (under ``python -m farm.cli`` the module holding STATE is ``__main__``, not
    the ``farm.cli`` imported here)."""
    params = ctx.find_root().params
    return Path(params.get("registry") or STATE.registry), Path(params.get("db") or STATE.db)


def _models_dir(ctx: typer.Context, given: Path | None) -> Path:
    """The models folder, created now: a path that cannot be a folder is bad input."""
    from predictors.dataset import models_dir_for

    db = _paths(ctx)[1]
    if str(db) != ":memory:" and not db.parent.is_dir():
        raise InputError(f"--db {db}: directory {db.parent} does not exist")
    path = given or models_dir_for(db)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"--models-dir {path}: cannot create the models folder: {e.strerror or e}") from None
    return path


def _device(ctx: typer.Context, device: str, *, tflite_ok: bool = False) -> Any:
    from farm.devices import open_device
    from farm.measurement import resolve_runtime
    from farm.registry.spec import load_registry

    spec = load_registry(_paths(ctx)[0]).get(device)
    runtime = spec.default_runtime
    if not tflite_ok and runtime and resolve_runtime(runtime, "onnx") != runtime:
        raise InputError(f"device {device!r} runs {runtime}, which takes .tflite models; fusion detection "
                         "generates ONNX test models (dataset build writes .tflite kernels for it)")
    open_device(spec).close()  # a kind that cannot run here fails before the dataset is touched
    return spec


def _store(ctx: typer.Context) -> Any:
    from farm.store.sqlite import SqliteStore

    return SqliteStore(_paths(ctx)[1])


def _requeued(ids: list[int]) -> None:
    err.print(f"re-queued {len(ids)} job(s) left running by a process that died")


def build(
    ctx: typer.Context,
    device: str = typer.Option(..., "--device", "-d", help="Device name from the registry."),
    kernels: Optional[str] = typer.Option(None, "--kernels", "-k",
                                          help="Kernel types, comma-separated (default: all): "
                                               "conv,dwconv,gemm,pool,gpool,eltwise,act,bn,concat,reshape."),
    budget: Optional[int] = typer.Option(None, "--budget", "-n",
                                         help="Models in all, refinement included (default: the default plan)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sampling plan."),
    refine: float = typer.Option(0.2, "--refine", min=0.0, max=0.9,
                                 help="Share of the budget spent on adaptive refinement (where a "
                                      "cross-validated model errs most); 0: prior sample only."),
    models_dir: Optional[Path] = typer.Option(None, "--models-dir",
                                              help="Where the generated ONNX models go (default: beside --db)."),
    force: bool = typer.Option(False, "--force", help="Measure again even where the dataset has a measurement "
                                                      "(e.g. on a quieter machine; the newest one counts)."),
    keep_models: bool = typer.Option(False, "--keep-models",
                                     help="Keep the ONNX files after a build with no failures (they are "
                                          "regenerated from their names on demand; the default plan's take ~0.6 GB)."),
    detect: bool = typer.Option(True, "--detect-fusion/--no-detect-fusion",
                                help="Detect the device's fusion rules first if the dataset has none (local "
                                     "onnxruntime devices: from its optimized graph; others: measured)."),
    dtype: Optional[str] = typer.Option(None, "--dtype",
                                        help="TFLite plans: float32, int8 or both, comma-separated (default: what the "
                                             "device takes: int8 on int8-only simulated devices, float32,int8 on "
                                             "LiteRT devices, float32 with the GPU delegate)."),
    calibration: Optional[int] = typer.Option(None, "--calibration", min=0,
                                              help="Whole networks measured after the kernels, to fit what a "
                                                   "kernel costs inside a network (default: 32 with the default "
                                                   "plan, about one per 60 kernels of --budget, none below 300)."),
    kernel_rounds: int = typer.Option(1, "--rounds", min=1,
                                      help="Measure the kernels in N interleaved rounds (every kernel once, then "
                                           "every kernel again, N times; each record pools its rounds), so a "
                                           "kernel's median spans the build rather than the seconds a drifting "
                                           "machine gave it. About N times the build's time; resume with the "
                                           "same N (measurements in other rounds are not reused)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON summary on stdout."),
) -> None:
    """Measure single-kernel models on a device (resumable: run it again to finish)."""
    from predictors.build import build as build_dataset
    from predictors.sampling import parse_kernels

    if budget is not None and budget < 1:
        raise InputError(f"--budget {budget}: must be at least 1")
    spec = _device(ctx, device, tflite_ok=True)
    types = parse_kernels(kernels) if kernels else None
    mdir = _models_dir(ctx, models_dir)
    report = build_dataset(_store(ctx), spec, models_dir=mdir, budget=budget, seed=seed, refine=refine, kernels=types,
                           dtype=dtype, calibration=calibration, rounds=kernel_rounds, force=force,
                           keep_models=keep_models, detect=detect, progress=_Bar, on_requeue=_requeued,
                           on_note=None if as_json else _note)
    _report(report, as_json)


def _note(text: str) -> None:
    err.print(text, markup=False, highlight=False)


def _report(report: Any, as_json: bool) -> None:
    """The build's summary (table or JSON), then one line per failed model."""
    if report.note and not as_json:
        _note(report.note)
    if as_json:
        emit_json(report.to_json())
    else:
        summary = report.kernels()
        counts = report.counts
        table = Table(title=f"kernel dataset on {report.device} ({report.db}), latency in ms", title_justify="left")
        for col in ("kernel", "models", "measured", "cached", "failed", "min", "median", "max"):
            table.add_column(col, justify="left" if col == "kernel" else "right")
        for kt, s in summary.items():
            table.add_row(kt, str(s["models"]), str(s["measured"]), str(s["cached"]), str(s["failed"]),
                          _fmt_ms(s["min_ms"]), _fmt_ms(s["median_ms"]), _fmt_ms(s["max_ms"]))
        table.add_section()
        table.add_row("all", str(len(report.results)), str(counts["measured"]), str(counts["cached"]),
                      str(counts["failed"]), "", "", "")
        out.print(table)
        mdir = report.models_dir
        kept = (f"models removed from {mdir} (graphs are in the dataset; --keep-models keeps the files)"
                if report.models_removed else f"models in {mdir}")
        n_again = report.overhead_again
        sat = f"; {n_again} minimal models sat twice (the overhead takes the faster)" if n_again else ""
        _note(f"{report.elapsed_s:.0f} s; {kept}{sat}")
    for x in report.failures:
        err.print(f"hwfarm: error: {x.spec.name}: {x.error}", markup=False, highlight=False)
    if report.failures:
        raise typer.Exit(1)


def fusion(
    ctx: typer.Context,
    device: str = typer.Option(..., "--device", "-d", help="Device name from the registry."),
    candidates: Optional[str] = typer.Option(None, "--candidates",
                                             help="Candidates, comma-separated (default: all), e.g. conv+bn,add+relu."),
    models_dir: Optional[Path] = typer.Option(None, "--models-dir",
                                              help="Where the test models go (default: beside --db)."),
    method: str = typer.Option("measured", "--method",
                               help="measured (A, B, A+B test models timed on the device; any device) or graph "
                                    "(onnxruntime's optimized graph; local onnxruntime devices, load-independent)."),
    repeats: Optional[int] = typer.Option(None, "--repeats", min=1,
                                          help="Times each test model is measured (default: 3 on real devices, 1 simulated)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per candidate on stdout."),
) -> None:
    """Detect which op sequences the device runs as one kernel (A, B, A+B test models) and
    store the rules in the dataset."""
    from predictors.fusion import check_graph_method, detect_fusion_graph, parse_candidates, rules_from_records

    names = parse_candidates(candidates)
    if method not in ("measured", "graph"):
        raise InputError(f"--method {method!r}: expected measured or graph")
    spec = _device(ctx, device)
    if method == "graph":
        check_graph_method(spec)  # before the dataset is opened
        records = detect_fusion_graph(_store(ctx), spec, candidates=names)
    else:
        from predictors.build import detect_rules

        mdir = _models_dir(ctx, models_dir)
        records = detect_rules(_store(ctx), spec, models_dir=mdir, candidates=names, repeats=repeats, progress=_Bar,
                               on_requeue=_requeued)
    if as_json:
        for r in records:
            emit_json({"device": r.device, "candidate": r.candidate, "ops": list(r.ops), "fused": r.fused,
                        "conclusive": r.evidence["conclusive"], "evidence": r.evidence["shapes"]})
        return
    title = (f"fusion on {spec.name}: the chain after onnxruntime's optimizer" if method == "graph" else
             f"fusion on {spec.name}: chain vs head + followers (net ms, overhead removed)")
    table = Table(title=title, title_justify="left")
    cols = ("candidate", "ops", "fused") + (("after the optimizer",) if method == "graph" else
                                             ("chain", "head", "head+followers"))
    for col in cols:
        table.add_column(col, justify="left" if col in ("candidate", "ops", "fused", "after the optimizer") else "right")
    for r in records:
        shapes = r.evidence["shapes"]
        verdict = "yes" if r.fused else "no" if r.evidence["conclusive"] else "no (inconclusive)"
        if method == "graph":
            table.add_row(r.candidate, "+".join(r.ops), verdict, "+".join(shapes[0]["optimized_ops"]))
        else:
            table.add_row(r.candidate, "+".join(r.ops), verdict, " / ".join(_fmt_ms(s["chain_ms"]) for s in shapes),
                          " / ".join(_fmt_ms(s["head_ms"]) for s in shapes),
                          " / ".join(_fmt_ms(s["unfused_sum_ms"]) for s in shapes))
    out.print(table)
    rules = rules_from_records(records)
    err.print(f"stored {len(rules)} fusion rule(s) for {spec.name} in {_paths(ctx)[1]}: "
              + (", ".join("+".join(x) for x in rules) or "none"), markup=False, highlight=False)
