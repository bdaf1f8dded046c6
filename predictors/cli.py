"""``hwfarm predictor …`` and ``hwfarm predict`` (plugged in through the ``hwfarm.commands``
entry points in pyproject.toml, so the farm never imports this layer)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Latency/energy predictors: train, list, show, evaluate, benchmark.", no_args_is_help=True)

# ------------------------------------------------------------------ train / list / show / eval / predict


# ------------------------------------------------------------------ bench (the few-shot transfer protocol)
