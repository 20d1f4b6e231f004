import pytest

from pipeline.core.errors import InputError
from pipeline.core.profiles import load_profile


def test_shipped_profiles():
    demo, prod, ci = (load_profile(n) for n in ("demo", "production", "ci"))
    assert demo.states is None and demo.n_clones == 20 and demo.households == 12000
    assert prod.n_clones == 430
    assert ci.states == ("DE", "VT", "WY", "RI") and ci.n_clones == 2


def test_bad_profile_names_field(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("name: x\nperiod: 2024\nseed: 0\ngeography: {states: all}\nsample: {}\n")
    with pytest.raises(InputError, match="p.yaml.*households|households.*p.yaml"):
        load_profile(str(path))
    with pytest.raises(InputError, match="profile not found"):
        load_profile("nope")


def test_unknown_state_is_named(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("period: 2024\nseed: 0\nsample: {households: 10}\n"
                    "geography: {states: [DE, XX]}\npackage: {n_clones: 2}\n")
    with pytest.raises(InputError, match="geography.states.*XX"):
        load_profile(str(path))
