"""``hwfarm compress …`` (plugged in through the ``hwfarm.commands`` entry point).

Nothing heavy at import time: onnxruntime's quantizer, the farm and the predictors are
imported inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(help="Compress a trained model for a device (structured pruning, int8 and mixed-precision quantization), "
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
                             "per-channel weights); mixed: per-layer bits for a bit-width-aware device (bit-serial, MCU: needs a "
                             "model directory; uniform, memory-driven and TPE-searched bits, each fine-tuned)."),
    max_latency_ms: Optional[float] = typer.Option(None, "--max-latency-ms", help="Fail (writing nothing) unless "
                                                   "the int8 model runs within this on the device (ms)."),
    max_flash_kb: Optional[float] = typer.Option(None, "--max-flash-kb", help="Flash limit (KB; default on an MCU: "
                                                 "its flash): per-layer bits until the model fits (Rusci et al.)."),
    max_sram_kb: Optional[float] = typer.Option(None, "--max-sram-kb", help="Peak SRAM limit (KB; default on an "
                                                "MCU: its SRAM): activation bits cut until it fits."),
    data: Optional[str] = typer.Option(None, "--data", help="Dataset the model takes (mnist_5k, digits): "
                                       "calibration images from its train split, accuracy on its held-out split. "
                                       "Default: the one a model directory names."),
    calibration: int = typer.Option(256, "--calibration", min=1, help="Training images that calibrate the "
                                    "activation ranges."),
    method: str = typer.Option("minmax", "--calibrate-method", help="minmax, entropy or percentile."),
    rounds: Optional[int] = typer.Option(None, "--rounds", min=2, help="Paired rounds of each model on a real "
                                         "device (default: the farm's, 12)."),
    trials: int = typer.Option(40, "--trials", min=0, help="Bit assignments the mixed-precision search tries."),
    seed: int = typer.Option(0, "--seed", help="Seed of the mixed-precision search and fine-tuning."),
    qat_steps: int = typer.Option(300, "--qat-steps", min=0, help="Quantization-aware fine-tuning steps of each "
                                  "mixed-precision candidate."),
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
    # The global --registry/--db of the running `hwfarm`, read from the root command (this
    # layer does not import farm.cli).
    root = ctx.find_root().params
    registry, db = Path(root.get("registry") or "devices.yaml"), Path(root.get("db") or "hwfarm.db")
    err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 160)
    if bits == "mixed" or max_flash_kb is not None or max_sram_kb is not None:
        from compress.mixed import run_mixed

        with err.status("mixed precision…") as spin:
            report = run_mixed(model, device=device, out=out, data=data, max_latency_ms=max_latency_ms,
                               max_flash_kb=max_flash_kb, max_sram_kb=max_sram_kb, trials=trials, seed=seed,
                               qat_steps=qat_steps,
                               overwrite=overwrite, registry=registry, db=db,
                               on_status=lambda msg: spin.update(escape(msg) + "…"))
        print_report(err if as_json else Console(highlight=False, width=None if sys.stdout.isatty() else 160), report)
        if as_json:
            sys.stdout.write(json.dumps(report.to_json()) + "\n")
            sys.stdout.flush()
        return
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


from compress.prune_cli import prune  # noqa: E402 - the command lives in its own module

app.command("prune")(prune)
