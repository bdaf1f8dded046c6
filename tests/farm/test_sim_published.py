"""Accelerator/MCU profiles calibrated on published figures: the report, the fit's
reproducibility, and the figure specs' validation."""

from __future__ import annotations

import csv
import json

import pytest

from farm.errors import InputError
from farm.sim.profile import base_profile, load_profile, profile_names
from farm.sim.published import fit_published, load_figures

from ..conftest import ROOT, run_cli

PUBLISHED = ["edgetpu", "hexagon_npu", "adreno_gpu", "jetson", "cortex_m7", "cortex_m4", "bitfusion"]
TABLE = ROOT.parent / "shared" / "data" / "published-latency" / "published_latency.csv"
needs_table = pytest.mark.skipif(not TABLE.is_file(), reason="shared published-latency table not present")


def test_every_issue_profile_ships_with_sources():
    names = set(profile_names())
    assert set(PUBLISHED) <= names
    for n in PUBLISHED:
        p = load_profile(n)
        assert p.sources and p.calibration["figures"], n
    assert load_profile("edgetpu").onchip.sram_kb == 8192  # type: ignore[union-attr]
    assert load_profile("cortex_m7").mcu.sram_kb == 1024 and load_profile("cortex_m7").mcu.flash_kb == 2048  # type: ignore[union-attr]
    assert load_profile("edgetpu").accelerator.fallback == "rest_of_graph"  # type: ignore[union-attr]


@needs_table
@pytest.mark.parametrize("name", PUBLISHED)
def test_shipped_scales_are_what_refit_gives(name):
    """`hwfarm sim calibrate --refit` is reproducible: fitting the file as written on the same
    figures gives the scale factors (and power) the file ships with."""
    base = base_profile(name)
    fitted, factors = fit_published(base, load_figures(base, TABLE))
    shipped = base.calibration["scales"]
    assert {k: round(v, 4) for k, v in factors.items() if k in shipped} == shipped
    if "static_w" in factors:
        assert round(factors["static_w"], 5) == base.power.static_w  # type: ignore[union-attr]
    shipped_kernels = load_profile(name).kernels
    for cls, cost in fitted.kernels.items():
        for term in ("gmacs", "gbs", "overhead_us"):
            assert getattr(cost, term) == pytest.approx(getattr(shipped_kernels[cls], term), rel=1e-3), (cls, term)


@needs_table
def test_calibrate_reports_every_figure_against_the_published_table():
    p = run_cli("sim", "calibrate", "-p", "cortex_m4", "-p", "edgetpu", "--json", "--published", str(TABLE))
    assert p.returncode == 0, p.stderr
    reports = {r["profile"]: r for r in json.loads(p.stdout)["profiles"]}
    with open(TABLE, newline="") as f:
        rows = list(csv.DictReader(f))
    m4 = reports["cortex_m4"]
    assert m4["n_figures"] == 4 and len(m4["figures"]) == 4
    kws = next(r for r in rows if r["device_class"] == "mcu_cortex_m4" and "v9.0" in r["runtime"]
               and r["model"].startswith("Keyword"))
    fig = m4["figures"][0]
    assert fig["published_ms"] == pytest.approx(float(kws["latency_ms"]), abs=1e-4)
    assert fig["published_mj"] == pytest.approx(float(kws["energy_mj"]), abs=1e-4)
    assert fig["error"] == pytest.approx((fig["simulated_ms"] - fig["published_ms"]) / fig["published_ms"], abs=1e-3)
    assert m4["mape"] < 0.25 and m4["energy_mape"] < 0.25
    assert reports["edgetpu"]["n_figures"] == 4 and reports["edgetpu"]["mape"] < 0.3
    text = run_cli("sim", "calibrate", "-p", "bitfusion")
    assert text.returncode == 0 and "bitfusion (bitfusion-isca2018): 12 figures" in text.stdout


@needs_table
def test_a_figure_row_matching_nothing_is_a_one_line_input_error():
    base = base_profile("cortex_m4")
    bad_row = base.model_copy(update={"calibration": {"figures": [{"net": "resnet8", "row": {"device_class": "nope"}}]}})
    with pytest.raises(InputError, match="figure #1: 'row' .* matches 0 rows"):
        load_figures(bad_row, TABLE)


def test_bad_figure_specs_are_one_line_input_errors(tmp_path):
    base = base_profile("cortex_m4")
    no_source = base.model_copy(update={"calibration": {"figures": [{"net": "resnet8", "value": {"latency_ms": 1}}]}})
    with pytest.raises(InputError, match="needs its 'source'"):
        load_figures(no_source, None)
    unknown = base.model_copy(update={"calibration": {"figures": [{"net": "resnet9", "value": {"latency_ms": 1}}]}})
    with pytest.raises(InputError):
        load_figures(unknown, None)


def test_profile_without_a_target_is_refused():
    p = run_cli("sim", "calibrate", "-p", "nope")
    assert p.returncode == 2 and "unknown simulator profile 'nope'" in p.stderr


@needs_table
def test_nb201_cpu_profiles_carry_published_checks_not_fits():
    from farm.cli.sim import _check_published

    r = _check_published("raspi4", TABLE)
    assert r["target"].endswith("(check, not fitted)") and r["n_figures"] == 4
    assert [f["published_ms"] for f in r["figures"]] == [124.32, 534.11, 61.17, 262.83]  # ncnn rows of the table
    assert "scales" not in load_profile("raspi4").calibration  # NB201 fit untouched by the checks
