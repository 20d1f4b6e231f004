"""Target config: YAML parsing, include/exclude selection, reconciliation, loud errors,
holdout protection."""


import pytest

from pipeline.core.errors import InputError
from pipeline.core.packaged import DEFAULT_TARGET_CONFIG as DEFAULT  # noqa: E402
from pipeline.targets.db import load_targets
from pipeline.targets.etl import build_target_db
from pipeline.targets.target_config import (
    TargetConfig,
    TargetRule,
    apply_target_config,
    configure_targets,
    load_target_config,
    select_targets,
    target_vocabulary,
)


@pytest.fixture(scope="module")
def targets(tmp_path_factory):
    """The DB without a validation split, so the counts below are the published tables'
    (split targets are held out like any other: test_split.py)."""
    path = tmp_path_factory.mktemp("db") / "targets.db"
    build_target_db(path, split_share=0.0)
    return load_targets(path)


# 10,760 targets of the builtin engine's families before issues 18 and 19, households and
# the SOI items (issue 19), and 5 x 51 state targets only the policyengine engine computes
# (state income tax, Medicaid, ACA PTC and returns, real estate; issue 18). Held out: EITC by
# AGI x children, negative totals and the zero dollar totals (9 states without an income
# tax, two SOI cells).
ALL = 10_760 + 488 + 570 + 5 * 51
HELD = 224 + 52 + 9 + 2


def _config(tmp_path, text):
    path = tmp_path / "targets.yaml"
    path.write_text(text)
    return path


SOI_EXCLUDED = 13 * 38 - 2  # the SOI items the config holds out (two zero dollar cells)
UNREACHABLE = 2  # taxable Social Security below $1 of AGI, named target by target


def test_default_config_trains_on_all_but_holdout_population_and_income_tax(targets):
    config = load_target_config(DEFAULT)
    assert config.include is None
    assert config.exclude[:2] == (TargetRule("person_count", "state", ""),
                                  TargetRule("income_tax", "national", None))
    selected = select_targets(targets, config)
    assert selected.sum() == ALL - HELD - 51 - 1 - SOI_EXCLUDED - UNREACHABLE == 11_240
    assert not selected[targets.holdout.to_numpy() == 1].any()
    dropped = targets[~selected & (targets.holdout == 0)]
    assert len(dropped) == 52 + SOI_EXCLUDED + UNREACHABLE
    assert sorted(dropped.target_name[dropped.target_name.str.contains(
        "adjusted_gross_income<1,is_tax_filer==1,taxable_social_security>0")]) == [
        "nation/tax_unit_count/[adjusted_gross_income<1,is_tax_filer==1,"
        "taxable_social_security>0]",
        "nation/taxable_social_security/[adjusted_gross_income<1,is_tax_filer==1,"
        "taxable_social_security>0]"]
    trained = targets[selected]
    assert set(trained.variable) == {
        "person_count", "household_count", "tax_unit_count", "adjusted_gross_income", "eitc",
        "snap", "social_security", "taxable_social_security", "state_income_tax", "aca_ptc",
        "real_estate_taxes"}
    assert (trained.variable == "household_count").sum() == 2 * 436 + 2 * 51 + 1


def test_include_then_exclude(targets, tmp_path):
    path = _config(tmp_path, "include:\n  - {geo_level: district}\n  - {variable: snap}\n"
                             "exclude:\n  - {domain_variable: age}\n")
    selected = select_targets(targets, load_target_config(path))
    # district SNAP and total households (2 x 436) + state SNAP cost (51)
    assert selected.sum() == 2 * 436 + 51
    assert set(targets[selected].variable) == {"household_count", "snap"}


def test_domain_order_does_not_matter(targets, tmp_path):
    path = _config(tmp_path, "include:\n"
                             "  - {domain_variable: 'is_tax_filer, adjusted_gross_income'}\n")
    selected = select_targets(targets, load_target_config(path))
    # state bands + national bands (no total), less the 52 negative below-$1 AGI amounts
    assert selected.sum() == 51 * 20 + 19 * 2 - 52


def test_a_rule_names_one_target(targets, tmp_path):
    name = "state_2/tax_unit_count/[adjusted_gross_income<1,is_tax_filer==1]"
    path = _config(tmp_path, f"exclude:\n  - {{target_name: '{name}'}}\n")
    selected = select_targets(targets, load_target_config(path))
    assert targets.target_name[~selected & (targets.holdout == 0)].tolist() == [name]


def test_a_target_name_that_matches_nothing_is_refused(targets, tmp_path):
    path = _config(tmp_path, "exclude:\n  - {target_name: 'state_2/tax_unit_count/[x<1]'}\n")
    with pytest.raises(InputError, match=r"exclude\[0\]\.target_name.*matches no target"
                                         r".*in all; the package's targets.csv lists them"):
        select_targets(targets, load_target_config(path))


def test_a_national_target_name_is_no_error_in_a_package_of_a_few_states(targets, tmp_path):
    """The name is checked against the whole target DB, which a package carries."""
    name = "nation/tax_unit_count/[adjusted_gross_income<1,is_tax_filer==1]"
    path = _config(tmp_path, f"exclude:\n  - {{target_name: '{name}'}}\n")
    states = targets[targets.geo_level == "state"].reset_index(drop=True)
    selected = select_targets(states, load_target_config(path),
                              vocabulary=target_vocabulary(targets))
    assert selected.sum() == select_targets(states, TargetConfig(include=None)).sum()


def test_a_package_without_target_names_checks_them_against_its_own(targets, tmp_path):
    """A package built before rules could name targets carries no names in its vocabulary:
    a name is then checked against the package's own targets."""
    old = {k: v for k, v in target_vocabulary(targets).items() if k != "target_name"}
    name = "state_2/tax_unit_count/[adjusted_gross_income<1,is_tax_filer==1]"
    path = _config(tmp_path, f"exclude:\n  - {{target_name: '{name}'}}\n")
    selected = select_targets(targets, load_target_config(path), vocabulary=old)
    assert targets.target_name[~selected & (targets.holdout == 0)].tolist() == [name]
    path = _config(tmp_path, "exclude:\n  - {target_name: 'state_2/x'}\n")
    with pytest.raises(InputError, match="matches no target"):
        select_targets(targets, load_target_config(path), vocabulary=old)


def test_holdout_never_selected(targets, tmp_path):
    rule = "{domain_variable: 'adjusted_gross_income,eitc,eitc_child_count'}"
    path = _config(tmp_path, f"include:\n  - {rule}\n")
    assert select_targets(targets, load_target_config(path)).sum() == 0


def test_unknown_variable_lists_what_exists(targets, tmp_path):
    path = _config(tmp_path, "exclude:\n  - {variable: snap_cost}\n")
    with pytest.raises(InputError) as err:
        select_targets(targets, load_target_config(path))
    assert err.value.field == "exclude[0].variable"
    assert "household_count" in err.value.fix and str(path) in str(err.value)


@pytest.mark.parametrize(("rule", "field", "fix"), [
    ("{variable: snap, geo_level: district}", "geo_level", "['state']"),
    ("{variable: household_count, domain_variable: snap, geo_level: national}", "geo_level",
     "['district', 'state']"),
    ("{variable: irs_employment_income, geo_level: state}", "geo_level", "['national']"),
    ("{variable: eitc, domain_variable: age}", "domain_variable", "occur together"),
])
def test_family_with_no_rows_at_the_named_level_is_an_error(targets, tmp_path, rule, field,
                                                            fix):
    """Each field exists, but the DB has no such family at that level: refused, naming the
    rule's field and where the family exists, whether judged against the targets or
    against a package's vocabulary."""
    path = _config(tmp_path, f"include:\n  - {rule}\n")
    for vocabulary in (None, target_vocabulary(targets)):
        with pytest.raises(InputError, match="has no") as err:
            select_targets(targets, load_target_config(path), vocabulary=vocabulary)
        assert err.value.field == f"include[0].{field}" and fix in err.value.fix


@pytest.mark.parametrize(("text", "field"), [
    ("include: [unclosed\n", None),
    ("includes:\n  - {variable: snap}\n", "includes"),
    ("include:\n  - {varible: snap}\n", "include[0].varible"),
    ("include:\n  - {geo_level: county}\n", "include[0].geo_level"),
    ("exclude: {variable: snap}\n", "exclude"),
    ("- {variable: snap}\n", None),
    # The release trained on the validation-only targets: YAML kept the second
    # `exclude:` and dropped the first without a word.
    ("exclude:\n  - {variable: eitc}\ninclude:\n  - {variable: snap}\nexclude:\n"
     "  - {variable: person_count}\n", "exclude"),
    ("include:\n  - {variable: snap, variable: eitc}\n", "include[0].variable"),
])
def test_malformed_config_is_input_error(tmp_path, text, field):
    path = _config(tmp_path, text)
    with pytest.raises(InputError) as err:
        load_target_config(path)
    assert err.value.file == str(path) and err.value.field == field and err.value.fix
    assert "\n" not in str(err.value)  # one line


def test_empty_config_selects_everything_but_holdout(targets, tmp_path):
    config = load_target_config(_config(tmp_path, "# nothing\n"))
    assert select_targets(targets, config).sum() == ALL - HELD


def test_package_subset_is_judged_against_the_db_names(targets, tmp_path):
    """A state-only package has no national targets; the shipped national rule is a no-op
    there, while a misspelt name is still an error that lists the DB's names."""
    vocabulary = target_vocabulary(targets)
    subset = targets[targets.geo_level == "state"].reset_index(drop=True)
    config = load_target_config(DEFAULT)
    selected = select_targets(subset, config, vocabulary=vocabulary)
    population = (subset.variable == "person_count") & (subset.domain_variable == "")
    assert not selected[population.to_numpy()].any()
    assert selected.sum() == len(subset) - population.sum() - subset.holdout.sum()
    typo = load_target_config(_config(tmp_path, "exclude:\n  - {variable: incme_tax}\n"))
    with pytest.raises(InputError, match="incme_tax.*income_tax"):
        select_targets(subset, typo, vocabulary=vocabulary)


SNAP_DISTRICTS = "{variable: household_count, domain_variable: snap, level: district, parent: state"


def test_default_config_scales_acs_snap_districts_to_usda_states(targets):
    configured, selected = apply_target_config(DEFAULT, targets)
    assert selected.sum() == 11_240  # reconciling changes values, not the selection
    changed = configured[configured.reconcile_rule != ""]
    assert set(changed.reconcile_rule) == {"snap_households_to_usda_states"}
    assert len(changed) == 436 and set(changed.geo_level) == {"district"}
    state = configured[(configured.geo_level == "state")
                       & (configured.variable == "household_count")
                       & (configured.domain_variable == "snap")].set_index("geographic_id")
    sums = changed.groupby(changed.geographic_id.astype(int) // 100)["value"].sum()
    for fips, total in sums.items():
        assert total == pytest.approx(state.at[str(fips), "value"], rel=1e-12)
    # Delaware's one district takes the state's (uprated USDA) count; Nevada's four keep
    # their ACS shares.
    de = changed.set_index("geographic_id").loc["1000"]
    assert de["original_value"] == 41_214
    assert de["value"] == pytest.approx(state.at["10", "value"], rel=1e-15)
    assert de["reconcile_factor"] == pytest.approx(state.at["10", "value"] / 41_214)
    nv = changed[changed.geographic_id.str.startswith("32")].set_index("geographic_id")
    assert nv.loc["3201", "value"] / nv.loc["3202", "value"] == pytest.approx(45_419 / 25_626)
    assert (nv["value"] == nv["original_value"] * nv["uprating_factor"]
            * nv["reconcile_factor"]).all()
    untouched = configured[configured.reconcile_rule == ""]
    assert (untouched.value == targets.loc[untouched.index, "value"]).all()
    assert (untouched.reconcile_factor == 1).all()


def test_drop_takes_a_level_out_of_training_and_says_why(targets, tmp_path):
    path = _config(tmp_path, f"reconcile:\n  - {SNAP_DISTRICTS}, method: drop}}\n")
    configured, selected = apply_target_config(path, targets)
    snap = ((targets.variable == "household_count") & (targets.geo_level == "district")
            & (targets.domain_variable == "snap"))
    assert not selected[snap.to_numpy()].any()
    assert selected.sum() == ALL - HELD - 436
    assert set(configured.loc[snap, "reconcile_rule"]) == {
        "drop district household_count[snap] for state"}
    assert (configured.value == targets.value).all()


def test_rules_apply_in_order(targets, tmp_path):
    """Scaled to the states, then dropped: the last rule that changed a target is recorded."""
    path = _config(tmp_path, f"reconcile:\n  - {SNAP_DISTRICTS}, method: scale, name: a}}\n"
                             f"  - {SNAP_DISTRICTS}, method: drop, name: b}}\n")
    configured, selected = apply_target_config(path, targets)
    snap = ((configured.variable == "household_count") & (configured.geo_level == "district")
            & (configured.domain_variable == "snap"))
    assert set(configured.loc[snap, "reconcile_rule"]) == {"b"}
    assert (configured.loc[snap, "reconcile_factor"] != 1).all()


@pytest.mark.parametrize(("rule", "field", "problem"), [
    ("{variable: snap_households, domain_variable: snap, level: district, parent: state, "
     "method: scale}", "reconcile[0].variable", "no target has variable 'snap_households'"),
    ("{variable: household_count, domain_variable: snap, level: district, parent: national, "
     "method: scale}", "reconcile[0].parent", "no national targets of household_count[snap]"),
    ("{variable: household_count, domain_variable: age, level: district, parent: state, "
     "method: scale}", "reconcile[0].variable", "with domain 'age'"),
    ("{variable: household_count, domain_variable: snap, level: state, parent: district, "
     "method: scale}", "reconcile[0].parent", "district is not above state"),
    ("{variable: household_count, domain_variable: snap, level: county, parent: state, "
     "method: scale}", "reconcile[0].level", "unknown geo level 'county'"),
    ("{variable: household_count, domain_variable: snap, level: district, parent: state, "
     "method: average}", "reconcile[0].method", "unknown method 'average'"),
    ("{variable: household_count, domain_variable: snap, level: district, method: drop}",
     "reconcile[0].parent", "missing"),
    ("{variable: household_count, domain_variable: snap, level: district, parent: state, "
     "method: drop, weight: 2}", "reconcile[0].weight", "unknown rule key"),
])
def test_bad_reconcile_rule_names_rule_and_fix(targets, tmp_path, rule, field, problem):
    path = _config(tmp_path, f"reconcile:\n  - {rule}\n")
    with pytest.raises(InputError) as err:
        apply_target_config(path, targets)
    assert err.value.file == str(path) and err.value.field == field
    assert problem in err.value.problem and err.value.fix


def test_unknown_level_fix_lists_where_the_statistic_exists(targets, tmp_path):
    path = _config(tmp_path, "reconcile:\n  - {variable: household_count, domain_variable: "
                             "snap, level: district, parent: national, method: scale}\n")
    with pytest.raises(InputError, match=r"where they exist: \['district', 'state'\]"):
        apply_target_config(path, targets)


def test_reconcile_in_a_package_subset_uses_the_db_names(targets):
    """A state-only package has no SNAP districts: the shipped rule changes nothing there."""
    vocabulary = target_vocabulary(targets)
    subset = targets[targets.geo_level == "state"].reset_index(drop=True)
    configured, _ = configure_targets(subset, load_target_config(DEFAULT),
                                      vocabulary=vocabulary)
    assert (configured.reconcile_rule == "").all()
    assert (configured.value == subset.value).all()
