"""``hwfarm dataset build`` and ``hwfarm dataset fusion``: kernel datasets through the farm.

Mounted into the built-in ``dataset`` group through the ``hwfarm.commands`` entry points
``dataset.build`` and ``dataset.fusion`` (pyproject.toml), so the farm never imports this layer.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional, Sequence

import typer
from rich.table import Table

from farm.cli import STATE, emit_json, err, out
from farm.devices.caps import device_caps
from farm.errors import InputError

__all__ = ["build", "fusion"]


def _fmt_ms(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.4f}" if x < 1 else f"{x:.3f}" if x < 100 else f"{x:.1f}"


CALIBRATION_ROUNDS = 3  # rounds of the calibration networks on a real device


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


def _detect(spec: Any, store: Any, models_dir: Path, candidates: tuple[str, ...] | None,
            repeats: int | None = None) -> list[Any]:
    from farm.measurement import Policy
    from predictors.fusion import CANDIDATES, detect_fusion, fusion_tests

    names = candidates or tuple(CANDIDATES)
    # A simulated device's noise is seeded: one round says all; real devices get three.
    rounds = repeats or (1 if device_caps(spec).simulated else 3)
    total = 2 + len({s.name for n in names for t in fusion_tests(n) for s in (t.head, *t.followers, t.chain)})
    with _Bar(f"fusion tests on {spec.name}", total * rounds) as bar:
        return detect_fusion(store, spec, models_dir=models_dir, candidates=names, policy=Policy(), repeats=rounds,
                             on_event=bar.on_event, on_cached=bar.on_cached, on_requeue=_requeued)


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
    from predictors.calibration import calibration_plan, default_calibration, write_calibration
    from predictors.dataset import measure_specs
    from predictors.fusion import detect_fusion_graph, detected_fusion_rules
    from predictors.sampling import DEFAULT_BUDGET, make_plan, parse_kernels, refine_plan
    from predictors.tflite_plan import plan_format

    if budget is not None and budget < 1:
        raise InputError(f"--budget {budget}: must be at least 1")
    total = DEFAULT_BUDGET if budget is None else budget
    n_refine = int(round(refine * total)) if total >= 20 else 0
    spec = _device(ctx, device, tflite_ok=True)
    started = time.monotonic()
    if plan_format(spec) == "tflite":
        types = parse_kernels(kernels) if kernels else None
        mdir = _models_dir(ctx, models_dir)
        results, rules_text, again = _build_tflite(spec, _store(ctx), mdir, types, total, n_refine, seed, dtype, force,
                                                   kernel_rounds)
        dtypes = sorted({x.spec.dtype for x in results})
        _report(ctx, spec, results, mdir, keep_models, started, [], as_json, started_note=rules_text,
                extra={"plan": "tflite", "dtypes": dtypes}, again=again, kernel_rounds=kernel_rounds)
        return
    if dtype is not None:
        raise InputError(f"--dtype {dtype!r}: device {device!r} takes the float ONNX plan ({spec.default_runtime}); "
                         "--dtype selects the dtypes of TFLite plans (LiteRT and int8-only devices)")
    types = parse_kernels(kernels)
    mdir = _models_dir(ctx, models_dir)
    store = _store(ctx)

    rules = detected_fusion_rules(store, spec.name)
    if rules is None and detect:
        # A local onnxruntime device: ask its optimizer (load-independent, seconds); any
        # other device: time the A, B, A+B test models on it.
        if spec.kind == "local" and (spec.runtime or "onnxruntime") == "onnxruntime":
            detect_fusion_graph(store, spec)
        else:
            _detect(spec, store, mdir, None)
        rules = detected_fusion_rules(store, spec.name)
    rules = rules or ()
    if not as_json:
        err.print(f"fusion rules of {spec.name}: " + (", ".join("+".join(r) for r in rules) or "none"),
                  markup=False, highlight=False)

    plan = make_plan(budget=total - n_refine, kernels=types, seed=seed, fusion=rules)
    results = []
    in_rounds = f" in {kernel_rounds} rounds" if kernel_rounds > 1 else ""
    with _Bar(f"kernels on {spec.name}{in_rounds}", len(plan), kernel_rounds) as bar:
        results += measure_specs(store, spec, plan, models_dir=mdir, on_event=bar.on_event,
                                 on_cached=bar.on_cached, on_requeue=_requeued, force=force, rounds=kernel_rounds)
    rounds = 2 if n_refine >= 100 else 1
    for r in range(rounds if n_refine else 0):
        n = n_refine // rounds + (n_refine % rounds if r == rounds - 1 else 0)
        ok = [x for x in results if x.latency_ms is not None]
        extra = refine_plan([x.spec for x in ok], [float(x.latency_ms or 0) for x in ok], n=n, seed=seed + 1 + r,
                            exclude={x.spec.name for x in results})
        with _Bar(f"refinement {r + 1}/{rounds} on {spec.name}{in_rounds}", len(extra), kernel_rounds) as bar:
            results += measure_specs(store, spec, extra, models_dir=mdir, on_event=bar.on_event,
                                     on_cached=bar.on_cached, on_requeue=_requeued, force=force, rounds=kernel_rounds)
    cal = calibration_plan(default_calibration(budget) if calibration is None else calibration)
    if cal:
        # In rounds on a real device: each network's median then spans the minutes the
        # calibration takes, not the second or two a drifting machine gave it (a simulated
        # device's noise is seeded and does not drift: one round says all).
        n_rounds = 1 if device_caps(spec).simulated else CALIBRATION_ROUNDS
        with _Bar(f"calibration networks on {spec.name}", len(cal), n_rounds) as bar:
            results += measure_specs(store, spec, cal, models_dir=mdir, on_event=bar.on_event, on_cached=bar.on_cached,
                                     on_requeue=_requeued, force=force, writer=write_calibration, rounds=n_rounds)
    again = _second_sitting(spec, store, mdir, [x.spec for x in results], force)
    _report(ctx, spec, results, mdir, keep_models, started, [list(r) for r in rules], as_json, again=again,
            kernel_rounds=kernel_rounds)


def _second_sitting(spec: Any, store: Any, mdir: Path, specs: list[Any], force: bool,
                    writer: Any = None, model_format: str = "onnx") -> list[Any]:
    """Measure the plan's minimal models again at the end of a build on a real device (their
    results). They set the per-inference overhead every prediction carries: measured only at
    the build's start, a machine slowed then lifts every tiny kernel's prediction. The
    predictor keeps each one's faster sitting. (A simulated device's noise is seeded and
    does not drift: one sitting.)"""
    from predictors.dataset import measure_specs
    from predictors.sampling import second_sitting

    again = second_sitting(specs) if not device_caps(spec).simulated else []
    if not again:
        return []
    with _Bar(f"minimal models again on {spec.name}", len(again)) as bar:
        return measure_specs(store, spec, again, models_dir=mdir, on_event=bar.on_event, on_cached=bar.on_cached,
                             on_requeue=_requeued, force=force, writer=writer, model_format=model_format)


def _build_tflite(spec: Any, store: Any, mdir: Path, types: tuple[str, ...] | None, total: int, n_refine: int,
                  seed: int, dtype: str | None, force: bool, kernel_rounds: int = 1) -> tuple[list[Any], str, list[Any]]:
    """The TFLite plan (float32 / int8 .tflite kernels) measured on a device, with refinement."""
    from predictors.dataset import measure_specs
    from predictors.tflite_plan import (
        TFLITE_KERNEL_TYPES,
        bit_serial,
        describe,
        fits_for,
        make_tflite_plan,
        parse_dtypes,
        refine_tflite_plan,
        tflite_bytes,
    )

    dtypes = parse_dtypes(dtype, spec)
    fits, bits = fits_for(spec), bit_serial(spec)
    plan = make_tflite_plan(budget=total - n_refine, kernels=types or TFLITE_KERNEL_TYPES, seed=seed, dtypes=dtypes,
                            fits=fits, bits=bits)

    def writer(t: Any) -> tuple[bytes, str]:
        return tflite_bytes(t), ".tflite"

    def measure(specs: list[Any], title: str) -> list[Any]:
        in_rounds = f" in {kernel_rounds} rounds" if kernel_rounds > 1 else ""
        with _Bar(title + in_rounds, len(specs), kernel_rounds) as bar:
            return measure_specs(store, spec, specs, models_dir=mdir, on_event=bar.on_event, on_cached=bar.on_cached,
                                 on_requeue=_requeued, force=force, writer=writer, model_format="tflite",
                                 rounds=kernel_rounds)

    results = measure(plan, f"tflite kernels on {spec.name}")
    rounds = 2 if n_refine >= 100 else 1
    for r in range(rounds if n_refine else 0):
        n = n_refine // rounds + (n_refine % rounds if r == rounds - 1 else 0)
        ok = [x for x in results if x.latency_ms is not None]
        extra = refine_tflite_plan([x.spec for x in ok], [float(x.latency_ms or 0) for x in ok], n=n,
                                   seed=seed + 1 + r, fits=fits, bits=bits)
        extra = [t for t in extra if t.name not in {x.spec.name for x in results}]
        results += measure(extra, f"refinement {r + 1}/{rounds} on {spec.name}")
    again = _second_sitting(spec, store, mdir, [x.spec for x in results], force, writer, "tflite")
    return results, f"TFLite plan on {spec.name}: {describe(plan)}; activations fused in the files", again


def _report(ctx: typer.Context, spec: Any, results: list[Any], mdir: Path, keep_models: bool, started: float,
            rules: list[list[str]], as_json: bool, started_note: str | None = None,
            extra: dict[str, Any] | None = None, again: Sequence[Any] = (), kernel_rounds: int = 1) -> None:
    """The build's summary (table or JSON). ``again``: the minimal models' second sitting,
    re-measurements outside the plan's count (``overhead_again`` in the JSON); ``kernel_rounds``:
    the rounds the kernels were measured in (``rounds``)."""
    from predictors.dataset import summarize_results

    if started_note and not as_json:
        err.print(started_note, markup=False, highlight=False)
    summary = summarize_results(results)
    counts = {k: sum(1 for x in results if x.source == k) for k in ("measured", "cached", "failed")}
    failed = [x for x in (*results, *again) if x.source == "failed"]
    n_again = sum(1 for x in again if x.latency_ms is not None)
    removed = 0
    if not keep_models and not failed:  # a failed build keeps them for `hwfarm jobs run`
        for x in (*results, *again):
            Path(x.path).unlink(missing_ok=True)
            removed += 1
        for d in sorted((p for p in mdir.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            if not any(d.iterdir()):  # the per-kernel-type folders the build emptied
                d.rmdir()
    elapsed = time.monotonic() - started
    if as_json:
        emit_json({"device": spec.name, "db": str(_paths(ctx)[1]), "models_dir": str(mdir),
                    "models_kept": not removed,
                    "fusion_rules": rules, **(extra or {"plan": "onnx"}), "models": len(results), **counts,
                    "overhead_again": n_again, "rounds": kernel_rounds,
                    "elapsed_s": round(elapsed, 2), "kernels": summary})
    else:
        table = Table(title=f"kernel dataset on {spec.name} ({_paths(ctx)[1]}), latency in ms", title_justify="left")
        for col in ("kernel", "models", "measured", "cached", "failed", "min", "median", "max"):
            table.add_column(col, justify="left" if col == "kernel" else "right")
        for kt, s in summary.items():
            table.add_row(kt, str(s["models"]), str(s["measured"]), str(s["cached"]), str(s["failed"]),
                          _fmt_ms(s["min_ms"]), _fmt_ms(s["median_ms"]), _fmt_ms(s["max_ms"]))
        table.add_section()
        table.add_row("all", str(len(results)), str(counts["measured"]), str(counts["cached"]),
                      str(counts["failed"]), "", "", "")
        out.print(table)
        kept = (f"models removed from {mdir} (graphs are in the dataset; --keep-models keeps the files)"
                if removed else f"models in {mdir}")
        sat = f"; {n_again} minimal models sat twice (the overhead takes the faster)" if n_again else ""
        err.print(f"{elapsed:.0f} s; {kept}{sat}", markup=False, highlight=False)
    for x in failed:
        err.print(f"hwfarm: error: {x.spec.name}: {x.error}", markup=False, highlight=False)
    if failed:
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
                                          help="Rounds of measurements (default: 3 on real devices, 1 simulated)."),
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
        mdir = _models_dir(ctx, models_dir)
        records = _detect(spec, _store(ctx), mdir, names, repeats)
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
