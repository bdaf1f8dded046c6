"""``hwfarm nas …`` (plugged in through the ``hwfarm.commands`` entry point)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(help="Search spaces: export architectures as models.", no_args_is_help=True)

# Where each space's shared table lives (relative to the data folder), and its env override.
_TABLES = {"nb201": ("nb201-latency/latency_ms.csv", "HWFARM_NB201_CSV"),
           "fbnet": ("fbnet-latency/latency_ms.csv", "HWFARM_FBNET_CSV")}


def _find_table(space: str) -> Path:
    """The shared latency CSV of a space: $HWFARM_<SPACE>_CSV, ./../shared/data/…, or the
    ``shared`` folder next to this checkout."""
    from farm.errors import InputError

    rel, env = _TABLES[space]
    candidates = [Path(os.environ[env])] if os.environ.get(env) else []
    repo = Path(__file__).resolve().parents[1]
    candidates += [Path.cwd() / "../shared/data" / rel, repo.parent / "shared/data" / rel,
                   repo / "../shared/data" / rel]
    for c in candidates:
        if c.is_file():
            return c.resolve()
    raise InputError(f"cannot find the {space} table (../shared/data/{rel}); pass --table PATH or set {env}")


@app.command()
def export(
    space: str = typer.Option(..., "--space", help="Search space (nb201, fbnet) or a reference net of "
                              "`hwfarm zoo list` (mobilenet_v2, resnet18, ds_cnn, ...)."),
    arch: str = typer.Option(..., "--arch", help="Architecture string or index (with a table); for a "
                             "reference net, its options (alpha=0.5,resolution=160) or 'default'."),
    out: Path = typer.Option(..., "--out", "-o", help="Output file: .onnx, or .tflite (LiteRT's layout: NHWC, BN "
                             "folded, activations fused)."),
    dtype: str = typer.Option("float32", "--dtype", help="float32, or int8 (full-integer .tflite, what int8-only "
                              "accelerators and MCUs take)."),
    table: Optional[Path] = typer.Option(None, "--table", help="CSV to look indices up in (default: the "
                                         "space's table in ../shared/data when present)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random weights."),
) -> None:
    """Write one architecture of a space (or one reference net) as an ONNX or .tflite file any tool can profile."""

    from farm.errors import InputError
    from farm.formats.onnx_export import graph_to_onnx
    from farm.zoo.nets import NETS, build_net, parse_net_options
    from farm.zoo.spaces import SPACES

    if space in SPACES:
        s = SPACES[space]
        if table is None and arch.strip().isdigit():
            table = _find_table(space)
        elif table is not None and not table.is_file():
            raise InputError(f"{table}: no such file")
        arch_str = s.resolve(arch, table=table)
        graph = s.to_graph(arch_str)
        what = f"{space} {arch_str}"
    elif space in NETS:
        graph = build_net(space, **parse_net_options(arch))
        what = f"{space} {arch.strip() or 'default'}"
    else:
        raise InputError(f"unknown space {space!r}; known: {', '.join(SPACES)} or a reference net: "
                         f"{', '.join(NETS)}")
    if graph.inputs[0].dtype != "float32":
        raise InputError(f"{what}: only float32 graphs export (dtype={graph.inputs[0].dtype})")
    if out.suffix not in (".onnx", ".tflite"):
        raise InputError(f"--out {out}: expected a .onnx or .tflite file name")
    if dtype not in ("float32", "int8") or (dtype != "float32" and out.suffix == ".onnx"):
        raise InputError(f"--dtype {dtype!r}: expected float32, or int8 with a .tflite --out")
    if out.suffix == ".tflite":
        from farm.formats.tflite_export import graph_to_tflite

        data = graph_to_tflite(graph, dtype=dtype, seed=seed)
        what += f", {dtype} .tflite"
    else:
        data = graph_to_onnx(graph, seed=seed).SerializeToString()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    typer.echo(f"wrote {out} ({what}; {graph.macs / 1e6:.1f} M MACs, {graph.params:,} params)", err=True)
