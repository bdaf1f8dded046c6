"""What every compress command hands back: :class:`CompressReport`, its run directory, its table.

A run directory holds::

    DIR/model.onnx               the compressed model
    DIR/report.json              CompressReport.to_json() (the --json object)
    DIR/accuracy_latency.png     accuracy against measured latency along the way (original → …)
    DIR/accuracy_latency.csv     the numbers plotted

:func:`run_directory` makes it all-or-nothing: the folder appears for the run and is removed
again (an overwritten one put back) when the run fails; each file is written atomically.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import secrets
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from farm.errors import InputError
from nas.report import atomic_write

__all__ = ["Point", "CompressReport", "check_run_dir", "run_directory", "write_report", "accuracy_latency_figure",
           "print_report", "MODEL_FILE", "REPORT_FILE", "FIGURE_FILE", "POINTS_FILE"]

MODEL_FILE = "model.onnx"
REPORT_FILE = "report.json"
FIGURE_FILE = "accuracy_latency.png"
POINTS_FILE = "accuracy_latency.csv"


def _num(x: float | None, digits: int = 6) -> float | None:
    """A JSON-safe number: None for None, NaN and infinities."""
    if x is None or not math.isfinite(x):
        return None
    return round(float(x), digits)


@dataclass(frozen=True)
class Point:
    """One model along the way: its held-out accuracy (%) and latency on the device (ms)."""

    label: str  # "original", "int8", "pruned 1", ...
    accuracy: float
    latency_ms: float | None
    size_kb: float
    measured: bool  # latency_ms is a farm measurement (else a prediction, or None)

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "accuracy": _num(self.accuracy, 4), "latency_ms": _num(self.latency_ms),
                "size_kb": _num(self.size_kb, 2), "measured": self.measured}


@dataclass(frozen=True)
class CompressReport:
    """A compress run's outcome. Latencies are farm measurements when ``measured`` (on a
    simulated device when ``simulated``), else the device predictor's, else None.
    ``speedup`` is latency before / after: on a real device from paired rounds
    (:func:`farm.compare`), with its 95% interval ``speedup_ci95``."""

    model: str  # the compressed model's path
    original: str
    device: str
    data: str
    method: str  # "int8", ...
    accuracy_before: float
    accuracy_after: float
    latency_ms_before: float | None
    latency_ms_after: float | None
    measured: bool
    speedup: float | None
    size_kb_before: float
    size_kb_after: float
    simulated: bool = False
    speedup_ci95: tuple[float, float] | None = None
    pairs: int | None = None  # paired rounds the speedup rests on
    predicted_ms_before: float | None = None
    predicted_ms_after: float | None = None
    bundle: str | None = None  # the predictor bundle that made the predictions
    run_dir: str | None = None
    points: tuple[Point, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)  # the method's own record (calibration, ...)

    @property
    def accuracy_drop(self) -> float:
        """Points of held-out accuracy lost (negative: gained)."""
        return self.accuracy_before - self.accuracy_after

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` object: the contract's keys first (only ever added to)."""
        ci = self.speedup_ci95
        return {
            "model": self.model, "accuracy_before": _num(self.accuracy_before, 4),
            "accuracy_after": _num(self.accuracy_after, 4), "latency_ms_before": _num(self.latency_ms_before),
            "latency_ms_after": _num(self.latency_ms_after), "measured": self.measured,
            "speedup": _num(self.speedup, 4), "size_kb_before": _num(self.size_kb_before, 2),
            "size_kb_after": _num(self.size_kb_after, 2),
            "accuracy_drop": _num(self.accuracy_drop, 4), "method": self.method, "device": self.device,
            "simulated": self.simulated, "data": self.data, "original": self.original,
            "speedup_ci95": [_num(ci[0], 4), _num(ci[1], 4)] if ci is not None else None, "pairs": self.pairs,
            "predicted_ms_before": _num(self.predicted_ms_before), "predicted_ms_after": _num(self.predicted_ms_after),
            "bundle": self.bundle, "run_dir": self.run_dir, "points": [p.to_json() for p in self.points],
            "details": dict(self.details),
        }


# ---------------------------------------------------------------------------- the run directory


def check_run_dir(path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """``path`` if a run may be written there (nothing is written): InputError for a file, or
    for a non-empty folder unless ``overwrite``."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise InputError(f"--out {p}: exists and is not a folder")
    if p.is_dir() and any(p.iterdir()) and not overwrite:
        raise InputError(f"--out {p}: folder exists and is not empty (pass --overwrite, or choose another --out)")
    return p


@contextmanager
def run_directory(path: str | os.PathLike[str], *, overwrite: bool = False) -> Iterator[Path]:
    """The run's folder, created on entry. If the block raises, the folder is removed and an
    overwritten one put back; on success an overwritten one is deleted."""
    p = check_run_dir(path, overwrite=overwrite)
    old: Path | None = None
    if p.is_dir() and any(p.iterdir()):
        old = p.parent / f".{p.name}.{os.getpid()}-{secrets.token_hex(4)}.old"
        os.rename(p, old)
    existed = p.is_dir()
    try:
        p.mkdir(parents=True, exist_ok=True)
        yield p
    except BaseException:
        if existed:  # an empty folder the user made: empty it again
            for child in p.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        else:
            shutil.rmtree(p, ignore_errors=True)
        if old is not None:
            os.rename(old, p)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def accuracy_latency_figure(report: CompressReport) -> Any:
    """Held-out accuracy against latency on the device, one point per model along the way,
    joined in order and labelled. Data in, ``Figure`` out; the caller saves it."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=120)
    ax = fig.add_subplot()
    pts = [(p, p.latency_ms) for p in report.points if p.latency_ms is not None]
    if pts:
        ax.plot([ms for _, ms in pts], [p.accuracy for p, _ in pts], "-", color="0.6", lw=1, zorder=1)
        for i, (p, ms) in enumerate(pts):
            ax.scatter([ms], [p.accuracy], s=50, color=f"C{i}", marker="o" if p.measured else "^",
                       zorder=2, label=f"{p.label} ({'measured' if p.measured else 'predicted'})")
            ax.annotate(p.label, (ms, p.accuracy), textcoords="offset points", xytext=(6, 6), fontsize=9)
        ax.legend(loc="lower right", fontsize=8)
        ax.margins(x=0.2, y=0.4)
        lo, hi = ax.get_ylim()
        if hi > 100:  # accuracy is a percentage: no room above 100 that no point can reach
            ax.set_ylim(lo, 100.0 + 0.05 * (100.0 - lo))
    else:
        ax.text(0.5, 0.5, f"no latency of {report.device} (device unreachable, no predictor)", ha="center",
                va="center", transform=ax.transAxes)
    kind = "simulated" if report.simulated else "measured" if report.measured else "predicted"
    ax.set_xlabel(f"latency on {report.device} (ms, {kind})")
    ax.set_ylabel(f"held-out accuracy on {report.data} (%)")
    title = f"{report.method}: {Path(report.original).name}"
    if report.speedup is not None:
        title += f" — {report.speedup:.2f}x"
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig


def write_report(report: CompressReport, run_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``report.json``, the figure and its numbers into ``run_dir``; the paths by role."""
    d = Path(run_dir)
    out = {"report": d / REPORT_FILE, "figure": d / FIGURE_FILE, "points": d / POINTS_FILE}
    atomic_write(out["report"], (json.dumps(report.to_json(), indent=1) + "\n").encode())
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(("label", "accuracy", "latency_ms", "size_kb", "measured"))
    for p in report.points:
        j = p.to_json()
        w.writerow(["" if j[k] is None else j[k] for k in ("label", "accuracy", "latency_ms", "size_kb", "measured")])
    atomic_write(out["points"], buf.getvalue().encode())
    png = io.BytesIO()
    accuracy_latency_figure(report).savefig(png, format="png")
    atomic_write(out["figure"], png.getvalue())
    return out


# ---------------------------------------------------------------------------- the terminal table


def _ms(x: float | None) -> str:
    return "—" if x is None else f"{x:.4g}"


def print_report(con: Console, report: CompressReport) -> None:
    """The before/after table and a summary line."""
    from rich.markup import escape
    from rich.table import Table

    kind = "simulated" if report.simulated else "measured" if report.measured else "predicted"
    t = Table(title=escape(f"{report.method} on {report.device} ({kind})"), title_justify="left")
    t.add_column("model")
    t.add_column("accuracy %", justify="right")
    t.add_column("latency ms", justify="right")
    if report.predicted_ms_after is not None and report.measured:
        t.add_column("predicted ms", justify="right")
    t.add_column("size KB", justify="right")
    rows = ((report.points[0].label if report.points else "original", report.accuracy_before,
             report.latency_ms_before, report.predicted_ms_before, report.size_kb_before),
            (report.points[-1].label if report.points else report.method, report.accuracy_after,
             report.latency_ms_after, report.predicted_ms_after, report.size_kb_after))
    for label, acc, ms, pred, kb in rows:
        cells = [label, f"{acc:.2f}", _ms(ms)]
        if report.predicted_ms_after is not None and report.measured:
            cells.append(_ms(pred))
        cells.append(f"{kb:.1f}")
        t.add_row(*(escape(c) for c in cells))
    con.print(t)
    parts = []
    if report.speedup is not None:
        ci = report.speedup_ci95
        parts.append(f"speedup {report.speedup:.2f}x" + (f" (95% CI {ci[0]:.2f}–{ci[1]:.2f}, {report.pairs} paired "
                                                          f"rounds)" if ci is not None else f" ({kind})"))
    parts.append(f"accuracy {report.accuracy_before:.2f} → {report.accuracy_after:.2f} % "
                 f"({report.accuracy_after - report.accuracy_before:+.2f} points)")
    parts.append(f"size {report.size_kb_before:.1f} → {report.size_kb_after:.1f} KB "
                 f"({report.size_kb_before / max(report.size_kb_after, 1e-9):.1f}x smaller)")
    con.print(escape("; ".join(parts)))
    if report.speedup is not None and report.speedup < 1:
        con.print(f"[yellow]{escape(f'the {report.method} model is slower on {report.device}')}[/yellow]")
    if report.run_dir:
        con.print(escape(f"wrote {report.run_dir}"), highlight=False)
