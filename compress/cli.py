"""``hwfarm compress …`` (plugged in through the ``hwfarm.commands`` entry point).

Nothing heavy at import time: onnxruntime's quantizer, the farm and the predictors are
imported inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(help="Compress a trained model for a device (quantization; pruning: not yet implemented), "
                  "proven by measuring on the device.", no_args_is_help=True)

_BITS = ("8", "mixed")


@app.command()
def quantize(
    ctx: typer.Context,
    model: Path = typer.Argument(..., help="An .onnx file (one 4-D image input) or a model directory written by "
                                 "`hwfarm train`."),
    device: str = typer.Option(..., "--device", "-d", help="Device to quantize for and to measure on (CPU targets: "
                               "onnxruntime int8)."),
    bits: str = typer.Option("8", "--bits", help="8: int8 weights and activations (onnxruntime static, QDQ, "
                             "per-channel weights); mixed: not yet implemented."),
    max_latency_ms: Optional[float] = typer.Option(None, "--max-latency-ms", help="Fail (writing nothing) unless "
                                                   "the int8 model runs within this on the device (ms)."),
    max_flash_kb: Optional[float] = typer.Option(None, "--max-flash-kb", help="Weight memory limit (KB; the "
                                                 "memory-driven MCU mode: not yet implemented)."),
    max_sram_kb: Optional[float] = typer.Option(None, "--max-sram-kb", help="Activation memory limit (KB; the "
                                                "memory-driven MCU mode: not yet implemented)."),
    data: Optional[str] = typer.Option(None, "--data", help="Dataset the model takes (mnist_5k, digits): "
                                       "calibration images from its train split, accuracy on its held-out split. "
                                       "Default: the one a model directory names."),
    calibration: int = typer.Option(256, "--calibration", min=1, help="Training images that calibrate the "
                                    "activation ranges."),
    method: str = typer.Option("minmax", "--calibrate-method", help="minmax, entropy or percentile."),
    rounds: Optional[int] = typer.Option(None, "--rounds", min=2, help="Paired rounds of each model on a real "
                                         "device (default: the farm's, 12)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run directory (default: "
                                       "compress-runs/<model>-int8-<device>-<time>)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --out folder."),
    as_json: bool = typer.Option(False, "--json", help='Last stdout line: {"model", "accuracy_before", '
                                 '"accuracy_after", "latency_ms_before", "latency_ms_after", "measured", "speedup", '
                                 '"size_kb_before", "size_kb_after", ...}.'),
) -> None:
    """Quantize a trained model to int8 and prove the speedup on the device: accuracy before and after on
    held-out images, both models measured by the farm, a run directory with the model, report.json and a
    plot of accuracy against latency."""
    import json
    import sys

    from rich.console import Console
    from rich.markup import escape

    from compress.quantize import QuantizeConfig, run_quantize
    from compress.report import print_report
    from farm.errors import InputError

    if bits not in _BITS:
        raise InputError(f"--bits {bits!r}: expected 8 or mixed")
    if bits == "mixed":
        raise InputError("--bits mixed: not yet implemented (have: 8)")
    if max_flash_kb is not None or max_sram_kb is not None:
        raise InputError("--max-flash-kb/--max-sram-kb: not yet implemented (the memory-driven MCU mode)")
    # The global --registry/--db of the running `hwfarm`, read from the root command (this
    # layer does not import farm.cli).
    root = ctx.find_root().params
    registry, db = Path(root.get("registry") or "devices.yaml"), Path(root.get("db") or "hwfarm.db")
    err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 160)
    config = QuantizeConfig(calibration_images=calibration, method=method, rounds=rounds,
                            max_latency_ms=max_latency_ms)
    with err.status("quantizing…") as spin:
        report = run_quantize(model, device=device, out=out, data=data, config=config, overwrite=overwrite,
                              registry=registry, db=db, on_status=lambda msg: spin.update(escape(msg) + "…"))
    if report.details.get("measure_error"):
        err.print(f"[yellow]not measured on {escape(device)}:[/yellow] {escape(str(report.details['measure_error']))}")
    wide = None if sys.stdout.isatty() else 160
    print_report(err if as_json else Console(highlight=False, width=wide), report)
    if as_json:
        sys.stdout.write(json.dumps(report.to_json()) + "\n")
        sys.stdout.flush()
