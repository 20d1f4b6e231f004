from dataclasses import replace

import numpy as np
import pytest
from factories import W, base_microdata, local_view, make_package

from pipeline.engine import simulate
from pipeline.publish.stacking import stack_h5s
from pipeline.validate.published import seed_cache
from pipeline.validate.sanity import FileSanity, summarize
from pipeline.validate.totals import walk_published


@pytest.fixture(scope="module")
def good():
    md = base_microdata()
    return md, simulate(md)


def sanity_check_file(md, simulation=None, spm_ids=None):
    """Every check on one in-memory file (the engine runs for SNAP unless given)."""
    sanity = FileSanity()
    sanity.add(md, simulate(md) if simulation is None else simulation, spm_ids)
    return sanity.results()


def _status(results):
    return {r.check: r.status for r in results}


def test_clean_file_passes_every_check(good):
    md, sim = good
    results = sanity_check_file(md, sim, spm_ids=md.household["household_id"].to_numpy())
    assert _status(results) == {
        "weight_nonnegative": "PASS", "unique_ids": "PASS", "finite_values": "PASS",
        "entity_links": "PASS", "takeup_boolean": "PASS", "employment_income_range": "PASS",
        "snap_range": "PASS"}
    assert "spm_unit_id" in next(r for r in results if r.check == "unique_ids").reason
    income = next(r for r in results if r.check == "employment_income_range")
    assert "$44,000" in income.reason  # (30K + 102K + 0) / 3 households
    assert summarize(results) == ("PASS", "")


def test_structural_breaks_fail(good):
    md, sim = good
    hh = md.household.assign(household_weight=[1.0, -2.0, 1.0])
    tu = md.tax_unit.assign(e00200=[30_000.0, np.nan, 12_000.0, 0.0],
                            takes_up_eitc=[1, 0, 1, 1])
    person = md.person.assign(household_id=[10, 10, 10, 20, 20, 20, 99],
                              person_id=[1000, 1001, 1002, 2000, 2000, 2002, 3000])
    status = _status(sanity_check_file(replace(md, household=hh, tax_unit=tu, person=person),
                                       sim))
    assert status["weight_nonnegative"] == "FAIL"
    assert status["finite_values"] == "FAIL"
    assert status["takeup_boolean"] == "FAIL"
    assert status["entity_links"] == "FAIL"
    assert status["unique_ids"] == "FAIL"
    worst, reason = summarize(sanity_check_file(replace(md, household=hh), sim))
    assert worst == "FAIL" and reason.startswith("weight_nonnegative: 1 negative")


def test_implausible_household_averages_warn(good):
    md, sim = good
    rich = replace(md, person=md.person.assign(employment_income=md.person["employment_income"]
                                               * 10))
    status = _status(sanity_check_file(rich, sim))
    assert status["employment_income_range"] == "WARN"
    big_snap = replace(sim, household=sim.household.assign(snap=[40_000.0, 0.0, 0.0]))
    worst, reason = summarize(sanity_check_file(md, big_snap))
    assert worst == "WARN" and "snap_range: weighted mean per household $13,333" in reason


def test_directory_gate_reads_spm_ids_from_every_file(tmp_path):
    pkg = make_package(tmp_path)
    stack_h5s(pkg, W, tmp_path / "stacked")
    results = walk_published(tmp_path / "stacked", [local_view(pkg.targets)],
                             lambda: seed_cache(base_microdata())).walk.sanity
    unique = results[results["check"] == "unique_ids"]
    published = [p for p in (tmp_path / "stacked").rglob("*.h5") if "sidecar" not in p.parts]
    assert len(unique) == len(published) == 7
    assert unique["reason"].str.contains("spm_unit_id").all()
    assert (results["status"] != "FAIL").all()
