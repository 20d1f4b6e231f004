"""End to end through Dagster on the `ci` profile: build, gate, promote, refit, refuse, roll back.

The full rebuild runs once per session (`built_world`); every test that changes anything
works on its own copy (`world`), so the tests run in any order.
"""

import json
import re
import shutil

import h5py
import numpy as np
import pytest
from conftest import World
from dagster import (
    AssetCheckKey,
    AssetCheckSeverity,
    AssetKey,
    AssetSelection,
    DagsterInstance,
    build_sensor_context,
    evaluate_automation_conditions,
)

from assets.run import main as make_run
from pipeline.cli import main as calibrate
from pipeline.core.layout import Layout
from pipeline.release.promotion import promote_release
from pipeline.release.verdicts import GateError
from pipeline.release.versions import current_release, list_releases
from pipeline.validate.totals import read_validation_csv

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

GATES = {"target_db_integrity", "package_validity", "fit_review", "national_fit_review",
         "local_heldout_fit_review", "national_heldout_fit_review", "structural_sanity",
         "xw_consistency", "simulation_quality"}


def _checks(result):
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def _materializations(world, name):
    return len(world.instance.fetch_materializations(AssetKey(name), limit=100).records)


def _metadata(result, name):
    [event] = list(result.asset_materializations_for_node(name))
    return {k: v.value for k, v in event.metadata.items()}


def _promoted(result):
    return "promoted_release" in {
        e.asset_key.path[-1] for e in result.get_asset_materialization_events()}


def test_full_rebuild_promotes_behind_passed_gates(built_world):
    result = built_world.result
    assert result.success
    # Every gate passed; the hierarchy warning (one per target config) fails on the one
    # conflict no reconcile rule resolves, and blocks nothing.
    assert _checks(result) == {**dict.fromkeys(GATES, True), "target_hierarchy": False}
    warnings = {e.asset_key.path[-1]: e for e in result.get_asset_check_evaluations()
                if e.check_name == "target_hierarchy"}
    assert set(warnings) == {"target_config", "national_target_config"}
    local = warnings["target_config"]
    assert local.severity == AssetCheckSeverity.WARN
    [worst] = local.metadata["details"].value["unresolved"]
    assert (worst["parent_id"], worst["variable"], worst["child_level"]) == (
        "US", "tax_unit_count", "state")  # SOI: returns with AGI < $1, nation vs states
    # USDA-vs-ACS SNAP households: scaled by the config's rule, so no longer a warning.
    assert local.description.startswith("1 conflict no reconcile rule resolves")
    assert "46 resolved by the config's reconcile rules" in local.description
    release = current_release(built_world.root)
    assert release is not None and set(release.manifest["gates"]) == GATES
    assert all(g["passed"] for g in release.manifest["gates"].values())
    # Every verdict was about exactly the artifacts released (one lineage).
    lineage = release.manifest["lineage"]
    for gate in release.manifest["gates"].values():
        assert all(lineage[k] == v for k, v in gate["inputs"].items())
    # Four states: a file each, five districts (RI has two), one national file.
    files = release.manifest["files"]
    assert sum(f.startswith("states/") for f in files) == 4
    assert sum(f.startswith("districts/") for f in files) == 5
    assert "national.h5" in files and "validation_results.csv" in files
    assert all(len(entry["sha256"]) == 64 for entry in files.values())

    package = _metadata(result, "calibration_package")
    assert package["n_clones"] == 2 and package["columns"] == 2 * package["n_records"]
    fit = _metadata(result, "calibration_weights")
    assert fit["median_rel_error"] < 0.01
    # Readable at a glance: 4 significant figures, the plots first and drawn in place.
    assert fit["median_rel_error"] == float(f"{fit['median_rel_error']:.4g}")
    assert list(fit)[:3] == ["objective_by_epoch", "frontier", "sparsity"]
    assert len(fit["objective_by_epoch"]) < 1000 and "data:image/svg+xml" in fit[
        "objective_by_epoch"]
    assert fit["sparsity"] == "λ_L0 1e-07 (no record budget)" and fit["record_budget"] == "—"
    # The walk's tax seed is kept for the next process (a refit's first check).
    assert len(list((built_world.root / "validation_results" / "cache").glob(
        "tax_seed-*.npz"))) == 1
    assert 0 < fit["records_kept"] <= package["columns"]
    # The X·w invariant holds to float rounding, not just the 1% tolerance.
    verdict = json.loads((built_world.root / "gates" / "xw_consistency.json").read_text())
    metrics = verdict["report"]["metrics"]
    # Households (4 states, 5 districts) and the validation split are trained.
    assert metrics["local_max_rel_deviation"] < 1e-6 and metrics["local_targets"] == 268
    # Both publishing fits are checked, each against its own files.
    assert metrics["national_max_rel_deviation"] < 1e-6 and metrics["national_targets"] == 168
    # Each has a held-out twin: the same fit with the split (20 and 14 targets) held out.
    validity = json.loads((built_world.root / "gates" / "package_validity.json").read_text())
    assert "local_heldout: 248 of 276" in validity["report"]["summary"]
    assert "national_heldout: 154 of 276" in validity["report"]["summary"]


def test_national_file_comes_from_its_own_fit_under_the_budget(built_world):
    """ci: a budget of 1,000 of 4,000 columns; national.h5 holds exactly those households,
    the state and district files every record the local fit kept."""
    result = built_world.result
    national = _metadata(result, "national_weights")
    local = _metadata(result, "calibration_weights")
    assert national["record_budget"] == 1000
    assert abs(national["records_kept"] / 1000 - 1) <= 0.02
    assert national["records_kept"] < local["records_kept"]
    assert national["mean_rel_error"] < 0.01
    assert national["split_targets"] == 0  # trained: its held-out twin measures the split
    twin = _metadata(result, "national_heldout_weights")
    assert twin["split_targets"] == 14 and twin["split_mean_rel_error"] > 0
    assert twin["record_budget"] == 1000 and twin["hyperparameters"] == national[
        "hyperparameters"]
    frontier = national["frontier"]  # drawn in place: an SVG under Dagster's inline limit
    assert frontier.startswith("![") and "data:image/svg+xml" in frontier
    assert len(frontier) < 1000
    published = _metadata(result, "stacked_h5s")
    assert published["national_households"] == national["records_kept"]
    assert published["households"] == local["records_kept"]
    release = current_release(built_world.root)
    assert release.manifest["national_fit"]["records_kept"] == national["records_kept"]
    assert release.manifest["national_fit"]["hyperparameters"]["records"] == 1000
    assert (release.path / "national_weights" / "weights.npy").is_file()
    assert (release.path / "targets_national.yaml").is_file()
    run = json.loads((release.path / "national_weights" / "run_config.json").read_text())
    assert run["params"]["preset"] == "national" and "orchestration" in \
        run["params"]["preset_source"]


def test_release_validates_uprated_reconciled_targets_with_provenance(built_world):
    release = current_release(built_world.root)
    both = read_validation_csv(release.path / "validation_results.csv")
    # The published fits and their held-out twins, each validated.
    assert set(both["fit"]) == {"local", "national", "local_heldout", "national_heldout"}
    v = both[both["fit"] == "local"].set_index("target_name")
    # Delaware's one district: ACS 41,214 SNAP households, scaled to the state's USDA count
    de = v.loc["cd_1000/household_count/[snap>0]"]
    assert de["original_value"] == 41_214 and de["original_period"] == 2024
    assert de["reconcile_rule"] == "snap_households_to_usda_states"
    assert de["target_value"] == pytest.approx(v.at["state_10/household_count/[snap>0]",
                                                    "target_value"])
    # Rhode Island's TY2022 EITC, uprated to 2024
    eitc = v.loc["state_44/eitc/[eitc>0]"]
    assert (eitc["period"], eitc["original_period"]) == (2024, 2022)
    assert eitc["target_value"] == pytest.approx(eitc["original_value"]
                                                 * eitc["uprating_factor"])
    assert eitc["uprating_factor"] == pytest.approx(1.1523, abs=1e-4)
    # no national targets in ci; the split marks 10% of each variable x level group
    assert set(v["holdout_group"]) == {"", "negative_total", "validation_split"}
    assert release.manifest["heldout"]["local/negative_total"]["count"] == 4
    # The published fit trains the split; its twin holds it out and the manifest shows it.
    split = v["holdout_group"] == "validation_split"
    assert split.sum() == 20 and v.loc[split, "in_training"].all()
    assert "local/validation_split" not in release.manifest["heldout"]
    twin = both[both["fit"] == "local_heldout"].set_index("target_name")
    assert not twin.loc[split[split].index, "in_training"].any()
    assert release.manifest["heldout"]["local_heldout/validation_split"]["count"] == 20
    assert "local_heldout_fit" in release.manifest
    metadata = _metadata(built_world.result, "target_db")
    assert "household_count | snap | state vs districts | 51" in metadata["hierarchy_gaps"]
    assert "snap_households_to_usda_states | 436 |" in _metadata(
        built_world.result, "target_config")["reconciled"]


def test_config_change_refits_without_rebuilding_the_package(world):
    before_package = _materializations(world, "calibration_package")
    before_weights = _materializations(world, "calibration_weights")
    previous = current_release(world.root).version
    world.config.write_text(world.config.read_text().replace(
        "exclude:\n", "exclude:\n  - {variable: household_count, geo_level: district, "
        "domain_variable: snap}\n", 1))
    # The daemon builds only the sensor's own resources (never the run's storage lock).
    resources = {"target_config_file": world.defs.resources["target_config_file"]}
    context = build_sensor_context(instance=world.instance, resources=resources,
                                   definitions=world.defs)
    [sensor] = [s for s in world.defs.sensors if s.name == "target_config_changed"]
    request = sensor(context)
    assert request.run_key.startswith(request.tags["target_config_sha256"])
    result = world.run("refit", tags=request.tags)
    assert result.success and _promoted(result)

    assert _materializations(world, "calibration_package") == before_package
    assert _materializations(world, "calibration_weights") == before_weights + 1
    # Both fits use allocation: budget, so the refit has no allocation search to wait for.
    assert "sparsity_allocation" not in {e.step_key for e in result.all_events}
    run = json.loads((world.root / "calibration_weights" / "run_config.json").read_text())
    package = json.loads((world.root / "calibration_package" / "metadata.json").read_text())
    # ci: 4 negative totals held out, 4 state populations excluded (the national income
    # tax rule matches nothing in four states), and now the 5 districts' SNAP households
    # (the split is trained: only the held-out twin leaves it out).
    assert run["n_selected"] == package["n_targets"] - 4 - 4 - 5
    assert current_release(world.root).version != previous
    # The sensor now sees the config it refitted on and asks for nothing more.
    with build_sensor_context(instance=world.instance, resources=resources,
                              definitions=world.defs) as context:
        assert "unchanged" in sensor(context).skip_message


def test_a_record_budget_set_in_the_launchpad_reaches_national_h5(world):
    """The issue's "done when": a new budget for the national fit, re-materialized with
    what follows, gives a gated release whose national.h5 holds that many households."""
    result = world.run("refit", run_config={"ops": {"national_weights": {
        "config": {"records": 600}}}})
    assert result.success and _promoted(result), _checks(result)
    release = current_release(world.root)
    stacked = json.loads((world.root / "stacked_h5s" / "manifest.json").read_text())
    assert stacked["files"]["national.h5"]["sha256"] == release.manifest["files"][
        "national.h5"]["sha256"]  # the file released is the one counted here
    households = stacked["files"]["national.h5"]["households"]
    assert abs(households / 600 - 1) <= 0.02
    assert release.manifest["national_fit"]["hyperparameters"]["records"] == 600


def _refused_at_launch(result) -> str:
    """A run refused when it started: nothing materialized, every step it started ended at
    once with the refusal, which is the run's failure message; that message."""
    assert not result.success and not result.get_asset_materialization_events()
    failures = [e for e in result.all_events if e.is_step_failure]
    assert failures and len({f.step_failure_data.user_failure_data.description
                             for f in failures}) == 1
    [run_failure] = [e for e in result.all_events if e.is_run_failure]
    error = run_failure.event_specific_data.error
    assert error.cls_name == "Failure" and error.cause is None
    return error.message


def test_an_impossible_launchpad_budget_is_refused_before_any_step(world):
    """Checked at launch: no fit, no allocation search runs for a budget no package has."""
    message = _refused_at_launch(world.run("refit", run_config={"ops": {"national_weights": {
        "config": {"records": 10**7}}}}))
    assert ("InputError: file launchpad ops.national_weights.config, field 'records': a "
            "budget of 10,000,000 records exceeds the 4,000 columns") in message


def test_automation_promotes_once_the_blocking_checks_passed(world):
    def tick(cursor=None):
        return evaluate_automation_conditions(
            defs=world.defs, instance=world.instance,
            asset_selection=AssetSelection.assets("promoted_release"), cursor=cursor)

    idle = tick()  # nothing changed since the last release: nothing to promote
    assert idle.get_num_requested(AssetKey("promoted_release")) == 0
    built = world.materialize("calibration_weights", "stacked_h5s", "validation_results")
    assert built.success and all(_checks(built).values())
    assert tick(idle.cursor).get_num_requested(AssetKey("promoted_release")) == 1


def _failed_refit(world):
    return world.run("refit", run_config={"ops": {"calibration_weights": {
        "config": {"epochs": 3, "polish_epochs": 2}}}})


def test_failing_fit_review_blocks_promotion_also_by_hand(world):
    current = current_release(world.root).version
    n_releases = len(list_releases(world.root))
    result = _failed_refit(world)
    assert _checks(result)["fit_review"] is False and not _promoted(result)
    verdict = json.loads((world.root / "gates" / "fit_review.json").read_text())
    assert verdict["passed"] is False and "loss_converged" in verdict["summary"]
    # The run ends with the refusal in one line (a Failure), not Dagster's stack trace.
    [run_failure] = [e for e in result.all_events if e.is_run_failure]
    error = run_failure.event_specific_data.error
    assert error.cls_name == "Failure" and error.cause is None
    assert "fit_review refused: loss_converged" in error.message

    by_hand = world.materialize("promoted_release")
    assert not by_hand.success
    failure = next(e for e in by_hand.all_events if e.is_step_failure)
    assert "fit_review: FAILED" in str(failure.step_failure_data.error)
    assert current_release(world.root).version == current
    assert len(list_releases(world.root)) == n_releases


def test_truncated_h5_stops_the_run_and_spares_the_releases(world):
    current = current_release(world.root).version
    versions = [r.version for r in list_releases(world.root)]
    victim = world.root / "stacked_h5s" / "states" / "DE.h5"
    data = victim.read_bytes()
    victim.unlink()  # the release holds a hard link to the old inode: leave it intact
    victim.write_bytes(data[: len(data) // 2])
    result = world.materialize("validation_results", "promoted_release")
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "DE.h5" in str(failure.step_failure_data.error)
    assert current_release(world.root).version == current
    assert [r.version for r in list_releases(world.root)] == versions


def test_rollback_moves_current_back(world, capsys):
    assert world.run("refit", run_config={"ops": {"calibration_weights": {
        "config": {"seed": 7}}}}).success
    releases = list_releases(world.root)
    assert len(releases) == 2
    assert calibrate(["rollback", "--storage", str(world.root)]) == 0
    assert current_release(world.root).version == releases[0].version
    assert calibrate(["releases", "--storage", str(world.root)]) == 0
    listing = capsys.readouterr().out
    assert f"* {releases[0].version}" in listing and releases[1].version in listing
    for release in releases:  # every release directory is still complete
        weights = np.load(release.path / "weights.npy")
        assert np.isfinite(weights).all() and (weights >= 0).all()


def test_a_two_worker_cluster_publishes_the_same_files(built_world, tmp_path):
    """The whole ci rebuild on a 2-worker LocalCluster on loopback: the same release bytes."""
    shutil.copy(built_world.config, tmp_path / "targets.yaml")
    (tmp_path / "dagster_home").mkdir()
    instance = DagsterInstance.local_temp(tempdir=str(tmp_path / "dagster_home"))
    cluster = World(tmp_path, instance, dask="local", workers=2)
    try:
        assert cluster.run("full_rebuild").success
    finally:
        instance.dispose()
    ours = current_release(cluster.root).manifest["files"]
    theirs = current_release(built_world.root).manifest["files"]
    for files in (ours, theirs):  # a fit's record holds its paths and its speed, and the
        for fit in ("run_config.json", "national_weights/run_config.json",  # verdicts when
                    "heldout/local/run_config.json", "heldout/national/run_config.json"):
            files.pop(fit)  # they were judged and its hash
        for name in [n for n in files if n.startswith("gates/")]:
            files.pop(name)
    assert ours == theirs and len(ours) > 10


def test_a_learned_allocation_feeds_a_gated_promoted_national_file(world):
    """The allocation issue's "done when": the search job, then a national fit with
    `allocation: learned`, promoted behind the same gates; national.h5 holds exactly the
    allocation's records, and its lineage names the allocation."""
    # The first release of this storage root: gate 2 judges absolute tolerances (a 4-episode
    # search does not beat the budget method's release, and gate 2 would say so).
    shutil.rmtree(world.root / "releases")
    searched = world.run("allocation_search")
    assert searched.success
    meta = json.loads((world.root / "sparsity_allocation" / "allocation.json").read_text())
    assert 0 < meta["records"] <= 1000 and meta["episodes"] == 4
    result = world.run("refit", run_config={"ops": {"national_weights": {
        "config": {"allocation": "learned", "hybrid_share": 0.0}}}})
    assert result.success and _promoted(result), _checks(result)
    release = current_release(world.root)
    stacked = json.loads((world.root / "stacked_h5s" / "manifest.json").read_text())
    assert stacked["files"]["national.h5"]["households"] == meta["records"]
    assert release.manifest["national_fit"]["hyperparameters"]["allocation"] == "learned"
    run_config = json.loads((world.root / "national_weights" / "run_config.json").read_text())
    assert run_config["lineage"]["sparsity_allocation"] == meta["arrays_sha256"]
    # Its held-out twin reruns it as it ran: the same allocation, the split held out.
    twin = json.loads((world.root / "national_heldout_weights" / "run_config.json").read_text())
    assert twin["lineage"]["sparsity_allocation"] == meta["arrays_sha256"]
    assert twin["params"]["allocation"] == "learned"

    again = world.run("allocation_search", run_config={"ops": {"sparsity_allocation": {
        "config": {"seed": 1}}}})  # a new allocation: the fit no longer descends from it
    assert again.success
    refused = world.materialize("promoted_release")
    assert not _promoted(refused)


REASON = "district age and state AGI targets left out of the local fit on purpose"


def test_a_refused_config_change_is_accepted_on_record_and_promoted(world, monkeypatch, capsys):
    """The config-change loop: edit the target config, the sensor's refit is refused by
    gate 2, the operator accepts that rule on record for one run (from the command line),
    it is promoted with the waiver in the verdict, the manifest, history.json and the UI;
    a later run is judged afresh."""
    before = current_release(world.root).version
    # Gate 1 judges the loss per trained target against CURRENT: leaving out the (easy)
    # district age bins alone raises it 41% on ci, so the hard state AGI amounts go too; the
    # held-out twin then misses its split cells of both (median 4.5% -> 49%).
    world.config.write_text(world.config.read_text().replace(
        "exclude:\n", "exclude:\n  - {variable: person_count, geo_level: district, "
        "domain_variable: age}\n  - {variable: adjusted_gross_income, geo_level: state}\n", 1))
    resources = {"target_config_file": world.defs.resources["target_config_file"]}
    [sensor] = [s for s in world.defs.sensors if s.name == "target_config_changed"]
    request = sensor(build_sensor_context(instance=world.instance, resources=resources,
                                          definitions=world.defs))
    refused = world.run("refit", tags=request.tags)
    assert not refused.success and _checks(refused)["simulation_quality"] is False
    [failure] = [e for e in refused.all_events if e.is_run_failure]
    message = failure.event_specific_data.error.message
    assert re.search(r"simulation_quality refused: heldout_regression \([\d.]+ > 0\.02 OVER\)",
                     message)
    assert "local_heldout/validation_split median" in message and "> 0.02 OVER" in message
    assert "ACCEPT=simulation_quality.heldout_regression" in message
    assert current_release(world.root).version == before
    _a_waiver_binds_what_it_was_given_for(world)

    for name, value in {"CALIBRATION_STORAGE_ROOT": str(world.root),
                        "CALIBRATION_TARGET_CONFIG": str(world.config),
                        "CALIBRATION_DEVICE": "cpu", "CALIBRATION_DASK": "inprocess",
                        "DAGSTER_HOME": world.instance.root_directory}.items():
        monkeypatch.setenv(name, value)
    assert make_run(["--profile", "ci", "--job", "refit", "--accept",
                     "simulation_quality.heldout_regression", "--reason", REASON,
                     "--operator", "Ada Lovelace"]) == 0
    out = capsys.readouterr().out
    assert " DEBUG " not in out and "every event: " in out
    assert "check simulation_quality (validation_results): PASS passed with a waiver" in out
    assert out.rstrip().splitlines()[-1].startswith("    target_hierarchy on ")

    release = current_release(world.root)
    assert release.version != before
    [waiver] = release.manifest["waivers"]
    assert waiver["gate"] == "simulation_quality"
    assert waiver["rules"] == ["simulation_quality.heldout_regression"]
    assert (waiver["reason"], waiver["operator"]) == (REASON, "Ada Lovelace")
    quality = release.manifest["gates"]["simulation_quality"]
    assert quality["passed"] and quality["waiver"]["run_id"] == waiver["run_id"]
    assert "accepted on record by Ada Lovelace: heldout_regression" in quality["summary"]
    assert all("waiver" not in g for name, g in release.manifest["gates"].items()
               if name != "simulation_quality")
    history = json.loads((world.root / "releases" / "history.json").read_text())
    assert history[-1]["version"] == release.version and history[-1]["waivers"] == [waiver]
    verdict = json.loads((world.root / "gates" / "simulation_quality.json").read_text())
    assert verdict["waiver"]["operator"] == "Ada Lovelace"
    rules = {r["name"]: r for r in verdict["report"]["rules"]}
    assert rules["heldout_regression"]["waived"] and not rules["heldout_regression"]["passed"]
    # The UI: the release's first metadata entry, and the check's numbers.
    [promoted] = world.instance.fetch_materializations(AssetKey("promoted_release"),
                                                       limit=1).records
    metadata = promoted.asset_materialization.metadata
    assert next(iter(metadata)) == "waivers"
    assert metadata["waivers"].value == (
        f"simulation_quality.heldout_regression accepted by Ada Lovelace: {REASON}")
    check = world.instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [AssetCheckKey(AssetKey("validation_results"), "simulation_quality")])
    evaluation = next(iter(check.values())).event.dagster_event.event_specific_data
    assert evaluation.passed and evaluation.metadata["waived_rules"].value == 1

    # A later run is judged afresh (no waiver carried over), against the waived release.
    later = world.materialize("validation_results")
    assert later.success and _checks(later) == {"simulation_quality": True}
    again = json.loads((world.root / "gates" / "simulation_quality.json").read_text())
    assert again["waiver"] is None and again["passed"]
    assert again["summary"].startswith("judged against the CURRENT release: all rules passed")


def _a_waiver_binds_what_it_was_given_for(world: World) -> None:
    """The refused refit's artifacts: a waiver written into the failed verdict by hand is
    refused even where no Dagster record of the check is asked for; a waiver given to the
    check binds the bytes it judged, so a file changed afterwards is still refused."""
    path = world.root / "gates" / "simulation_quality.json"
    forged = json.loads(path.read_text())
    for rule in forged["report"]["rules"]:
        rule["waived"] = rule["waived"] or not rule["passed"]
    path.write_text(json.dumps({**forged, "passed": True}))
    with pytest.raises(GateError, match=r"simulation_quality: passed only by a waiver "
                       r"promotion cannot accept \(heldout_regression: waived, but no waiver"):
        promote_release(Layout(world.root))

    check = AssetCheckKey(AssetKey("validation_results"), "simulation_quality")
    job = world.defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection=set(), asset_check_selection={check})
    waived = job.execute_in_process(instance=world.instance, raise_on_error=False, run_config={
        "resources": {"waiver": {"config": {
            "rules": ["simulation_quality.heldout_regression"], "reason": REASON,
            "operator": "Ada Lovelace"}}}})
    assert waived.success and _checks(waived) == {"simulation_quality": True}
    verdict = json.loads(path.read_text())
    assert verdict["waiver"]["operator"] == "Ada Lovelace"
    assert "stacked_h5s/states/DE.h5" in verdict["files"]
    de = world.root / "stacked_h5s" / "states" / "DE.h5"
    judged = de.read_bytes()
    with h5py.File(de, "r+") as f:
        weights = f["household_weight"][next(iter(f["household_weight"]))]
        weights[0] = weights[0] * 1000
    refused = world.materialize("promoted_release")
    assert not refused.success and not _promoted(refused)
    [failure] = [e for e in refused.all_events if e.is_run_failure]
    assert "stacked_h5s/states/DE.h5: changed since" in (
        failure.event_specific_data.error.message)
    de.write_bytes(judged)


def test_a_waiver_of_an_integrity_check_is_refused_at_launch(world):
    result = world.run("refit", run_config={"resources": {"waiver": {"config": {
        "rules": ["xw_consistency.local.max_rel_deviation"], "reason": "r",
        "operator": "o"}}}})
    assert "an integrity check is never waived" in _refused_at_launch(result)
