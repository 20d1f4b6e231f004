"""End to end through Dagster on the `ci` profile with policyengine-us as the engine of
record (`make test` installs the extra; skipped where it is absent): X built in it, the
published files judged by loading them in it, promoted with its identity on record."""

import importlib.util
import json
import shutil

import numpy as np
import pytest
from conftest import NO_TELEMETRY, World
from dagster import AssetKey, DagsterInstance

from pipeline.core.packaged import DEFAULT_TARGET_CONFIG
from pipeline.package.store import load_package
from pipeline.release.verdicts import read_verdict
from pipeline.release.versions import current_release
from pipeline.validate.totals import read_validation_csv

pytestmark = [pytest.mark.e2e, pytest.mark.slow,
              pytest.mark.skipif(importlib.util.find_spec("policyengine_us") is None,
                                 reason="the policyengine extra is not installed")]
FAMILIES = {"state_income_tax", "aca_ptc", "real_estate_taxes", "medicaid_enrolled"}


@pytest.fixture(scope="module")
def pe_world(tmp_path_factory):
    directory = tmp_path_factory.mktemp("ci_policyengine")
    shutil.copy(DEFAULT_TARGET_CONFIG, directory / "targets.yaml")
    (directory / "dagster_home").mkdir()
    instance = DagsterInstance.local_temp(tempdir=str(directory / "dagster_home"),
                                          overrides=NO_TELEMETRY)
    world = World(directory, instance, engine="policyengine")
    world.result = world.run("full_rebuild")
    yield world
    instance.dispose()


def test_promotes_with_xw_proved_in_policyengine(pe_world):
    assert pe_world.result.success
    checks = {e.check_name: e.passed for e in pe_world.result.get_asset_check_evaluations()}
    assert all(passed for name, passed in checks.items() if name != "target_hierarchy")
    release = current_release(pe_world.root)
    assert release is not None
    engine = release.manifest["engine"]
    assert engine["name"] == "policyengine" and "policyengine-us 2.68.0" in engine["version"]
    report = read_verdict(pe_world.root / "gates", "xw_consistency").report
    for fit in ("local", "national"):
        assert report["metrics"][f"{fit}_max_rel_deviation"] <= 1e-6
        assert report["details"][fit]["engine"].startswith("policyengine (policyengine-us")
    files = {row["file"]: row for row in report["details"]["local"]["by_file"]}
    assert {"states/DE.h5", "states/RI.h5", "districts/4401.h5", "districts/4402.h5"} <= set(
        files)
    assert all(row["max_rel_deviation"] <= 1e-6 for row in files.values())
    assert report["details"]["local"]["districts_walked"] == [
        "districts/1000.h5", "districts/4401.h5", "districts/4402.h5", "districts/5000.h5",
        "districts/5600.h5"]


def test_policyengine_only_families_are_trained_and_engine_recorded(pe_world):
    pkg = load_package(pe_world.root / "calibration_package", matrix=False)
    assert pkg.metadata["out_of_scope"]["targets"] == 0
    trained = set(pkg.targets["variable"]) | {
        v for c in pkg.targets["constraints"] for v, _, _ in json.loads(c)}
    assert trained >= FAMILIES
    validation = read_validation_csv(pe_world.root / "validation_results"
                                     / "validation_results.csv")
    assert validation["engine"].nunique() == 1
    assert validation["engine"].iat[0].startswith("policyengine")
    taxes = validation[validation["variable"] == "state_income_tax"]
    assert len(taxes) == 2 * 4 and np.isfinite(taxes["sim_value"]).all()


def test_a_rebuilt_package_reads_every_state_from_the_cache(pe_world, tmp_path):
    cache = pe_world.root / "engine_cache"
    entries = sorted(cache.glob("policyengine-*.npz"))
    assert len(entries) == 4  # one per state of the ci profile
    stamps = [e.stat().st_mtime_ns for e in entries]
    before = load_package(pe_world.root / "calibration_package").X
    result = pe_world.materialize("calibration_package")
    assert result.success
    assert [e.stat().st_mtime_ns for e in sorted(cache.glob("*.npz"))] == stamps
    after = load_package(pe_world.root / "calibration_package").X
    assert (before != after).nnz == 0
    assert len(pe_world.instance.fetch_materializations(
        AssetKey("calibration_package"), limit=10).records) == 2
