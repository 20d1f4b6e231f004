"""The policyengine-us vocabulary: names and entities on disk, and the lossless way back."""

import gzip
from dataclasses import replace

import h5py
import numpy as np
import pandas as pd
import pytest
from factories import base_microdata

from pipeline.core.errors import InputError
from pipeline.microdata import Microdata, read_h5, write_h5
from pipeline.microdata.vocabulary import (
    POLICYENGINE_US_VERSION,
    POLICYENGINE_VARIABLES,
    PREFIX,
    check_lossless,
    to_policyengine,
)

SNAPSHOT = POLICYENGINE_VARIABLES
# Supplied by every policyengine-us dataset although a default formula exists.
FORMULA_BUT_SUPPLIED = {"county", "person_id"}


def full() -> Microdata:
    """The factory households with every kind of Tax-Calculator column the CPS has."""
    md = base_microdata()
    tu = md.tax_unit.assign(
        e00900=[0.0, -2_000.0, 500.0, 0.0], e00900p=[0.0, -3_000.0, 500.0, 0.0],
        e00900s=[0.0, 1_000.0, 0.0, 0.0],
        e00600=[0.0, 900.0, 0.0, 4_000.0], e00650=[0.0, 600.0, 0.0, 4_000.0],
        e01500=[0.0, 0.0, 0.0, 25_000.0], e01700=[0.0, 0.0, 0.0, 20_000.0],
        e02400=[0.0, 0.0, 0.0, 18_000.0], e01100=[0.0, 150.0, 0.0, 0.0],
        e03240=[0.0, 75.0, 0.0, 0.0], e32800=[2_400.0, 0.0, 0.0, 0.0],
        pencon_p=[0.0, 1_000.0, 0.0, 0.0], pencon_s=[0.0, 500.0, 0.0, 0.0],
        ssi_ben=[0.0, 0.0, 0.0, 9_000.0], vet_ben=[0.0, 0.0, 0.0, 1_200.0],
        DSI=np.array([0, 0, 1, 0], dtype=np.int32),
        blind_head=np.array([0, 0, 0, 1], dtype=np.int32),
        blind_spouse=np.array([0, 1, 0, 0], dtype=np.int32),
        age_head=np.array([35, 40, 22, 70], dtype=np.int32),
        age_spouse=np.array([0, 38, 0, 0], dtype=np.int32),
    )
    return replace(md, tax_unit=tu).validate()


def _published(tmp_path, md):
    path = tmp_path / "f.h5"
    write_h5(md, path)
    with h5py.File(path, "r") as f:
        return path, {k: (f[k].attrs["entity"], f[k]["2024"][()]) for k in f}


def test_every_column_reads_back_bit_for_bit(tmp_path):
    md = full()
    path, _ = _published(tmp_path, md)
    back = read_h5(path)
    pd.testing.assert_frame_equal(back.tax_unit, md.tax_unit, check_exact=True)
    pd.testing.assert_frame_equal(back.person, md.person, check_exact=True)
    pd.testing.assert_frame_equal(back.household, md.household, check_exact=True)


def test_person_level_inputs_split_between_head_and_spouse(tmp_path):
    _, pub = _published(tmp_path, full())
    # persons: unit 100 (head, 2 children), unit 200 (head, spouse), unit 201, unit 300
    assert pub["tax_unit_role_input"][1].tolist() == [
        b"HEAD", b"DEPENDENT", b"DEPENDENT", b"HEAD", b"SPOUSE", b"HEAD", b"HEAD"]
    # Gross wages: Tax-Calculator's (net of elective deferrals) plus the deferral.
    assert pub["employment_income_before_lsr"][1].tolist() == [
        30_000, 0, 0, 61_000, 30_500, 12_000, 0]
    assert pub["traditional_401k_contributions_desired"][1].tolist() == [
        0, 0, 0, 1_000, 500, 0, 0]
    assert pub["self_employment_income_before_lsr"][1].tolist() == [
        0, 0, 0, -3_000, 1_000, 500, 0]
    # Unsplit amounts on the head; a total held with a part becomes the part + remainder.
    assert pub["qualified_dividend_income"][1].tolist() == [0, 0, 0, 600, 0, 0, 4_000]
    assert pub["non_qualified_dividend_income"][1].tolist() == [0, 0, 0, 300, 0, 0, 0]
    assert pub["tax_exempt_private_pension_income"][1].tolist() == [0, 0, 0, 0, 0, 0, 5_000]
    assert pub["social_security_retirement"][1].tolist() == [0, 0, 0, 0, 0, 0, 18_000]
    assert pub["non_sch_d_capital_gains"][1].tolist() == [0, 0, 0, 150, 0, 0, 0]
    assert pub["is_blind"][1].tolist() == [False, False, False, False, True, False, True]
    assert pub["claimed_as_dependent_on_another_return"][1].tolist() == [
        False, False, False, False, False, True, False]
    assert pub["domestic_production_ald"] == ("tax_unit", pytest.approx([0, 75, 0, 0]))
    for name in ("employment_income_before_lsr", "qualified_dividend_income", "is_blind"):
        assert pub[name][0] == "person"


def test_entities_and_what_is_not_written(tmp_path):
    _, pub = _published(tmp_path, full())
    assert pub["takes_up_snap_if_eligible"][0] == "spm_unit"
    assert pub["takes_up_eitc"][0] == "tax_unit"
    for formula_owned in ("age_head", "age_spouse", "blind_head", "blind_spouse",
                          "is_tax_unit_head", "is_tax_unit_spouse", "is_tax_unit_dependent",
                          "tax_unit_household_id", "employment_income"):
        assert formula_owned not in pub
    # Tax-Calculator's own columns, under a prefix; none under its own name.
    assert pub[f"{PREFIX}MARS"][1].tolist() == [4, 2, 1, 1]
    assert pub[f"{PREFIX}e32800"][1].tolist() == [2_400, 0, 0, 0]
    assert pub[f"{PREFIX}ssi_ben"][0] == "tax_unit"
    assert not [k for k in pub if k.startswith("e0") or k in ("MARS", "XTOT", "EIC", "DSI")]


def test_names_match_policyengine_us_entities():
    """Every published name policyengine-us knows has its entity and is one of its inputs."""
    with gzip.open(SNAPSHOT, "rt") as f:
        assert f.readline().strip() == f"# policyengine-us {POLICYENGINE_US_VERSION}"
        pe = pd.read_csv(f).set_index("name")
    pub = to_policyengine(full())
    known = [n for n in pub if n in pe.index]
    assert not [n for n in pub if n not in pe.index and not n.startswith(PREFIX)
                and n not in ("snap_reported",)]  # the factory's own extra column
    assert {n: pe.at[n, "entity"] for n in known} == {n: pub[n][0] for n in known}
    assert {n for n in known if pe.at[n, "kind"] == "formula"} == FORMULA_BUT_SUPPLIED
    assert not [n for n in pe.index if n.startswith(PREFIX)]  # the prefix cannot collide


@pytest.mark.parametrize("change, field", [
    ({"e00200": [30_000.0, 90_001.0, 12_000.0, 0.0]}, "tax_unit.e00200"),  # total != p + s
    ({"e00200s": [0.0, 30_000.0, 5.0, 0.0]}, "tax_unit.e00200s"),  # a spouse's wage, no spouse
    ({"e00600": [0.0, 1.14, 0.0, 0.0], "e00650": [0.0, 0.12, 0.0, 0.0]},
     "tax_unit.e00600"),  # fractions: 0.12 + (1.14 - 0.12) != 1.14
    ({"age_head": [35, 41, 22, 70]}, "tax_unit.age_head"),  # not the head's age
])
def test_a_column_that_would_not_read_back_is_refused(change, field):
    md = base_microdata()
    bad = replace(md, tax_unit=md.tax_unit.assign(**change))
    with pytest.raises(InputError) as err:
        check_lossless(bad, to_policyengine(bad))
    assert err.value.field == field


def test_refuses_files_in_another_vocabulary(tmp_path):
    path = tmp_path / "f.h5"
    write_h5(base_microdata(), path)
    with h5py.File(path, "a") as f:
        f.attrs["vocabulary"] = "internal"
    with pytest.raises(InputError, match="written in 'internal'"):
        read_h5(path)
