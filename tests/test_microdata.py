"""Microdata: validation, PolicyEngine-layout H5 roundtrip, and bad-file errors."""

import h5py
import numpy as np
import pandas as pd
import pytest
from factories import base_microdata

from pipeline.core.errors import InputError
from pipeline.microdata import Microdata, RowBlock, read_h5, split_block, write_h5


def small() -> Microdata:
    hh = pd.DataFrame({
        "household_id": np.array([7, 3], dtype=np.int64),
        "household_weight": [1.5, 250.25],
        "state_fips": [6, 36],
        "congressional_district_geoid": [601, 0],
        "county": ["Alameda County, CA", ""],
        "takes_up_snap_if_eligible": [True, False],
    })
    tu = pd.DataFrame({
        "tax_unit_id": np.array([700, 300, 301], dtype=np.int64),
        "household_id": np.array([7, 3, 3], dtype=np.int64),
        "takes_up_eitc": [False, True, True],
        "MARS": np.array([2, 1, 1], dtype=np.int32),
        "XTOT": np.array([3, 1, 1], dtype=np.int32),
        "e00200": [85000.5, 0.0, 1234.0],
    })
    person = pd.DataFrame({
        "person_id": np.array([70000, 70001, 70002, 30000, 30100], dtype=np.int64),
        "household_id": np.array([7, 7, 7, 3, 3], dtype=np.int64),
        "tax_unit_id": np.array([700, 700, 700, 300, 301], dtype=np.int64),
        "age": [41, 39, 4, 70, 22],
        "is_tax_unit_head": [True, False, False, True, True],
        "is_tax_unit_spouse": [False, True, False, False, False],
        "is_tax_unit_dependent": [False, False, True, False, False],
        "employment_income": [60000.5, 25000.0, 0.0, 0.0, 1234.0],
    })
    return Microdata(2024, hh, tu, person).validate()


def test_roundtrip_equal_values(tmp_path):
    md = small()
    path = tmp_path / "base.h5"
    write_h5(md, path)
    back = read_h5(path)
    assert back.period == 2024
    pd.testing.assert_frame_equal(back.tax_unit, md.tax_unit)
    pd.testing.assert_frame_equal(back.person, md.person)
    pd.testing.assert_frame_equal(back.household, md.household)
    assert [p.name for p in tmp_path.iterdir()] == ["base.h5"]


def test_policyengine_layout(tmp_path):
    path = tmp_path / "base.h5"
    write_h5(small(), path)
    with h5py.File(path, "r") as f:
        assert f["age"]["2024"][()].tolist() == [41, 39, 4, 70, 22]
        assert f["age"].attrs["entity"] == "person"
        assert f["household_weight"]["2024"].dtype == np.float32
        assert f["county"]["2024"][()].tolist() == [b"Alameda County, CA", b""]
        assert f["person_household_id"]["2024"][()].tolist() == [7, 7, 7, 3, 3]
        assert f["person_tax_unit_id"]["2024"][()].tolist() == [700, 700, 700, 300, 301]
        assert f["spm_unit_id"]["2024"][()].tolist() == [7, 3]
        assert f["family_id"].attrs["entity"] == "family"
        assert f["person_spm_unit_id"]["2024"][()].tolist() == [7, 7, 7, 3, 3]
        # Head and spouse share a marital unit; the dependent and each single adult have one.
        assert f["person_marital_unit_id"]["2024"][()].tolist() == [
            70000, 70000, 70002, 30000, 30100]
        assert sorted(f["marital_unit_id"]["2024"][()].tolist()) == [
            30000, 30100, 70000, 70002]
        assert f["takes_up_eitc"]["2024"].dtype == bool
        assert f["takes_up_snap_if_eligible"].attrs["entity"] == "spm_unit"
        assert f["tax_unit_role_input"]["2024"][()].tolist() == [
            b"HEAD", b"SPOUSE", b"DEPENDENT", b"HEAD", b"HEAD"]
        assert "tax_unit_household_id" not in f and "is_tax_unit_head" not in f
        assert f["employment_income_before_lsr"]["2024"][()].tolist() == [
            60000.5, 25000.0, 0.0, 0.0, 1234.0]
        assert f["taxcalc_MARS"]["2024"][()].tolist() == [2, 1, 1]
        assert f.attrs["vocabulary"] == "policyengine-us 2.68.0"


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_h5(tmp_path / "nope.h5")


def test_truncated_file(tmp_path):
    path = tmp_path / "base.h5"
    write_h5(small(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="corrupt or truncated"):
        read_h5(path)


def test_missing_field_is_named(tmp_path):
    path = tmp_path / "base.h5"
    write_h5(small(), path)
    with h5py.File(path, "a") as f:
        del f["age"]
    with pytest.raises(InputError) as err:
        read_h5(path)
    assert err.value.field == "age"


def test_validate_rejects_bad_grouping_and_ids():
    md = small()
    shuffled = Microdata(2024, md.household, md.tax_unit.iloc[[1, 0, 2]], md.person)
    with pytest.raises(InputError, match="contiguously"):
        shuffled.validate()
    dup = md.person.copy()
    dup.loc[4, "person_id"] = 30000
    with pytest.raises(InputError, match="person_id.*duplicated values"):
        Microdata(2024, md.household, md.tax_unit, dup).validate()
    with pytest.raises(InputError) as err:
        Microdata(2024, md.household.drop(columns="county"), md.tax_unit, md.person).validate()
    assert err.value.field == "household.county"


def test_take_households_keeps_members():
    part = small().take_households(np.array([1]))
    assert part.household["household_id"].tolist() == [3]
    assert part.tax_unit["tax_unit_id"].tolist() == [300, 301]
    assert part.person["person_id"].tolist() == [30000, 30100]


@pytest.mark.parametrize(("limit", "households"), [(3, [3]), (2, [1, 2]), (1, [1, 1, 1])])
def test_a_file_is_cut_into_the_fewest_even_blocks_of_whole_households(tmp_path, limit,
                                                                       households):
    """Each cut is a simulation under policyengine-us (~3 s before its first household)."""
    md = base_microdata()  # persons per household: 3, 3, 1; tax units: 1, 2, 1
    write_h5(md, tmp_path / "f.h5")
    whole = RowBlock((0, 3), (0, 4), (0, 7))
    parts = split_block(tmp_path / "f.h5", whole, limit)
    assert [b.households[1] - b.households[0] for b in parts] == households
    read = [read_h5(tmp_path / "f.h5", b) for b in parts]
    for entity in ("household", "tax_unit", "person"):
        joined = pd.concat([getattr(r, entity) for r in read], ignore_index=True)
        pd.testing.assert_frame_equal(joined, getattr(read_h5(tmp_path / "f.h5"), entity))
