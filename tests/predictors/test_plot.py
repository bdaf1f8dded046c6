"""The SVG plots: valid XML, points where their values put them, colours and titles that say
what the numbers say, and paths checked before any work."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from farm.errors import InputError
from predictors.plot import IN_BAND, OUT_OF_BAND, Series, check_path, curve, scatter, write_svg

NS = "{http://www.w3.org/2000/svg}"


def _root(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # raises on anything that is not well-formed XML


def _axes_box(root: ET.Element) -> tuple[float, float, float, float]:
    box = next(r for r in root.iter(f"{NS}rect") if r.get("fill") == "none")
    x, y, w, h = (float(box.get(k)) for k in ("x", "y", "width", "height"))
    return x, x + w, y + h, y  # x0, x1, y0 (bottom), y1 (top)


def test_scatter_places_and_colours_each_model():
    measured = [1.0, 2.0, 4.0, 8.0]
    predicted = [1.05, 2.0, 5.0, 7.0]  # +5%, 0%, +25%, -12.5%
    names = ["a", "b <&> \"c\"", "d", "e"]
    root = _root(scatter(measured, predicted, names, title="dev: predicted vs measured", subtitle="4 models"))
    pts = root.findall(f"{NS}circle")
    assert [p.get("fill") for p in pts] == [IN_BAND, IN_BAND, OUT_OF_BAND, OUT_OF_BAND]
    assert [p[0].text.split(":")[0] for p in pts] == names  # escaped in the file, the same text when read
    assert "+25.0%" in pts[2][0].text and "-12.5%" in pts[3][0].text
    cx = [float(p.get("cx")) for p in pts]
    cy = [float(p.get("cy")) for p in pts]
    assert cx == sorted(cx) and len(set(cx)) == 4  # larger measured, further right
    assert cy[2] < cy[1]  # larger predicted, higher
    # shared log axes: a point with predicted == measured sits on the diagonal, and equal ratios
    # are equal distances
    x0, x1, y0, y1 = _axes_box(root)
    assert (cx[1] - x0) / (x1 - x0) == pytest.approx((y0 - cy[1]) / (y0 - y1), abs=2e-3)
    assert cx[2] - cx[1] == pytest.approx(cx[1] - cx[0], abs=0.15)
    assert any(t.text == "2 of 4 within ±10%" for t in root.iter(f"{NS}text"))


def test_scatter_ticks_and_narrow_ranges():
    root = _root(scatter([30.0, 120.0], [33.0, 118.0], ["x", "y"], title="t"))
    ticks = {t.text for t in root.iter(f"{NS}text")}
    assert {"50", "100"} <= ticks and "40" in ticks  # under a decade: ticks at every 1..9
    root = _root(scatter([0.01, 500.0], [0.012, 450.0], ["x", "y"], title="t"))
    ticks = {t.text for t in root.iter(f"{NS}text")}
    assert {"0.1", "1", "10", "100"} <= ticks and "2" not in ticks  # many decades: decades only
    _root(scatter([1.0], [1.0], ["same"], title="one point"))  # a single point still gets axes


@pytest.mark.parametrize("args", [([], [], []), ([1.0], [1.0, 2.0], ["a"]), ([0.0], [1.0], ["a"]), ([1.0], [-1.0], ["a"])])
def test_scatter_refuses_what_it_cannot_draw(args):
    with pytest.raises(ValueError):
        scatter(*args, title="t")


def test_scatter_leaves_out_and_counts_values_log_axes_cannot_hold():
    root = _root(scatter([1.0, 2.0, 3.0], [1.0, 0.0, 3.3], ["a", "zero", "c"], title="t"))
    assert [p[0].text.split(":")[0] for p in root.findall(f"{NS}circle")] == ["a", "c"]
    assert any(t.text.startswith("2 of 2 within ±10% (1 not drawn") for t in root.iter(f"{NS}text"))


def test_curve_draws_each_series_with_its_error_bars():
    x = [10, 100, 1000]
    svg = curve(x, [Series("rho", [0.90, 0.95, 0.97], [0.02, 0.0, 0.01]), Series("tau", [0.7, 0.8, 0.85])],
                title="target: few-shot", ylabel="metric")
    root = _root(svg)
    lines = root.findall(f"{NS}polyline")
    assert [pl.get("data-label") for pl in lines] == ["rho", "tau"]
    rho = [tuple(map(float, p.split(","))) for p in lines[0].get("points").split()]
    assert [p[0] for p in rho] == sorted(p[0] for p in rho)
    assert rho[0][1] > rho[1][1] > rho[2][1]  # rising values climb (SVG's y grows downwards)
    assert rho[1][0] - rho[0][0] == pytest.approx(rho[2][0] - rho[1][0], abs=0.15)  # a log x axis
    colour = lines[0].get("stroke")
    bars = [ln for ln in root.findall(f"{NS}line") if ln.get("stroke") == colour and ln.get("x1") == ln.get("x2")]
    assert len(bars) == 2  # the zero-error point gets none
    texts = [t.text for t in root.iter(f"{NS}text")]
    assert {"10", "100", "1000", "rho", "tau", "metric", "target: few-shot"} <= set(texts)


def test_curve_refuses_mismatched_series():
    with pytest.raises(ValueError):
        curve([1, 2], [Series("a", [1.0])], title="t")
    with pytest.raises(ValueError):
        curve([1, 2], [Series("a", [1.0, 2.0], [0.1])], title="t")


def test_plot_paths_are_checked_and_written_whole(tmp_path, monkeypatch):
    with pytest.raises(InputError, match="ending in .svg"):
        check_path(tmp_path / "plot.png")
    with pytest.raises(InputError, match="does not exist"):
        check_path(tmp_path / "no" / "plot.svg")
    p = write_svg(tmp_path / "plot.svg", "<svg/>\n")
    assert p.read_text() == "<svg/>\n"
    import predictors.plot as plot

    def fail(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(plot.os, "replace", fail)
    with pytest.raises(OSError):
        write_svg(p, "<svg>new</svg>\n")
    assert p.read_text() == "<svg/>\n"  # the old plot stays whole
    assert sorted(f.name for f in tmp_path.iterdir()) == ["plot.svg"]  # no temporary left behind
