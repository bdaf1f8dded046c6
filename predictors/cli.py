"""``hwfarm predictor …`` and ``hwfarm predict`` (plugged in through the ``hwfarm.commands``
entry points in pyproject.toml, so the farm never imports this layer)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Latency/energy predictors: train, list, show, evaluate, benchmark.", no_args_is_help=True)

# ------------------------------------------------------------------ train / list / show / eval / predict


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
) -> None:
    """Few-shot latency benchmark (HELP's protocol): train on SHOTS random target measurements
    plus the sources' latencies, test on the rest within the target's 10th-90th percentile."""
    import json
    import sys

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from .benchmark import read_table, resolve_sources, run_bench

    shot_counts = _parse_shots(shots)
    table = read_table(csv_path, space)
    src = resolve_sources(table, target, sources)
    err = Console(stderr=True)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task(f"bench {target}", total=len(shot_counts) * max(seeds, 0))
        result = run_bench(table, target, shot_counts, seeds=seeds, sources=src if src else "none",
                           on_step=lambda: bar.advance(task))
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
