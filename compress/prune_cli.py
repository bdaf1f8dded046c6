"""``hwfarm compress prune``: the command function, added to ``compress.cli``'s app as
``app.command("prune")(prune)``. The work is :func:`compress.prune.run_prune`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

__all__ = ["prune"]


def prune(
    ctx: typer.Context,
    model: Path = typer.Argument(..., help="A model directory written by `hwfarm train` (torch weights; an .onnx "
                                 "file cannot be pruned)."),
    device: str = typer.Option(..., "--device", "-d", help="Device whose predictor prices every candidate, and that "
                               "measures the original and the pruned model."),
    target_latency_ms: Optional[float] = typer.Option(None, "--target-latency-ms", help="Latency to reach on the "
                                                      "device (ms, as the farm measures it; predicted ms where the "
                                                      "device cannot be measured)."),
    target_speedup: Optional[float] = typer.Option(None, "--target-speedup", help="Speedup to reach: the "
                                                   "original's measured latency / S."),
    method: str = typer.Option("progressive", "--method", help="progressive (NetAdapt: prune where accuracy per ms "
                               "is best, fine-tune, repeat), search (Optuna TPE over per-stage ratios) or uniform "
                               "(one ratio everywhere)."),
    data: Optional[str] = typer.Option(None, "--data", help="Dataset the model takes (mnist_5k, digits): "
                                       "fine-tuning on its train split, accuracy on its held-out split. Default: the "
                                       "one the model directory names."),
    epochs: int = typer.Option(2, "--epochs", min=0, help="Epochs of the final fine-tune (distilled from the "
                               "original)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run directory (default: compress-runs/"
                                       "<model>-pruned-<method>-<device>-<time>): a model directory of the pruned "
                                       "network plus report.json and the accuracy/latency plot."),
    as_json: bool = typer.Option(False, "--json", help='Last stdout line: {"model", "accuracy_before", '
                                 '"accuracy_after", "latency_ms_before", "latency_ms_after", "measured", "speedup", '
                                 '"size_kb_before", "size_kb_after", ...}.'),
) -> None:
    """Prune channels (structured: the layers get smaller) to a latency target on the device: the
    predictor decides where channels go, the farm's measurements when the target is met; fine-tune
    (distilled from the original); prove the speedup by measuring both models in paired rounds."""
    import json
    import sys

    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from compress.prune import run_prune
    from compress.report import print_report

    root = ctx.find_root().params
    registry, db = Path(root.get("registry") or "devices.yaml"), Path(root.get("db") or "hwfarm.db")
    err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 160)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True) as bar:
        task = bar.add_task("checking the inputs", total=None)

        def status(msg: str) -> None:
            bar.update(task, description=escape(msg), total=None, completed=0)

        def progress(what: str, done: int, total: int) -> None:
            bar.update(task, description=escape(what), total=total, completed=done)

        report = run_prune(model, device=device, target_latency_ms=target_latency_ms, target_speedup=target_speedup,
                           method=method, data=data, epochs=epochs, out=out, registry=registry, db=db,
                           on_status=status, progress=progress)
    if report.details.get("measure_error"):
        err.print(f"[yellow]not measured on {escape(device)}:[/yellow] {escape(str(report.details['measure_error']))}")
    wide = None if sys.stdout.isatty() else 160
    print_report(err if as_json else Console(highlight=False, width=wide), report)
    if as_json:
        sys.stdout.write(json.dumps(report.to_json()) + "\n")
        sys.stdout.flush()
