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
    # new id = clone * 10^digits(max base id) + base id
    assert hh["household_id"].tolist() == [30, 130, 10, 120, 230]
    assert hh["congressional_district_geoid"].tolist() == [601, 602, 3701, 3701, 3702]
    assert hh["state_fips"].tolist() == [6, 6, 37, 37, 37]
    assert hh["county"].tolist() == ["LOS_ANGELES_COUNTY_CA", "LOS_ANGELES_COUNTY_CA",
                                     "WAKE_COUNTY_NC", "WAKE_COUNTY_NC", "DURHAM_COUNTY_NC"]
    assert hh["household_weight"].tolist() == [1.25, 3.0, 2.5, 4.0, 1.0]
    assert nat.tax_unit["tax_unit_id"].tolist() == [300, 1300, 100, 1200, 1201, 2300]
    assert nat.person["person_id"].tolist()[:5] == [3000, 13000, 1000, 1001, 1002]
    assert nat.person["tax_unit_id"].tolist()[-3:] == [1200, 1201, 2300]
    assert nat.person["household_id"].tolist()[-3:] == [120, 120, 230]

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

    nc = read_h5(tmp_path / "stacked" / "states" / "NC.h5")
    assert nc.household["household_id"].tolist() == [10, 120, 230]
    d3701 = read_h5(tmp_path / "stacked" / "districts" / "3701.h5")
    assert d3701.person["person_id"].tolist() == [1000, 1001, 1002, 12000, 12001, 12002]
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
