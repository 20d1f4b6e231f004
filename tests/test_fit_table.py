"""The fit table: a further fit is one entry, and the assets, checks, lineage and release
follow it.

The third fit here (beside the two publishing fits) is a figures-only fit with a config
file of its own: the local fit's package and settings, fitted on its own and released with
its figures, publishing no files of its own. The shipped table's held-out twins are such
fits too, sharing their twin's config and rerunning its settings.
"""

from dataclasses import replace

import numpy as np
import pytest
from dagster import (
    AssetCheckKey,
    AssetCheckSeverity,
    AssetKey,
    AssetSelection,
    Definitions,
    define_asset_job,
)
from factories import artifact_tree

from assets.definitions import make_definitions
from pipeline.config import Profile, load_profile
from pipeline.core.fit_table import (
    FITS,
    LOCAL,
    LOCAL_HELDOUT,
    NATIONAL,
    NATIONAL_HELDOUT,
    Fit,
    TargetConfig,
)
from pipeline.core.layout import WEIGHTS, Layout
from pipeline.core.lineage import parents, recorded_parents
from pipeline.core.report import GateReport, Rule
from pipeline.release.gates import CURRENT_RELEASE, gate_table
from pipeline.release.judges import GateContext
from pipeline.release.promotion import release_files
from pipeline.release.verdicts import GateError, require_all_passed, run_gate
from pipeline.release.versions import current_release

HELDOUT = Fit(
    name="heldout", weights="heldout_weights",
    config=TargetConfig("heldout_target_config", "targets_heldout.yaml", "targets_heldout.yaml",
                        LOCAL.config.source_field, LOCAL.config.env, LOCAL.config.default),
    section=LOCAL.section, preset=LOCAL.preset, records=None, review="heldout_fit_review",
    release_dir="heldout_weights", manifest_key="heldout_fit", publishes=None,
    allocation=False, description="The local fit again, released for its figures only.")
TWO = (LOCAL, NATIONAL)
THREE = (*TWO, HELDOUT)


def test_every_fit_has_its_profile_section_with_its_preset_and_budget():
    for fit in FITS:
        default = Profile.model_fields[fit.section].default
        assert (default.preset, default.records) == (fit.preset, fit.records)
        assert load_profile("ci").fit_params(fit) == getattr(load_profile("ci"), fit.section)
    names = [(f.name, f.weights, f.review, f.release_dir, f.manifest_key) for f in FITS]
    assert all(len(set(column)) == len(FITS) for column in zip(*names, strict=True))


def test_a_third_fit_gets_its_parents_and_gate_and_stays_out_of_the_files():
    table = parents(THREE)
    assert table["heldout_weights"] == ("calibration_package", "heldout_target_config")
    # It publishes nothing: the files descend from the other two only; validation (on the
    # matrix for a figures-only fit) descends from it too.
    assert table["stacked_h5s"] == parents(TWO)["stacked_h5s"]
    assert table["validation_results"] == (
        *parents(TWO)["validation_results"][:3], "heldout_target_config", "stacked_h5s",
        "heldout_weights")
    gates = {g.name: g for g in gate_table(THREE)}
    assert gates["heldout_fit_review"].subject == "heldout_weights"
    assert gates["heldout_fit_review"].inputs == (
        "calibration_package", "heldout_target_config", "heldout_weights", CURRENT_RELEASE)
    assert "heldout_target_config" in gates["package_validity"].inputs
    assert "heldout_weights" not in gates["xw_consistency"].inputs
    assert "heldout_weights" in gates["simulation_quality"].inputs
    assert len(gates) == len(gate_table(TWO)) + 1


def test_the_held_out_twins_rerun_their_fits_and_are_judged_by_gate_2():
    """Each published fit has a held-out twin: its config, settings and package, the split
    held out; the twin descends from the fit it reruns, publishes nothing, and its figures
    reach gate 2 through validation."""
    assert FITS == (LOCAL, NATIONAL, LOCAL_HELDOUT, NATIONAL_HELDOUT)
    table = parents()
    for fit, twin in ((LOCAL_HELDOUT, LOCAL), (NATIONAL_HELDOUT, NATIONAL)):
        assert fit.holds_out_split and not twin.holds_out_split and fit.publishes is None
        assert (fit.config, fit.section, fit.records) == (twin.config, twin.section,
                                                          twin.records)
        assert table[fit.weights] == ("calibration_package", twin.config.asset, twin.weights)
        assert fit.weights not in table["stacked_h5s"]
        assert fit.weights in table["validation_results"]
    gates = {g.name: g for g in gate_table()}
    assert set(gates) >= {"local_heldout_fit_review", "national_heldout_fit_review"}
    assert {"local_heldout_weights", "national_heldout_weights"} <= set(
        gates["simulation_quality"].inputs)


def test_a_third_fit_is_released_and_its_lineage_checked(tmp_path):
    layout = artifact_tree(tmp_path, THREE)
    files = release_files(layout, THREE)
    assert files["heldout_weights/weights.npy"] == layout.weights(HELDOUT)
    assert files["targets_heldout.yaml"] == layout.target_config(HELDOUT.config)
    ctx = GateContext(layout, load_profile("ci").gates, fits=THREE)
    for gate in gate_table(THREE):
        run_gate(replace(gate, judge=lambda _: GateReport.of([Rule("r", True, "stub")])), ctx)
    assert [v.gate for v in require_all_passed(layout, THREE).verdicts] == [
        g.name for g in gate_table(THREE)]
    layout.target_config(HELDOUT.config).write_text("exclude: [{variable: snap}]\n")
    with pytest.raises(GateError) as info:
        require_all_passed(layout, THREE)
    assert "heldout_weights was not built from the current heldout_target_config" in str(
        info.value)
    assert "heldout_fit_review: judged other heldout_target_config" in str(info.value)


def test_a_third_fit_gets_its_assets_check_and_launchpad():
    defs = make_definitions(profile="ci", fits=THREE)
    graph = defs.resolve_asset_graph()
    assert {AssetKey("heldout_target_config"), AssetKey("heldout_weights")} <= set(
        graph.get_all_asset_keys())
    assert graph.get(AssetKey("heldout_weights")).parent_keys == {
        AssetKey("calibration_package"), AssetKey("heldout_target_config")}
    assert AssetKey("heldout_weights") in graph.get(AssetKey("validation_results")).parent_keys
    assert AssetCheckKey(AssetKey("heldout_weights"), "heldout_fit_review") in (
        graph.asset_check_keys)
    ops = defs.resolve_job_def("refit").run_config_schema.config_type.fields["ops"]
    fields = ops.config_type.fields["heldout_weights"].config_type.fields["config"]
    shown = {k: f.default_value for k, f in fields.config_type.fields.items()}
    assert shown == {k: getattr(load_profile("ci").fit, k) for k in shown}


@pytest.mark.slow
@pytest.mark.e2e
def test_a_third_fit_is_fitted_reviewed_and_released_through_dagster(world):
    """On the built ci world: install the third config, fit it, review it (and re-judge
    what judged against the previous CURRENT), then promote a release holding all three."""
    defs = make_definitions(profile="ci", storage_root=str(world.root),
                            target_config_path=str(world.config), device="cpu",
                            dask="inprocess", fits=THREE)
    judged = [AssetCheckKey(AssetKey(f.weights), f.review) for f in TWO] + [
        AssetCheckKey(AssetKey("calibration_package"), "package_validity"),
        AssetCheckKey(AssetKey("validation_results"), "simulation_quality")]
    # A fit that publishes nothing is validated on the matrix: validation runs again.
    job = define_asset_job("third_fit", selection=AssetSelection.assets(
        "heldout_target_config", "heldout_weights", "validation_results")
        | AssetSelection.checks(*judged))
    fitted = Definitions.merge(defs, Definitions(jobs=[job])).resolve_job_def(
        "third_fit").execute_in_process(instance=world.instance, raise_on_error=False)
    assert fitted.success
    evaluations = fitted.get_asset_check_evaluations()
    checks = {e.check_name: e.passed for e in evaluations
              if e.severity == AssetCheckSeverity.ERROR}
    assert len(checks) == 5 and all(checks.values()) and "heldout_fit_review" in checks
    # The third config has its own hierarchy warning (non-blocking), like the other two.
    [warning] = [e for e in evaluations if e.severity == AssetCheckSeverity.WARN]
    assert (warning.check_name, warning.asset_key) == ("target_hierarchy",
                                                       AssetKey("heldout_target_config"))

    previous = current_release(world.root)
    promoted = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=world.instance, raise_on_error=False,
        asset_selection=[AssetKey("promoted_release")])
    assert promoted.success
    release = current_release(world.root)
    assert release.version != previous.version
    layout = Layout(world.root)
    weights = layout.weights(HELDOUT).read_bytes()
    assert (release.path / "heldout_weights" / WEIGHTS).read_bytes() == weights
    assert (release.path / "targets_heldout.yaml").read_text() == world.config.read_text()
    kept = int((np.load(layout.weights(HELDOUT)) > 0).sum())
    assert release.manifest["heldout_fit"]["records_kept"] == kept > 0
    assert release.manifest["gates"]["heldout_fit_review"]["passed"]
    # The local fit's package, settings and config: its weights, bit for bit.
    assert weights == (release.path / WEIGHTS).read_bytes()
    recorded = recorded_parents(layout, "heldout_weights", THREE)
    assert recorded == {p: release.manifest["lineage"][p]
                        for p in ("calibration_package", "heldout_target_config")}
