"""End to end through Dagster on the `ci` profile: build, gate, promote, refit, refuse, roll back.

One module-scoped instance and storage root; the tests run in file order and build on each
other the way a team's week would: a full rebuild, a target-config edit that refits, a fit
that fails gate 1, a hand-launched promotion that is refused, a corrupted file, a rollback.
"""

import json
import shutil

import numpy as np
import pytest
from dagster import (
    AssetKey,
    AssetSelection,
    DagsterInstance,
    build_sensor_context,
    evaluate_automation_conditions,
)

from assets.automation import target_config_changed
from assets.definitions import make_definitions
from pipeline.cli import main as calibrate

# The shipped config: its national rule must be harmless on a package of four states.
from pipeline.core.packaged import DEFAULT_TARGET_CONFIG as DEFAULT_CONFIG  # noqa: E402
from pipeline.release.releases import current_release, list_releases
from resources import ProfileResource, StorageResource, TargetDatabaseResource


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    config = root / "targets.yaml"
    shutil.copy(DEFAULT_CONFIG, config)
    resources = {
        "storage": StorageResource(root=str(root / "storage")),
        "profile": ProfileResource(name="ci"),
        "targets_resource": TargetDatabaseResource(target_config=str(config)),
    }
    instance = DagsterInstance.ephemeral()
    yield {"root": root / "storage", "config": config, "resources": resources,
           "defs": make_definitions(**resources), "instance": instance}
    instance.dispose()


def _run(world, job, **kwargs):
    job_def = world["defs"].resolve_job_def(job)
    return job_def.execute_in_process(instance=world["instance"], raise_on_error=False, **kwargs)


def _checks(result):
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def _materializations(world, name):
    records = world["instance"].fetch_materializations(AssetKey(name), limit=100).records
    return len(records)


def _metadata(result, name):
    [event] = [m for m in result.asset_materializations_for_node(name)]
    return {k: v.value for k, v in event.metadata.items()}


def test_full_rebuild_promotes_behind_passed_gates(world):
    result = _run(world, "full_rebuild")
    assert result.success
    assert _checks(result) == {
        "target_db_integrity": True, "package_validity": True, "fit_review": True,
        "structural_sanity": True, "xw_consistency": True, "simulation_quality": True,
    }
    release = current_release(world["root"])
    assert release is not None
    assert all(g["passed"] for g in release.manifest["gates"].values())
    assert len(release.manifest["gates"]) == 6
    # Four states: a file each, five districts (RI has two), one national file.
    files = release.manifest["files"]
    assert sum(f.startswith("states/") for f in files) == 4
    assert sum(f.startswith("districts/") for f in files) == 5
    assert "national.h5" in files and "validation_results.csv" in files
    for entry in files.values():
        assert len(entry["sha256"]) == 64

    package = _metadata(result, "calibration_package")
    assert package["n_clones"] == 2 and package["columns"] == 2 * package["n_records"]
    fit = _metadata(result, "calibration_weights")
    assert fit["median_rel_error"] < 0.01
    assert 0 < fit["records_kept"] <= package["columns"]
    # The X·w invariant holds to float rounding, not just the 1% tolerance.
    verdict = json.loads((world["root"] / "gates" / "xw_consistency.json").read_text())
    assert verdict["details"]["max_rel_deviation"] < 1e-6
    assert verdict["details"]["n_targets"] > 200


def test_config_change_refits_without_rebuilding_the_package(world):
    before_package = _materializations(world, "calibration_package")
    before_weights = _materializations(world, "calibration_weights")
    previous = current_release(world["root"]).version
    config = world["config"]
    config.write_text(config.read_text()
                      + "  - {variable: household_count, geo_level: district}\n")

    context = build_sensor_context(instance=world["instance"],
                                   resources=world["resources"], definitions=world["defs"])
    request = target_config_changed(context)
    assert request.run_key.startswith(request.tags["target_config_sha256"])
    result = _run(world, "refit", tags=request.tags)
    assert result.success

    assert _materializations(world, "calibration_package") == before_package
    assert _materializations(world, "calibration_weights") == before_weights + 1
    run = json.loads((world["root"] / "calibration_weights" / "run_config.json").read_text())
    package = json.loads((world["root"] / "calibration_package" / "metadata.json").read_text())
    # ci: 4 negative totals held out, 4 state populations excluded (the national income
    # tax rule matches nothing in four states), and now 5 districts' SNAP households.
    assert run["n_selected"] == package["n_targets"] - 4 - 4 - 5
    assert current_release(world["root"]).version != previous
    # The sensor now sees the config it refitted on and asks for nothing more.
    again = target_config_changed(build_sensor_context(
        instance=world["instance"], resources=world["resources"], definitions=world["defs"]))
    assert "unchanged" in again.skip_message


def test_automation_promotes_once_the_blocking_checks_passed(world):
    def tick(cursor=None):
        return evaluate_automation_conditions(
            defs=world["defs"], instance=world["instance"],
            asset_selection=AssetSelection.assets("promoted_release"), cursor=cursor)

    idle = tick()  # nothing changed since the last release: nothing to promote
    assert idle.get_num_requested(AssetKey("promoted_release")) == 0
    job = world["defs"].resolve_implicit_global_asset_job_def()
    built = job.execute_in_process(
        instance=world["instance"], raise_on_error=False,
        asset_selection=[AssetKey(k) for k in ("calibration_weights", "stacked_h5s",
                                               "validation_results")])
    assert built.success and all(_checks(built).values())
    assert tick(idle.cursor).get_num_requested(AssetKey("promoted_release")) == 1


def test_failing_fit_review_blocks_promotion(world):
    current = current_release(world["root"]).version
    result = _run(world, "refit", run_config={"ops": {"calibration_weights": {
        "config": {"epochs": 3, "polish_epochs": 2}}}})
    checks = _checks(result)
    assert checks["fit_review"] is False
    assert "promoted_release" not in {
        e.asset_key.path[-1] for e in result.get_asset_materialization_events()}
    verdict = json.loads((world["root"] / "gates" / "fit_review.json").read_text())
    assert verdict["passed"] is False and "loss_converged" in verdict["summary"]
    assert current_release(world["root"]).version == current


def test_promotion_by_hand_is_refused_after_a_failed_gate(world):
    current = current_release(world["root"]).version
    n_releases = len(list_releases(world["root"]))
    job = world["defs"].resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(instance=world["instance"], raise_on_error=False,
                                    asset_selection=[AssetKey("promoted_release")])
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "fit_review: FAILED" in str(failure.step_failure_data.error)
    assert current_release(world["root"]).version == current
    assert len(list_releases(world["root"])) == n_releases


def test_truncated_h5_stops_the_run_and_spares_the_releases(world):
    healthy = _run(world, "refit")
    assert healthy.success
    current = current_release(world["root"]).version
    versions = [r.version for r in list_releases(world["root"])]
    victim = world["root"] / "stacked_h5s" / "states" / "DE.h5"
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    job = world["defs"].resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(
        instance=world["instance"], raise_on_error=False,
        asset_selection=[AssetKey("validation_results"), AssetKey("promoted_release")])
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "DE.h5" in str(failure.step_failure_data.error)
    assert current_release(world["root"]).version == current
    assert [r.version for r in list_releases(world["root"])] == versions


def test_rollback_moves_current_back(world, capsys):
    releases = list_releases(world["root"])
    assert len(releases) >= 3
    current = current_release(world["root"])
    assert calibrate(["rollback", "--storage", str(world["root"])]) == 0
    rolled = current_release(world["root"])
    names = [r.version for r in releases]
    assert names.index(rolled.version) == names.index(current.version) - 1
    assert calibrate(["releases", "--storage", str(world["root"])]) == 0
    listing = capsys.readouterr().out
    assert f"* {rolled.version}" in listing and current.version in listing
    # Every release directory is still complete and byte-identical to its manifest.
    for release in list_releases(world["root"]):
        weights = np.load(release.path / "weights.npy")
        assert np.isfinite(weights).all() and (weights >= 0).all()
