"""Profiles load into one typed model; every typo and impossible value is refused by key."""

import pytest

from pipeline.config import load_profile
from pipeline.core.errors import InputError


def test_shipped_profiles_state_only_what_differs():
    demo, prod, ci = (load_profile(n) for n in ("demo", "production", "ci"))
    assert demo.geography.selected is None and demo.package.n_clones == 20
    assert demo.sample.households == 12000 and demo.fit.epochs == 1000
    assert demo.fit.lambda_l0 == 1e-7 and demo.fit.polish_epochs == 500
    assert (demo.fit.lambda_l2, prod.fit.lambda_l2) == (2.2e-11, 1e-10)
    assert prod.package.n_clones == 430 and prod.fit.polish_epochs == 200
    assert (prod.gates.district_sample.largest, prod.gates.district_sample.size) == (10, 40)
    assert demo.gates.district_sample is None and ci.gates.district_sample is None
    # Both fits run everywhere; the national one under a record budget.
    assert (demo.national_fit.preset, demo.national_fit.records) == ("national", 50_000)
    assert (demo.national_fit.lambda_l0, demo.national_fit.lambda_l2) == (2e-2, 1e-12)
    assert ci.national_fit.records == 1000 and ci.national_fit.epochs == 600
    assert demo.validation_split.share == 0.1
    assert ci.geography.selected == ("DE", "VT", "WY", "RI") and ci.package.n_clones == 2
    assert ci.gates.fit.loss_tolerance == 0.05 and ci.gates.consistency_tolerance == 1e-6
    # The learned allocation: a search of a few seconds on ci; the demo with it switched on.
    assert (ci.allocation.episodes, demo.allocation.episodes) == (4, 96)
    learned = load_profile("demo_learned")
    assert learned.national_fit.allocation == "learned" and demo.national_fit.allocation \
        == "budget"
    # The search's L0 phase: the demo's national fit without its design-weighted draw (the
    # allocation chooses every record).
    assert demo.national_fit.hybrid_share == 0.9 and learned.national_fit.hybrid_share == 0
    assert learned.national_fit.model_dump(exclude={"allocation", "hybrid_share"}) == \
        demo.national_fit.model_dump(exclude={"allocation", "hybrid_share"})


@pytest.mark.parametrize("text, key, message", [
    ("gate: {fit: {loss_tolerance: 0.2}}\n", "gate", "did you mean 'gates'"),
    ("fit: {epoch: 10}\n", "fit.epoch", "did you mean 'epochs'"),
    ("gates: {fit: {loss_tolerence: 0.2}}\n", "gates.fit.loss_tolerence",
     "did you mean 'loss_tolerance'"),
    ("sample: {households: -5}\n", "sample.households", "greater than or equal to 100"),
    ("sample: {top_agi_quantile: 5}\n", "sample.top_agi_quantile", "less than 1"),
    ("package: {n_clones: 0}\n", "package.n_clones", "greater than or equal to 1"),
    ("fit: {epochs: 0}\n", "fit.epochs", "greater than or equal to 1"),
    ("fit: {preset: regional}\n", "fit.preset", "'local' or 'national'"),
    ("fit: {records: 0}\n", "fit.records", "greater than or equal to 1"),
    ("national_fit: {records: -5}\n", "national_fit.records", "greater than or equal to 1"),
    ("national_fit: {hybrid_share: 1.5}\n", "national_fit.hybrid_share", "less than 1"),
    ("fit: {hybrid_share: 0.3}\n", "fit", "hybrid_share is a share of the record budget"),
    ("national_fit: {allocation: learned}\n", "national_fit",
     "allocation: learned chooses every record of the budget: set hybrid_share: 0"),
    ("fit: {temperature_schedule: linear_ish}\n", "fit.temperature_schedule", "'cosine'"),
    ("fit: {calibration_distance: -1}\n", "fit.calibration_distance",
     "greater than or equal to 0"),
    ("national_fit: {calibration_distance: .nan}\n", "national_fit.calibration_distance",
     "finite number"),
    ("validation_split: {share: 1}\n", "validation_split.share", "less than 1"),
    ("allocation: {episodes: 0}\n", "allocation.episodes", "greater than or equal to 1"),
    ("allocation: {hierarchy: maybe}\n", "allocation.hierarchy", "valid boolean"),
    ("fit: {allocation: learned}\n", "fit", "allocation: learned spends a record budget"),
    ("geography: {states: [DE, XX]}\n", "geography.states", "XX"),
    ("- just a list\n", None, "top level is a list"),
    # Given twice, YAML kept the last silently.
    ("fit:\n  epochs: 10\nfit:\n  epochs: 20\n", "fit", "given twice in one mapping, at "
     "lines 1 and 3"),
    ("fit: {epochs: 10, epochs: 20}\n", "fit.epochs", "at line 1, columns 7 and 19"),
    # Finite numbers only: an infinite λ made a NaN loss that passed every gate-1 rule.
    ("fit: {lambda_l0: .inf}\n", "fit.lambda_l0", "finite number"),
    ("gates: {fit: {loss_tolerance: .nan}}\n", "gates.fit.loss_tolerance", "finite number"),
    # A budget beyond the package's columns: refused at load, not after the first fit.
    ("sample: {households: 2000}\npackage: {n_clones: 2}\nnational_fit: {records: 100000}\n",
     "national_fit.records", "exceeds the 4,000 columns this profile's package has at most"),
    ("sample: {households: 2000}\npackage: {n_clones: 2}\nfit: {records: 4001}\n",
     "fit.records", "set fit.records to at most 4,000"),
    ("fit: {epochs: [unclosed\n", None, "malformed YAML at line 2"),
])
def test_bad_profiles_are_refused_naming_the_key(tmp_path, text, key, message):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        load_profile(str(path))
    assert info.value.field == key and str(path) in str(info.value)
    assert message in str(info.value)


def test_profile_not_found_lists_the_shipped_ones():
    shipped = r"\['ci', 'demo', 'demo_learned', 'production'\]"
    with pytest.raises(InputError, match=r"profile not found.*" + shipped):
        load_profile("nope")


def test_a_preset_fills_only_what_the_profile_leaves_out(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("fit: {preset: national, beta: 0.5}\n")
    fit = load_profile(str(path)).fit
    assert (fit.lambda_l0, fit.beta, fit.lambda_l2, fit.epochs) == (2e-2, 0.5, 1e-12, 1000)
    assert fit.to_dict()["from_preset"] == ["epochs", "lambda_l0", "lambda_l2"]
    assert "orchestration, national fit" in fit.to_dict()["preset_source"]
    # Switching back replaces what the preset filled and keeps what the profile chose.
    back = fit.with_(preset="local")
    assert (back.lambda_l0, back.beta, back.lambda_l2) == (1e-7, 0.5, 1e-8)


def test_a_national_fit_section_keeps_its_own_defaults(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("national_fit: {records: 30000}\nfit: {records: 200000}\n")
    profile = load_profile(str(path))
    assert (profile.national_fit.preset, profile.national_fit.records) == ("national", 30_000)
    assert (profile.fit.preset, profile.fit.records) == ("local", 200_000)
    assert profile.national_fit.with_(seed=3).records == 30_000
