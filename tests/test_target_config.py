"""Target config: YAML parsing, include/exclude selection, loud errors, holdout protection."""


import pytest

from pipeline.core.errors import InputError
from pipeline.core.packaged import DEFAULT_TARGET_CONFIG as DEFAULT  # noqa: E402
from pipeline.targets.config import (
    TargetRule,
    load_target_config,
    select_targets,
    target_vocabulary,
)
from pipeline.targets.db import load_targets
from pipeline.targets.etl import build_target_db


@pytest.fixture(scope="module")
def targets(tmp_path_factory):
    path = tmp_path_factory.mktemp("db") / "targets.db"
    build_target_db(path)
    return load_targets(path)


def _config(tmp_path, text):
    path = tmp_path / "targets.yaml"
    path.write_text(text)
    return path


def test_default_config_trains_on_all_but_holdout_population_and_income_tax(targets):
    config = load_target_config(DEFAULT)
    assert config.include is None
    assert config.exclude == (TargetRule("person_count", "state", ""),
                              TargetRule("income_tax", "national", None))
    selected = select_targets(targets, config)
    assert selected.sum() == 10_760 - 276 - 51 - 1 == 10_432
    assert not selected[targets.holdout.to_numpy() == 1].any()
    dropped = targets[~selected & (targets.holdout == 0)]
    assert sorted(dropped.target_name.str.split("/").str[1].unique()) == [
        "income_tax", "person_count"]
    assert len(dropped) == 52


def test_include_then_exclude(targets, tmp_path):
    path = _config(tmp_path, "include:\n  - {geo_level: district}\n  - {variable: snap}\n"
                             "exclude:\n  - {domain_variable: age}\n")
    selected = select_targets(targets, load_target_config(path))
    # district SNAP households (436) + state SNAP cost (51)
    assert selected.sum() == 436 + 51
    assert set(targets[selected].variable) == {"household_count", "snap"}


def test_domain_order_does_not_matter(targets, tmp_path):
    path = _config(tmp_path, "include:\n"
                             "  - {domain_variable: 'is_tax_filer, adjusted_gross_income'}\n")
    selected = select_targets(targets, load_target_config(path))
    # state bands + national bands (no total), less the 52 negative below-$1 AGI amounts
    assert selected.sum() == 51 * 20 + 19 * 2 - 52


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


def test_rule_matching_nothing_is_an_error(targets, tmp_path):
    path = _config(tmp_path, "include:\n  - {variable: snap, geo_level: district}\n")
    with pytest.raises(InputError, match="matches no target"):
        select_targets(targets, load_target_config(path))


@pytest.mark.parametrize(("text", "field"), [
    ("include: [unclosed\n", None),
    ("includes:\n  - {variable: snap}\n", "includes"),
    ("include:\n  - {varible: snap}\n", "include[0].varible"),
    ("include:\n  - {geo_level: county}\n", "include[0].geo_level"),
    ("exclude: {variable: snap}\n", "exclude"),
    ("- {variable: snap}\n", None),
])
def test_malformed_config_is_input_error(tmp_path, text, field):
    path = _config(tmp_path, text)
    with pytest.raises(InputError) as err:
        load_target_config(path)
    assert err.value.file == str(path) and err.value.field == field and err.value.fix


def test_empty_config_selects_everything_but_holdout(targets, tmp_path):
    config = load_target_config(_config(tmp_path, "# nothing\n"))
    assert select_targets(targets, config).sum() == 10_760 - 276


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
