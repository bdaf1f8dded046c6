"""A search's run directory and its figure.

``write_run`` writes ``pareto.csv`` and ``pareto.json`` (the front), ``candidates.csv`` (every
candidate scored: the figure's grey points), ``best.json`` (the chosen architecture) and
``best.onnx`` (its model), ``validated.json`` when the farm measured candidates,
``result.json`` (the ``--json`` object) and ``pareto.png`` (:func:`pareto_figure`: accuracy
against latency, predicted and measured points).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from nas.objectives import Candidate
from nas.search import SearchResult

__all__ = ["write_run", "pareto_figure", "print_search", "COLUMNS"]

COLUMNS = ("arch", "accuracy", "latency_ms", "energy_mj", "sram_kb", "flash_kb", "macs", "params", "feasible",
           "trial", "fallback_ops")


def _write_csv(path: Path, rows: Sequence[Candidate], measured: dict[str, float | None] | None = None) -> None:
    cols = COLUMNS + (("measured_ms",) if measured else ())
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for c in rows:
            d = c.to_json()
            row: list[Any] = ["" if d[k] is None else d[k] for k in COLUMNS]
            if measured:
                m = measured.get(c.arch)
                row.append("" if m is None else m)
            w.writerow(row)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file beside it and a rename (never a partial file)."""
    import secrets

    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def pareto_figure(result: SearchResult) -> Any:
    """Accuracy against latency: every candidate (grey), the feasible Pareto front
    (predicted), the farm's measurements of validated candidates (joined to their
    prediction), and the latency limit. Data in, ``Figure`` out; the caller saves it."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), dpi=120)
    ax = fig.add_subplot()
    cs = result.candidates
    ax.scatter([c.latency_ms for c in cs], [c.accuracy for c in cs], s=6, c="0.75", label=f"{len(cs)} candidates",
               linewidths=0)
    front = result.pareto
    if front:
        ax.plot([c.latency_ms for c in front], [c.accuracy for c in front], "o-", ms=4, lw=1.2, color="C0",
                label="Pareto front (predicted)")
    acc = {c.arch: c.accuracy for c in cs}
    meas = [(v.predicted_ms, v.measured_ms, acc[v.arch]) for v in result.validated
            if v.measured_ms is not None and v.arch in acc]
    if meas:
        for pred, m, a in meas:
            ax.plot([pred, m], [a, a], color="C3", lw=0.8, alpha=0.7)
        ax.scatter([m for _, m, _ in meas], [a for _, _, a in meas], marker="x", s=40, color="C3",
                   label=f"measured on {result.device}", zorder=3)
    if result.best is not None:
        ax.scatter([result.best.latency_ms], [result.best.accuracy], marker="*", s=160, color="C1", zorder=4,
                   label="chosen")
    limit = result.constraints.max_latency_ms
    if limit is not None:
        ax.axvline(limit, color="k", ls="--", lw=0.8, label=f"latency limit {limit:g} ms")
    accs = sorted(c.accuracy for c in cs)
    if len(accs) >= 20:  # a few degenerate cells (NB201's all-`none` ones score 10%) would flatten the rest
        low = accs[len(accs) // 20] - 2.0
        hidden = sum(a < low for a in accs)
        if hidden:
            ax.set_ylim(bottom=low, top=accs[-1] + 0.5)
            ax.text(0.01, 0.01, f"{hidden} candidates below {low:.1f}% not shown", transform=ax.transAxes,
                    fontsize=7, color="0.4")
    ax.set_xlabel("latency (ms)" + (f" on {result.device}" if result.device else ""))
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{result.space}: {result.strategy}, {result.trials} trials", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def write_run(result: SearchResult, out: str | os.PathLike[str], *, onnx_seed: int = 0) -> dict[str, Path]:
    """Write the run directory ``out``; the paths written, by role."""
    from farm.formats.onnx_export import graph_to_onnx
    from farm.zoo.spaces import get_space

    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    measured = {v.arch: v.measured_ms for v in result.validated} or None
    _write_csv(d / "pareto.csv", result.pareto, measured)
    written["pareto.csv"] = d / "pareto.csv"
    _write_csv(d / "candidates.csv", result.candidates)
    written["candidates.csv"] = d / "candidates.csv"
    doc = result.to_json()
    atomic_write(d / "pareto.json", json.dumps({"space": result.space, "device": result.device,
                                                 "constraints": result.constraints.to_json(),
                                                 "pareto": doc["pareto"]}, indent=1).encode())
    written["pareto.json"] = d / "pareto.json"
    if result.validated:
        atomic_write(d / "validated.json", json.dumps(doc["validated"], indent=1).encode())
        written["validated.json"] = d / "validated.json"
    if result.best is not None:
        atomic_write(d / "best.json", json.dumps({"space": result.space, "device": result.device,
                                                   **result.best.to_json()}, indent=1).encode())
        written["best.json"] = d / "best.json"
        graph = get_space(result.space).to_graph(result.best.arch)
        atomic_write(d / "best.onnx", graph_to_onnx(graph, seed=onnx_seed).SerializeToString())
        written["best.onnx"] = d / "best.onnx"
    fig = pareto_figure(result)
    fig.savefig(d / "pareto.png")
    written["pareto.png"] = d / "pareto.png"
    atomic_write(d / "result.json", json.dumps(doc, indent=1).encode())
    written["result.json"] = d / "result.json"
    return written


def print_search(con: Console, res: SearchResult, *, bundle: str, run_dir: Path) -> None:
    """The terminal report: the Pareto front as a table, a summary line, and predicted vs
    measured when the farm validated candidates."""
    from rich.table import Table

    if res.best is None:
        con.print(res.infeasible_message())
        return

    table = Table(title=f"Pareto front: {res.space} on {res.device} (bundle {bundle}; constraints: "
                  f"{res.constraints.describe()})", title_justify="left")
    for col in ("accuracy %", "latency ms", "energy mJ", "SRAM KB", "flash KB", "M MACs", "arch"):
        table.add_column(col, justify="left" if col == "arch" else "right")
    for cand in sorted(res.pareto, key=lambda x: -x.accuracy):
        star = " *" if res.best is not None and cand.arch == res.best.arch else ""
        table.add_row(f"{cand.accuracy:.2f}{star}", f"{cand.latency_ms:.4g}", _num(cand.energy_mj, ".4g"),
                      _num(cand.sram_kb, ".0f"), _num(cand.flash_kb, ".0f"),
                      _num(None if cand.macs is None else cand.macs / 1e6, ".1f"), cand.arch)
    con.print(table)
    con.print(f"{res.trials} trials ({res.new_trials} now, {res.candidates_per_s:.0f} candidates/s), "
              f"{sum(x.feasible for x in res.candidates)} of {len(res.candidates)} distinct candidates feasible; "
              f"chosen (*): {res.best.accuracy:.2f}% at {res.best.latency_ms:.4g} ms")
    if res.validated:
        vt = Table(title=f"measured on {res.device}", title_justify="left")
        for col in ("arch", "predicted ms", "measured ms", "error"):
            vt.add_column(col, justify="left" if col == "arch" else "right")
        for v in res.validated:
            err = v.rel_error
            vt.add_row(v.arch, f"{v.predicted_ms:.4g}", "-" if v.measured_ms is None else f"{v.measured_ms:.4g}"
                       + (" (unstable)" if v.unstable else ""),
                       v.error or ("-" if err is None else f"{100 * err:+.1f}%"))
        con.print(vt)
        ok = sum(1 for v in res.validated if v.rel_error is not None and abs(v.rel_error) <= 0.10)
        con.print(f"{ok} of {len(res.validated)} measured within ±10% of predicted")
    con.print(f"wrote {run_dir}/ (pareto.csv, pareto.json, pareto.png, best.json, best.onnx)")


def _num(x: float | None, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)
