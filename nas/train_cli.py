"""``hwfarm train``: train a network on a shipped dataset and write a model directory
(plugged in through the ``hwfarm.commands`` entry point ``train = "nas.train_cli:train"``)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, Optional

import typer

__all__ = ["train", "default_out"]

_NATIVE_SIZE = {"mnist_5k": 28, "digits": 8}


def default_out(arch: str, data: str, input_size: int) -> Path:
    """``./hwfarm-models/<arch-name>-<data>-<input>``: a reference net's options spelled in the
    name (``vgg-depth11-width0.25``), a search space's architecture as a short hash."""
    from nas.modules import SPACE_FAMILIES, parse_arch_spec

    name, rest, options = parse_arch_spec(arch)
    if name in SPACE_FAMILIES:
        slug = f"{name}-{hashlib.sha256(rest.encode()).hexdigest()[:10]}"
    else:
        slug = "-".join([name, *(f"{k}{v}" for k, v in options.items())])
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", slug)
    return Path("hwfarm-models") / f"{slug}-{data}-{input_size}"


def train(
    arch: str = typer.Option(..., "--arch", help="NAME[:k=v,…]: mobilenet_v2 (width, strides), resnet8 (filters), "
                             "resnet18 (width, strides), vgg (depth, width), ds_cnn (filters, blocks, kernel, "
                             "stride); or a search space's architecture, SPACE:ARCH (nb201:|…|)."),
    data: str = typer.Option(..., "--data", help="Dataset shipped with an installed package: mnist_5k (4,000 train "
                             "/ 1,000 held out) or digits (1,438 / 359)."),
    input_size: Optional[int] = typer.Option(None, "--input-size", help="Resize images to N×N (default: the "
                                             "dataset's own, 28 or 8)."),
    epochs: int = typer.Option(3, "--epochs", min=1, help="Passes over the training split."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Model directory to write (default: "
                                       "./hwfarm-models/<arch>-<data>-<input>)."),
    channels: int = typer.Option(1, "--channels", help="Input channels: 1 (grey), or 3 (the grey channel "
                                 "repeated, for a network meant for colour)."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Images per step."),
    lr: float = typer.Option(0.05, "--lr", help="Peak learning rate (SGD, Nesterov, cosine schedule)."),
    seed: int = typer.Option(0, "--seed", help="Seed of initialization and batch order (same seed, same weights)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing model directory at --out."),
    as_json: bool = typer.Option(False, "--json", help="The result as one JSON object, the last line on stdout."),
) -> None:
    """Train a reference network (or a search space's architecture) on a shipped dataset; write a model
    directory (arch.json, weights.safetensors, model.onnx) with its held-out accuracy."""
    import json
    import sys

    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from farm.errors import InputError
    from nas.data import DATASETS, MAX_INPUT_SIZE, NUM_CLASSES, load_dataset
    from nas.modeldir import is_model_dir, save_model_dir
    from nas.modules import build_module, parse_arch_spec
    from nas.train import TrainConfig, evaluate, fit

    # Everything a user can get wrong fails here, before minutes of training (and before torch loads).
    parse_arch_spec(arch)
    if data not in DATASETS:
        raise InputError(f"--data {data!r}: unknown dataset; known: {', '.join(DATASETS)}")
    if input_size is not None and not 4 <= input_size <= MAX_INPUT_SIZE:
        raise InputError(f"--input-size must be between 4 and {MAX_INPUT_SIZE}, not {input_size}")
    if channels not in (1, 3):
        raise InputError(f"--channels {channels}: expected 1 or 3")
    if not lr > 0:
        raise InputError(f"--lr {lr}: must be above 0")
    size = input_size if input_size is not None else _NATIVE_SIZE[data]
    target = out if out is not None else default_out(arch, data, size)
    if target.exists() and not (target.is_dir() and not any(target.iterdir())) and not overwrite:
        what = "a model directory" if is_model_dir(target) else "not an empty folder"
        raise InputError(f"--out {target}: exists and is {what} (pass --overwrite, or another --out)")
    try:
        import torch
    except ImportError:
        raise InputError("hwfarm train needs torch (pip install 'hwfarm[torch]')") from None
    torch.manual_seed(seed)  # the initial weights
    module = build_module(arch, num_classes=NUM_CLASSES, in_channels=channels, input_size=size)
    train_set = load_dataset(data, "train", input_size=input_size, channels=channels)
    test_set = load_dataset(data, "test", input_size=input_size, channels=channels)
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)

    err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 160)
    if as_json:
        result = fit(module, train_set, config)
    else:
        with Progress(TextColumn(escape(f"{arch} on {data} {size}×{size}")), BarColumn(), MofNCompleteColumn(),
                      TextColumn("loss {task.fields[loss]:.3f}"), TimeElapsedColumn(), console=err,
                      transient=True) as bar:
            task = bar.add_task("steps", total=None, loss=float("nan"))

            def progress(step: int, total: int, loss: float) -> None:
                bar.update(task, completed=step, total=total, loss=loss)

            result = fit(module, train_set, config, progress=progress)
    accuracy = evaluate(module, test_set)
    train_info: dict[str, Any] = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
                                  "momentum": config.momentum, "weight_decay": config.weight_decay,
                                  "optimizer": "SGD nesterov, cosine schedule", "steps": result.steps,
                                  "final_loss": round(result.final_loss, 5), "seconds": round(result.seconds, 2),
                                  "train_images": len(train_set), "held_out_images": len(test_set)}
    path = save_model_dir(target, arch_spec=arch, module=module, dataset=data, input_size=size, in_channels=channels,
                          num_classes=NUM_CLASSES, accuracy=accuracy, train=train_info, overwrite=overwrite)
    meta = json.loads((path / "arch.json").read_text())
    summary = {"model": str(path), "arch": arch, "data": data, "input_size": size, "channels": channels,
               "epochs": epochs, "accuracy": round(accuracy, 2), "held_out_images": len(test_set),
               "train_seconds": round(result.seconds, 2), "steps": result.steps, "params": meta["params"],
               "macs": meta["macs"], "size_kb": meta["size_kb"], "seed": seed}
    (err if as_json else Console(highlight=False, width=None if sys.stdout.isatty() else 160)).print(
        f"{escape(arch)} on {data} {size}×{size}: [bold]{accuracy:.2f}%[/] top-1 on {len(test_set)} held-out images "
        f"after {epochs} epoch(s), {result.steps} steps, {result.seconds:.1f} s; {meta['params']:,} params, "
        f"{meta['macs'] / 1e6:.2f} M MACs, {meta['size_kb']:.1f} kB ONNX → {escape(str(path))}", soft_wrap=True)
    if as_json:
        sys.stdout.write(json.dumps(summary) + "\n")
        sys.stdout.flush()
