"""The validation split: 10% of each variable x geo level's trainable targets, a fixed
function of the target DB and a seed, never trained on whatever the config says."""

import numpy as np
import pytest

from pipeline.core.packaged import DEFAULT_TARGET_CONFIG
from pipeline.targets.db import load_targets
from pipeline.targets.etl import build_target_db
from pipeline.targets.split import VALIDATION_SPLIT, split_mask, split_scope
from pipeline.targets.target_config import apply_target_config


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("db") / "targets.db"
    build_target_db(path)
    return load_targets(path)


def test_ten_percent_of_each_variable_and_level_is_held_out(db):
    split = db[db.holdout_group == VALIDATION_SPLIT]
    assert (split.holdout == 1).all()
    trainable = db[db.holdout_group.isin(["", VALIDATION_SPLIT])]
    sizes = trainable.groupby(["variable", "geo_level"]).size()
    drawn = split.groupby(["variable", "geo_level"]).size().reindex(sizes.index, fill_value=0)
    assert (drawn == np.floor(0.1 * sizes + 0.5)).all()
    # 1,049 of the builtin engine's families, 24 of the policyengine-only state families
    assert drawn[("person_count", "district")] == 785 and drawn.sum() == 1073
    # The other held-out groups keep their own targets.
    assert not split.target_name.str.contains("eitc_child_count").any()


def test_the_split_is_the_db_names_and_the_seed_and_nothing_else(db, tmp_path):
    trainable = db[db.holdout_group.isin(["", VALIDATION_SPLIT])]
    groups = trainable.variable + "|" + trainable.geo_level
    recomputed = split_mask(trainable.target_name, groups, 0.1, 0)
    assert (recomputed == (trainable.holdout_group == VALIDATION_SPLIT).to_numpy()).all()
    # Row order does not matter; another seed draws other targets.
    order = np.random.default_rng(1).permutation(len(trainable))
    shuffled = split_mask(trainable.target_name.iloc[order], groups.iloc[order], 0.1, 0)
    assert (shuffled == recomputed[order]).all()
    other = split_mask(trainable.target_name, groups, 0.1, 1)
    assert other.sum() == recomputed.sum() and (other != recomputed).any()
    build_target_db(tmp_path / "again.db", split_seed=1)
    again = load_targets(tmp_path / "again.db")
    again = again[again.holdout_group.isin(["", VALIDATION_SPLIT])]
    assert (again.target_name.to_numpy() == trainable.target_name.to_numpy()).all()
    assert ((again.holdout_group == VALIDATION_SPLIT).to_numpy() == other).all()


def test_no_config_trains_on_the_split(db, tmp_path):
    greedy = tmp_path / "all.yaml"
    greedy.write_text("include:\n  - {geo_level: district}\n  - {geo_level: state}\n"
                      "  - {geo_level: national}\n")
    for config in (DEFAULT_TARGET_CONFIG, greedy):
        _, selected = apply_target_config(config, db)
        assert not selected[(db.holdout_group == VALIDATION_SPLIT).to_numpy()].any()


def test_a_fit_is_judged_on_the_split_of_the_groups_it_trains(db, tmp_path):
    national = tmp_path / "national.yaml"
    national.write_text("include:\n  - {geo_level: state}\n  - {geo_level: national}\n"
                        "exclude:\n  - {variable: person_count, geo_level: state, "
                        "domain_variable: ''}\n")
    targets, selected = apply_target_config(national, db)
    scope = split_scope(targets, selected)
    judged = targets[scope]
    assert set(judged.geo_level) == {"national", "state"}
    split = targets.holdout_group == VALIDATION_SPLIT
    # State population totals are split like any target, but this config trains none.
    totals = split & (targets.variable == "person_count") & (targets.geo_level == "state") & (
        targets.domain_variable == "")
    assert totals.any() and not scope[totals.to_numpy()].any()
    assert scope.sum() == (split & targets.geo_level.isin(["national", "state"])).sum() - (
        totals.sum())
