"""Plots as self-contained SVG files, without a plotting library (nothing to install, the same
bytes for the same data): for the results people would rather look at than read.

- :func:`scatter`: predicted against measured latency on log-log axes, the ±10% band shaded,
  each point coloured by whether it lands in the band and titled with its model
  (``hwfarm predictor eval --plot``).
- :func:`curve`: metrics against shot counts, one line per series, optional ±std bars
  (``hwfarm predictor bench --plot``).
- :func:`check_path` / :func:`write_svg`: the output path is checked before any work, and the
  file is written whole or not at all.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from farm.errors import InputError

__all__ = ["Series", "check_path", "curve", "scatter", "write_svg", "IN_BAND", "OUT_OF_BAND"]

W, H = 640, 480
LEFT, RIGHT, TOP, BOTTOM = 72, 24, 48, 56  # margins around the plot area
IN_BAND, OUT_OF_BAND = "#2b8a3e", "#c92a2a"
PALETTE = ("#1c7ed6", "#e8590c", "#7048e8", "#2b8a3e", "#c2255c")
FONT = 'font-family="sans-serif" font-size="12"'
TITLE_FONT = 'font-family="sans-serif" font-size="14" font-weight="bold"'


def check_path(path: str | Path) -> Path:
    """The plot's path, or a one-line error: it must end in ``.svg`` and its folder must exist."""
    p = Path(path)
    if p.suffix.lower() != ".svg":
        raise InputError(f"--plot {p}: plots are written as SVG; give a path ending in .svg")
    if not p.parent.is_dir():
        raise InputError(f"--plot {p}: folder {p.parent} does not exist")
    return p


def write_svg(path: str | Path, svg: str) -> Path:
    """Write ``svg`` to ``path`` whole (a temporary file beside it, then a rename)."""
    p = check_path(path)
    tmp = p.with_name(f".{p.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(svg, encoding="utf-8")
        os.replace(tmp, p)
    finally:
        tmp.unlink(missing_ok=True)
    return p


# ------------------------------------------------------------------ axes


@dataclass(frozen=True)
class _Axis:
    lo: float
    hi: float
    log: bool
    px0: float  # pixel of lo
    px1: float  # pixel of hi

    def __call__(self, v: float) -> float:
        if self.log:
            t = (math.log10(v) - math.log10(self.lo)) / (math.log10(self.hi) - math.log10(self.lo))
        else:
            t = (v - self.lo) / (self.hi - self.lo)
        return self.px0 + t * (self.px1 - self.px0)


def _log_range(values: Sequence[float]) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    if lo <= 0:
        raise ValueError("log axis: values must be positive")
    if hi / lo < 1.5:  # a narrow range still gets room around it
        mid = math.sqrt(lo * hi)
        lo, hi = mid / 1.5, mid * 1.5
    return lo / 1.15, hi * 1.15


def _log_ticks(lo: float, hi: float) -> list[float]:
    """1-2-5 ticks inside [lo, hi]: thinned to decades when there are too many, every 1..9 when
    the range is too narrow for three."""
    decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
    for mantissas in ((1, 2, 5), tuple(range(1, 10))):
        ticks = [t for t in (float(f"{m}e{e}") for e in decades for m in mantissas) if lo <= t <= hi]
        if len(ticks) >= 3:
            break
    if len(ticks) > 9:
        ticks = [t for t in ticks if math.isclose(t, 10.0 ** round(math.log10(t)))]
    return ticks


def _linear_ticks(lo: float, hi: float, n: int = 6) -> list[float]:
    raw = (hi - lo) / n
    step = min((m * 10.0 ** math.floor(math.log10(raw)) for m in (1, 2, 5, 10)), key=lambda s: abs(s - raw))
    first = math.ceil(lo / step - 1e-9) * step
    return [round(first + i * step, 12) for i in range(int((hi - first) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    return f"{v:g}"


class _Canvas:
    def __init__(self, title: str, subtitle: str = "", desc: str = "") -> None:
        self.parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}">',
                      f'<desc>{escape(desc or title)}</desc>',
                      f'<rect width="{W}" height="{H}" fill="white"/>',
                      f'<text x="{LEFT}" y="20" {TITLE_FONT}>{escape(title)}</text>']
        if subtitle:
            self.parts.append(f'<text x="{LEFT}" y="37" {FONT} fill="#495057">{escape(subtitle)}</text>')

    def add(self, element: str) -> None:
        self.parts.append(element)

    def axes(self, x: _Axis, y: _Axis, xticks: Sequence[float], yticks: Sequence[float],
             xlabel: str, ylabel: str) -> None:
        x0, x1, y0, y1 = x.px0, x.px1, y.px0, y.px1
        for t in yticks:
            py = y(t)
            self.add(f'<line x1="{x0:.1f}" y1="{py:.1f}" x2="{x1:.1f}" y2="{py:.1f}" stroke="#e9ecef"/>')
            self.add(f'<text x="{x0 - 6:.1f}" y="{py + 4:.1f}" {FONT} text-anchor="end">{_fmt(t)}</text>')
        for t in xticks:
            px = x(t)
            label = _fmt(t)
            self.add(f'<line x1="{px:.1f}" y1="{y0:.1f}" x2="{px:.1f}" y2="{y1:.1f}" stroke="#e9ecef"/>')
            self.add(f'<text x="{px:.1f}" y="{y0 + 18:.1f}" {FONT} text-anchor="middle">{escape(label)}</text>')
        self.add(f'<rect x="{x0:.1f}" y="{y1:.1f}" width="{x1 - x0:.1f}" height="{y0 - y1:.1f}" '
                 'fill="none" stroke="#868e96"/>')
        self.add(f'<text x="{(x0 + x1) / 2:.1f}" y="{H - 14}" {FONT} text-anchor="middle">{escape(xlabel)}</text>')
        cy = (y0 + y1) / 2
        self.add(f'<text x="18" y="{cy:.1f}" {FONT} text-anchor="middle" '
                 f'transform="rotate(-90 18 {cy:.1f})">{escape(ylabel)}</text>')

    def svg(self) -> str:
        return "\n".join([*self.parts, "</svg>"]) + "\n"


# ------------------------------------------------------------------ the two plots


def scatter(measured: Sequence[float], predicted: Sequence[float], labels: Sequence[str], *,
            title: str, subtitle: str = "", desc: str = "", band: float = 0.10, unit: str = "ms") -> str:
    """Predicted against measured on shared log-log axes: the diagonal, the ±``band`` region
    shaded, each point green inside it and red outside, with its label as a hover title
    (``desc``: the file's description, e.g. which bundle). A point with a value ≤ 0 cannot sit
    on log axes: it is left out, and the corner's count says so."""
    if not (len(measured) == len(predicted) == len(labels)):
        raise ValueError("scatter: measured, predicted and labels must be equally long")
    points = [(m, p, name) for m, p, name in zip(measured, predicted, labels, strict=True) if m > 0 and p > 0]
    if not points:
        raise ValueError("scatter: no point with a positive measured and predicted value to draw")
    lo, hi = _log_range([v for m, p, _ in points for v in (m, p)])
    x = _Axis(lo, hi, True, LEFT, W - RIGHT)
    y = _Axis(lo, hi, True, H - BOTTOM, TOP)
    c = _Canvas(title, subtitle, desc)
    ticks = _log_ticks(lo, hi)
    c.axes(x, y, ticks, ticks, f"measured ({unit})", f"predicted ({unit})")
    grid = [lo * (hi / lo) ** (i / 32) for i in range(33)]
    upper = " ".join(f"{x(v):.1f},{y(min(v * (1 + band), hi)):.1f}" for v in grid)
    lower = " ".join(f"{x(v):.1f},{y(max(v * (1 - band), lo)):.1f}" for v in reversed(grid))
    c.add(f'<polygon points="{upper} {lower}" fill="#d3f9d8" fill-opacity="0.6" stroke="none">'
          f'<title>within ±{100 * band:g}%</title></polygon>')
    c.add(f'<line x1="{x(lo):.1f}" y1="{y(lo):.1f}" x2="{x(hi):.1f}" y2="{y(hi):.1f}" stroke="#495057" '
          'stroke-dasharray="4 3"/>')
    for m, p, name in points:
        err = p / m - 1.0
        colour = IN_BAND if abs(err) <= band else OUT_OF_BAND
        tip = f"{name}: measured {m:.4g} {unit}, predicted {p:.4g} {unit} ({100 * err:+.1f}%)"
        c.add(f'<circle cx="{x(m):.1f}" cy="{y(p):.1f}" r="4" fill="{colour}" fill-opacity="0.8" '
              f'data-error="{err:.6f}"><title>{escape(tip)}</title></circle>')
    n_in = sum(abs(p / m - 1.0) <= band for m, p, _ in points)
    left_out = len(measured) - len(points)
    c.add(f'<text x="{W - RIGHT - 8}" y="{H - BOTTOM - 10}" {FONT} text-anchor="end">'
          f'{n_in} of {len(points)} within ±{100 * band:g}%'
          + (f" ({left_out} not drawn: a value ≤ 0 has no place on log axes)" if left_out else "") + '</text>')
    return c.svg()


@dataclass
class Series:
    """One line of :func:`curve`: y values at the plot's x values, optional ± bars."""

    label: str
    y: Sequence[float]
    err: Sequence[float] | None = None


def curve(x: Sequence[float], series: Sequence[Series], *, title: str, subtitle: str = "",
          xlabel: str = "shots", ylabel: str = "", logx: bool = True) -> str:
    """Each series as a line with markers over ``x`` (a log axis by default, ticked at the x
    values themselves), its ± bars where given, and a legend."""
    if not x or not series or any(len(s.y) != len(x) or (s.err is not None and len(s.err) != len(x)) for s in series):
        raise ValueError("curve: every series needs one value (and error) per x")
    ylo = min(v - e for s in series for v, e in zip(s.y, s.err or [0.0] * len(x), strict=True))
    yhi = max(v + e for s in series for v, e in zip(s.y, s.err or [0.0] * len(x), strict=True))
    pad = max(0.05 * (yhi - ylo), 0.01)
    ylo, yhi = ylo - pad, yhi + pad
    if logx:
        xlo, xhi = _log_range(x)
    else:
        xpad = max(0.05 * (max(x) - min(x)), 0.5)
        xlo, xhi = min(x) - xpad, max(x) + xpad
    xa = _Axis(xlo, xhi, logx, LEFT, W - RIGHT)
    ya = _Axis(ylo, yhi, False, H - BOTTOM, TOP + 20)  # a legend row above the plot area
    c = _Canvas(title, subtitle)
    c.axes(xa, ya, list(x), _linear_ticks(ylo, yhi), xlabel, ylabel)
    lx = float(LEFT)
    for i, s in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        pts = " ".join(f"{xa(a):.1f},{ya(b):.1f}" for a, b in zip(x, s.y, strict=True))
        c.add(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2" '
              f'data-label={quoteattr(s.label)}/>')
        for j, (a, b) in enumerate(zip(x, s.y, strict=True)):
            px, py = xa(a), ya(b)
            if s.err is not None and s.err[j] > 0:
                c.add(f'<line x1="{px:.1f}" y1="{ya(b - s.err[j]):.1f}" x2="{px:.1f}" y2="{ya(b + s.err[j]):.1f}" '
                      f'stroke="{colour}"/>')
            tip = f"{s.label} at {_fmt(a)}: {b:.4g}" + (f" ± {s.err[j]:.3g}" if s.err is not None else "")
            c.add(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3.5" fill="{colour}"><title>{escape(tip)}</title></circle>')
        ly = TOP + 8
        c.add(f'<line x1="{lx:.1f}" y1="{ly - 4}" x2="{lx + 20:.1f}" y2="{ly - 4}" stroke="{colour}" stroke-width="2"/>')
        c.add(f'<text x="{lx + 26:.1f}" y="{ly}" {FONT}>{escape(s.label)}</text>')
        lx += 26 + 7.5 * len(s.label) + 20  # about a 12 px sans-serif character each
    return c.svg()
