"""What the Dagster UI shows: launchpad defaults, check numbers, the loss plot, automations."""

import base64
import re
from urllib.parse import unquote

import pandas as pd
import pytest
from dagster import DefaultScheduleStatus, DefaultSensorStatus

from assets.automation import DEFAULT_STATUS, automation_sensor
from assets.automation import weekly_rebuild as weekly
from assets.definitions import make_definitions
from assets.fit import applied_hyperparameters, sparsity_setting
from assets.metadata import (
    INLINE_LIMIT,
    NONE,
    check_result,
    loss_chart,
    loss_inline,
    markdown_table,
    readable,
)
from pipeline.config import load_profile
from pipeline.core.report import GateReport, Rule


@pytest.mark.parametrize("profile", ["ci", "demo"])
def test_launchpad_shows_the_profiles_fit_values(profile):
    job = make_definitions(profile=profile).resolve_job_def("refit")
    ops = job.run_config_schema.config_type.fields["ops"].config_type
    config = ops.fields["calibration_weights"].config_type.fields["config"]
    assert not config.is_required  # "Scaffold" fills it with the defaults below
    fields = config.config_type.fields
    fit = load_profile(profile).fit
    assert {k: f.default_value for k, f in fields.items()} == {
        k: getattr(fit, k) for k in fields}
    assert "device" not in fields  # CALIBRATION_DEVICE (the compute resource) decides
    assert fields["epochs"].description == ("L0 epochs (from the preset; the total when "
                                            "resuming); with stopping: converged, the most")
    assert fields["stopping"].default_value == "converged"  # fixed: production's counts
    assert fields["stop_window"].default_value == 100
    # The national fit has its own launchpad: its budget is the field a user edits.
    national = ops.fields["national_weights"].config_type.fields["config"].config_type.fields
    nat = load_profile(profile).national_fit
    assert {k: f.default_value for k, f in national.items()} == {
        k: getattr(nat, k) for k in national}
    assert national["records"].default_value == {"ci": 1000, "demo": 50_000}[profile]
    assert national["preset"].default_value == "national"
    assert national["lambda_l0"].default_value == 2e-2 and national["beta"].default_value == 0.65


def test_check_numbers_reach_the_plots_tab():
    report = GateReport.of([Rule("a", True, "ok"), Rule("b", False, "bad")],
                           {"max_rel_deviation": 1.5e-7, "targets": 3})
    metadata = check_result(report).metadata
    assert metadata["failed_rules"].value == 1.0
    assert metadata["max_rel_deviation"].value == pytest.approx(1.5e-7)
    assert type(metadata["targets"].value) is float  # a number, so Dagster plots it


def test_loss_plot_has_axes_the_handover_and_the_final_epoch():
    l0 = [100.0 / (1 + e) for e in range(300)]
    polish = [3.14159265 - e / 100 for e in range(120)]
    text = loss_chart(l0, polish)
    svg = base64.b64decode(re.search(r"base64,([^)]+)\)", text).group(1)).decode()
    assert ">epoch</text>" in svg and ">objective (log scale)</text>" in svg
    assert ">1</text>" in svg and ">100</text>" in svg  # log ticks cover the range
    assert ">420</text>" in svg  # the last epoch is an x tick
    assert 'stroke-dasharray="4 3"' in svg and "polish from epoch 301" in svg
    assert "hands over to the polish" in text and "fresh optimizer" in text
    rows = re.findall(r"^\| (\d+) \| (L0|polish) \| ([^|]+) \|$", text, re.M)
    assert rows[-1] == ("420", "polish", "1.952")  # final epoch, 4 significant digits
    assert ("300", "L0", "0.3333") in rows and ("301", "polish", "3.142") in rows


def test_loss_plot_marks_where_each_phase_converged_and_states_the_rule():
    l0 = [100.0 / (1 + e) for e in range(300)]
    polish = [3.0 - e / 100 for e in range(120)]
    stopping = {"l0": {"epochs": 300, "max_epochs": 1000, "converged_at": 300,
                       "rule": "converged: best loss of the last 100 epochs ..."},
                "polish": {"epochs": 120, "max_epochs": 500, "converged_at": 84,
                           "rule": "converged: ..., then the learning-rate decay"}}
    text = loss_chart(l0, polish, stopping)
    svg = base64.b64decode(re.search(r"base64,([^)]+)\)", text).group(1)).decode()
    assert "L0 converged at 300; polish from epoch 301" in svg
    assert "polish converged: decay" in svg
    assert "- L0 phase: 300 of at most 1,000 epochs; converged: best loss" in text
    assert "- polish: 120 of at most 500 epochs; converged: ..., then the" in text


def test_automation_defaults_are_stated_where_a_user_looks():
    [target_config_changed] = [s for s in make_definitions(profile="ci").sensors
                               if s.name == "target_config_changed"]
    assert DEFAULT_STATUS == {"weekly_rebuild": False, "automation_sensor": True,
                              "target_config_changed": True}
    assert weekly.default_status == DefaultScheduleStatus.STOPPED
    assert automation_sensor.default_status == DefaultSensorStatus.RUNNING
    assert target_config_changed.default_status == DefaultSensorStatus.RUNNING
    assert "Default OFF; turn it on" in weekly.description
    assert "`dagster sensor stop target_config_changed" in target_config_changed.description
    assert "Default ON" in automation_sensor.description


def test_metadata_reads_at_a_glance():
    """One formatter: 4 significant figures (still numbers, for the Plots tab), "—" for
    none and NaN, JSON rounded alike, tables whose cells never split on a `|`."""
    shown = readable({"mean": 2.2790804159933396e-05, "kept": 3764, "budget": None,
                      "nan": float("nan"), "params": {"lr": 0.15000000000000002,
                                                      "records": None},
                      "rules": pd.DataFrame({"rule": ["no_group_diverging"],
                                             "detail": ["mean |rel error| rose 1.23456789"]})})
    assert shown["mean"].value == 2.279e-05 and type(shown["mean"].value) is float
    assert shown["kept"].value == 3764
    assert shown["budget"].value == shown["nan"].value == NONE
    assert shown["params"].data == {"lr": 0.15, "records": None}
    table = shown["rules"].value
    assert "mean \\|rel error\\| rose 1.235 |" not in table  # numbers in text stay text
    assert table.splitlines()[-1] == "| no_group_diverging | mean \\|rel error\\| rose 1.23456789 |"
    assert markdown_table(pd.DataFrame({"x": [1234567, 0.000123456, None]})).splitlines()[2:] \
        == ["| 1,234,567 |", "| 0.0001235 |", f"| {NONE} |"]


def test_plots_are_short_enough_to_draw_in_place():
    """Dagster draws Markdown metadata inline below 1,000 characters: the loss curve of a
    1,000-epoch fit fits, with the handover dashed, and still draws both phases."""
    l0 = [0.4 * 0.99**e + 0.05 for e in range(600)]
    polish = [0.003 * 0.98**e + 4e-4 for e in range(400)]
    text = loss_inline(l0, polish)
    assert len(text) < INLINE_LIMIT
    encoded = re.search(r"\(data:image/svg\+xml(;base64)?,(.+)\)$", text)
    svg = (base64.b64decode(encoded.group(2)).decode() if encoded.group(1)
           else unquote(encoded.group(2)))
    assert svg.startswith("<svg xmlns='http://www.w3.org/2000/svg'")
    assert svg.count("stroke='royalblue'") == 1 and svg.count("stroke='darkorange'") == 1
    assert "stroke-dasharray='3'" in svg  # the polish starts here
    assert svg.count("l") > 40  # dozens of points, not a sketch


def test_check_rules_show_value_and_limit_first():
    report = GateReport.of([Rule("heldout_regression", False, "median 0.061 -> 0.088",
                                 value=0.0271234, limit=0.02)])
    metadata = check_result(report).metadata
    assert next(iter(metadata)) == "rules"
    assert ("| heldout_regression | FAIL | 0.02712 | 0.02 | median 0.061 -> 0.088 |"
            in metadata["rules"].value)


def test_a_budgeted_fit_shows_the_setting_that_applies():
    national = load_profile("ci").national_fit
    shown = applied_hyperparameters(national)
    assert shown["lambda_l0"] == "steered by records (starts at 0.02)"
    assert shown["records"] == 1000
    assert sparsity_setting(national, {"kept": 998}) == (
        "record budget 1,000 (λ_L0 steered from 0.02; 998 kept)")
    assert sparsity_setting(load_profile("ci").fit, {"kept": 3722}) == (
        "λ_L0 1e-07 (no record budget)")
