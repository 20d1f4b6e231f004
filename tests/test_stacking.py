import json

import numpy as np
import pytest
from factories import CD, W, base_microdata, make_package

from pipeline.core.errors import InputError
from pipeline.engine.takeup import draw_takeup
from pipeline.microdata import read_h5, slice_published
from pipeline.microdata.vocabulary import to_policyengine
from pipeline.publish import stacking
from pipeline.publish.stacking import load_manifest, stack_h5s


def test_stacks_nonzero_columns_with_geography_ids_and_takeup(tmp_path):
    pkg = make_package(tmp_path)
    result = stack_h5s(pkg, W, tmp_path / "stacked")
    assert result.n_households == 5 and result.weight_total == pytest.approx(11.75)
    assert result.districts == [601, 602, 3701, 3702] and result.empty_districts == []
    manifest = load_manifest(tmp_path / "stacked")
    assert sorted(manifest["files"]) == [
        "districts/3701.h5", "districts/3702.h5", "districts/601.h5", "districts/602.h5",
        "national.h5", "states/CA.h5", "states/NC.h5"]
    assert (manifest["households"], manifest["tax_units"], manifest["persons"]) == (5, 6, 9)

    nat = read_h5(tmp_path / "stacked" / "national.h5")
    hh = nat.household
    # sorted by district, then column: cols 2 (601), 5 (602), 0 (3701), 4 (3701), 8 (3702);
    # ids run from 1 across the release (national file first), the base record and clone
    # beside them
    assert hh["household_id"].tolist() == [1, 2, 3, 4, 5]
    assert hh["source_household_id"].tolist() == [30, 30, 10, 20, 30]
    assert hh["clone"].tolist() == [0, 1, 0, 1, 2]
    assert hh["congressional_district_geoid"].tolist() == [601, 602, 3701, 3701, 3702]
    assert hh["state_fips"].tolist() == [6, 6, 37, 37, 37]
    assert hh["county"].tolist() == ["LOS_ANGELES_COUNTY_CA", "LOS_ANGELES_COUNTY_CA",
                                     "WAKE_COUNTY_NC", "WAKE_COUNTY_NC", "DURHAM_COUNTY_NC"]
    assert hh["household_weight"].tolist() == [1.25, 3.0, 2.5, 4.0, 1.0]
    assert hh["county_fips"].tolist() == ["06037", "06037", "37183", "37183", "37063"]
    assert nat.tax_unit["tax_unit_id"].tolist() == [1, 2, 3, 4, 5, 6]
    assert nat.person["person_id"].tolist()[:5] == [1, 2, 3, 4, 5]
    assert nat.person["tax_unit_id"].tolist()[-3:] == [4, 5, 6]
    assert nat.person["household_id"].tolist()[-3:] == [4, 4, 5]

    # takeup: exactly what the matrix builder draws for the whole clone (base ids, clone, state)
    base = base_microdata()
    expect_snap, expect_eitc = [], []
    for clone, record, tus in ((0, 2, [3]), (1, 2, [3]), (0, 0, [0]), (1, 1, [1, 2]),
                               (2, 2, [3])):
        state = CD[clone * 3:(clone + 1) * 3] // 100
        snap, eitc = draw_takeup(base.household["household_id"].to_numpy(),
                                 base.tax_unit["household_id"].to_numpy(), clone, state)
        expect_snap.append(snap[record])
        expect_eitc.extend(eitc[tus])
    assert hh["takes_up_snap_if_eligible"].tolist() == expect_snap
    assert nat.tax_unit["takes_up_eitc"].tolist() == expect_eitc

    # CA (households 6, 7; persons 10, 11) comes before NC; a district file keeps its
    # state file's ids
    nc = read_h5(tmp_path / "stacked" / "states" / "NC.h5")
    assert nc.household["household_id"].tolist() == [8, 9, 10]
    d3701 = read_h5(tmp_path / "stacked" / "districts" / "3701.h5")
    assert d3701.person["person_id"].tolist() == [12, 13, 14, 15, 16, 17]
    assert manifest["files"]["districts/3701.h5"]["weight_total"] == 6.5


def test_empty_districts_reported_and_output_is_deterministic(tmp_path):
    pkg = make_package(tmp_path)
    w = np.where(CD == 602, 0.0, W)
    first = stack_h5s(pkg, w, tmp_path / "a")
    second = stack_h5s(pkg, w, tmp_path / "b")
    assert first.empty_districts == [602] and first.empty_states == []
    assert not (tmp_path / "a" / "districts" / "602.h5").exists()
    assert first.manifest == second.manifest


@pytest.mark.parametrize("a, b", [(0, 1), (1, 2), (1, 3), (0, 3), (2, 3)])
def test_a_files_rows_of_a_mapped_block_are_its_own_mapping(a, b):
    """Stacking maps a block once and cuts each file's rows from it: the cut must be what
    mapping those households alone gives, marital units (ids of their persons) included."""
    md = base_microdata()
    whole = to_policyengine(md)
    rows = stacking._member_rows(md)(a, b)
    part = stacking._slice(md, rows)
    alone = to_policyengine(part)
    cut = slice_published(whole, rows)
    assert list(cut) == list(alone)
    for name, (entity, values) in alone.items():
        assert cut[name][0] == entity and np.array_equal(cut[name][1], values), name
    assert part.household["household_id"].tolist() == [10, 20, 30][a:b]


def test_refuses_bad_weights_and_leaves_nothing(tmp_path, monkeypatch):
    pkg = make_package(tmp_path)
    out = tmp_path / "stacked"
    for bad, match in ((W[:5], "columns"), (np.where(W == 4.0, np.nan, W), "NaN"),
                       (np.where(W == 4.0, -1.0, W), "negative")):
        with pytest.raises(InputError, match=match):
            stack_h5s(pkg, bad, out)
    assert not out.exists()

    stack_h5s(pkg, W, out)
    before = json.loads((out / "manifest.json").read_text())
    calls = []
    append = stacking.H5Writer.append

    def crash(writer, md, published=None):
        calls.append(md)
        if len(calls) == 3:
            raise OSError("killed")
        append(writer, md, published)

    monkeypatch.setattr(stacking.H5Writer, "append", crash)
    with pytest.raises(OSError, match="killed"):
        stack_h5s(pkg, W * 2, out)
    assert json.loads((out / "manifest.json").read_text()) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")] == []


def test_a_tiny_kept_weight_is_published_at_the_minimum_weight(tmp_path):
    """A record the fit kept stays in the files (a record budget stays met), at no less
    than MIN_WEIGHT households; a zero weight stays out."""
    pkg = make_package(tmp_path)
    w = np.where(W > 0, W, 0.0)
    w[np.flatnonzero(W > 0)[0]] = 4.7e-5
    result = stack_h5s(pkg, w, tmp_path / "stacked")
    assert result.n_households == int(np.sum(W > 0))
    nat = read_h5(tmp_path / "stacked" / "national.h5").household["household_weight"]
    assert nat.min() == pytest.approx(stacking.MIN_WEIGHT)
    assert stacking.published_weights(np.array([0.0, 4.7e-5, 0.5])).tolist() == [
        0.0, stacking.MIN_WEIGHT, 0.5]
