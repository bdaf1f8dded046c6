"""``hwfarm nas …`` (plugged in through the ``hwfarm.commands`` entry point)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(help="Search spaces: export architectures as models.", no_args_is_help=True)


@app.command()
def export(
    space: str = typer.Option(..., "--space", help="Search space: nb201."),
    arch: str = typer.Option(..., "--arch", help="Architecture string, or its index (with --table)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output .onnx file."),
    table: Optional[Path] = typer.Option(None, "--table", help="CSV with arch_idx and arch_str columns "
                                         "(default: ../shared/data/nb201-latency/latency_ms.csv when present)."),
) -> None:
    """Write one architecture of a space as an ONNX file any tool can profile."""
    import onnx

    from farm.errors import InputError
    from farm.onnx_export import graph_to_onnx
    from farm.sim.commands import find_nb201_table

    from .spaces import SPACES

    if space not in SPACES:
        raise InputError(f"unknown space {space!r}; known: {', '.join(SPACES)}")
    s = SPACES[space]()
    if table is None and arch.strip().isdigit():
        table = find_nb201_table()
    arch_str = s.resolve(arch, table=table)
    model = graph_to_onnx(s.to_graph(arch_str))
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, out)
    typer.echo(f"wrote {out} ({space} {arch_str})", err=True)
