"""Builders shared by the tests: small microdata, packages and artifact trees."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from pipeline.core.fit_table import FITS, LOCAL, NATIONAL, Fit, configs
from pipeline.core.layout import Layout
from pipeline.core.lineage import parent_hashes, write_lineage
from pipeline.core.lock import LOCK_FILE, Holder
from pipeline.microdata import Microdata, write_h5
from pipeline.package.store import CalibrationPackage, save_package
from pipeline.targets.db import with_provenance
from pipeline.validate.totals import FitTargets

# 3 base households x 3 clones; column = clone * 3 + record.
CD = np.array([3701, 3702, 601, 3702, 3701, 602, 601, 3701, 3702], dtype=np.int32)
COUNTY = np.array([1, 2, 0, 2, 1, 0, 0, 1, 2], dtype=np.int32)
COUNTIES = np.array(["LOS_ANGELES_COUNTY_CA", "WAKE_COUNTY_NC", "DURHAM_COUNTY_NC"])


def base_microdata() -> Microdata:
    """A single parent with two children, a couple with an adult child, a retiree."""
    household = pd.DataFrame({
        "household_id": [10, 20, 30], "household_weight": [1.0, 1.0, 1.0],
        "state_fips": [37, 37, 37], "congressional_district_geoid": [0, 0, 0],
        "county": ["", "", ""], "takes_up_snap_if_eligible": [True, True, True],
        "snap_reported": [3000.0, 0.0, 1500.0],
    })
    tax_unit = pd.DataFrame({
        "tax_unit_id": [100, 200, 201, 300], "household_id": [10, 20, 20, 30],
        "takes_up_eitc": [True, True, True, True],
        "MARS": [4, 2, 1, 1], "XTOT": [3, 2, 1, 1], "EIC": [2, 0, 0, 0],
        "nu18": [2, 0, 0, 0], "n24": [2, 0, 0, 0],
        "age_head": [35, 40, 22, 70], "age_spouse": [0, 38, 0, 0],
        "e00200": [30_000.0, 90_000.0, 12_000.0, 0.0],
        "e00200p": [30_000.0, 60_000.0, 12_000.0, 0.0],
        "e00200s": [0.0, 30_000.0, 0.0, 0.0],
    })
    person = pd.DataFrame({
        "person_id": [1000, 1001, 1002, 2000, 2001, 2002, 3000],
        "household_id": [10, 10, 10, 20, 20, 20, 30],
        "tax_unit_id": [100, 100, 100, 200, 200, 201, 300],
        "age": [35, 8, 5, 40, 38, 22, 70],
        "is_tax_unit_head": [True, False, False, True, False, True, True],
        "is_tax_unit_spouse": [False, False, False, False, True, False, False],
        "is_tax_unit_dependent": [False, True, True, False, False, False, False],
        "employment_income": [30_000.0, 0, 0, 60_000.0, 30_000.0, 12_000.0, 0],
    })
    return Microdata(2024, household, tax_unit, person)


def make_package(tmp_path, X=None, targets=None, n_clones=3) -> CalibrationPackage:
    """The 3 base households cloned `n_clones` times, cycling through CD's districts."""
    base = tmp_path / "base.h5"
    write_h5(base_microdata(), base)
    if targets is None:
        targets = with_provenance(pd.DataFrame(
            {c: [] for c in ("target_id", "target_name", "variable", "geo_level",
                             "geographic_id", "domain_variable", "value", "period", "holdout",
                             "constraints")}))
    n = 3 * n_clones
    X = sp.csr_matrix((len(targets), n), dtype=np.float32) if X is None else X
    pkg = CalibrationPackage(X=X, targets=targets, initial_weights=np.ones(n),
                             cd_geoid=np.resize(CD, n), county_index=np.resize(COUNTY, n),
                             counties=COUNTIES,
                             metadata={"n_records": 3, "n_clones": n_clones, "seed": 7})
    save_package(pkg, tmp_path / "package", base)
    return pkg


W = np.array([2.5, 0.0, 1.25, 0.0, 4.0, 3.0, 0.0, 0.0, 1.0])


def small_package(n_records=3, n_clones=2) -> CalibrationPackage:
    n = n_records * n_clones
    X = sp.csr_matrix(np.array([
        [1, 0, 2, 0, 1, 0],
        [0, 0, 0, 0, 0, 0],
        [5, 5, 5, 5, 5, 5],
    ], dtype=np.float32)[:, :n])
    targets = with_provenance(pd.DataFrame({
        "target_id": [1, 2, 3],
        "target_name": ["nation/person_count/[age<5]", "state_10/snap/[snap>0]",
                        "cd_1000/household_count"],
        "variable": ["person_count", "snap", "household_count"],
        "geo_level": ["national", "state", "district"],
        "geographic_id": ["US", "10", "1000"],
        "domain_variable": ["age", "snap", ""],
        "value": [10.0, 7.0, 1e6],
        "period": [2024, 2024, 2024],
        "holdout": [0, 0, 0],
        "constraints": [json.dumps([["age", "<", 5]]), json.dumps([["snap", ">", 0]]), "[]"],
    }))
    return CalibrationPackage(
        X=X, targets=targets, initial_weights=np.full(n, 100.0),
        cd_geoid=np.full(n, 1000, dtype=np.int32), county_index=np.zeros(n, dtype=np.int32),
        counties=np.array(["KENT_COUNTY_DE"]),
        metadata={"n_records": n_records, "n_clones": n_clones, "seed": 0},
    )


CONFIG_TEXT = {LOCAL.config: "exclude: []\n", NATIONAL.config: "include: [{geo_level: state}]\n"}
WEIGHTS = {LOCAL: [1.0, 0.0, 2.0], NATIONAL: [0.0, 0.0, 3.0]}


def artifact_tree(root, fits: tuple[Fit, ...] = FITS) -> Layout:
    """Every artifact a gate judges, as tiny files of one consistent lineage."""
    layout = Layout(root)
    for path, text in ((layout.target_db, "db"), *(
            (layout.target_config(c), CONFIG_TEXT.get(c, "exclude: []\n"))
            for c in configs(fits))):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    layout.package_dir.mkdir(parents=True)
    (layout.package_dir / "X.npz").write_text("x")
    _with_lineage(layout.package_dir / "metadata.json",
                  parent_hashes(layout, "calibration_package", fits))
    for fit in fits:
        layout.fit_dir(fit).mkdir()
        np.save(layout.weights(fit), np.array(WEIGHTS.get(fit, [1.0, 1.0, 0.0])))
        _with_lineage(layout.run_config(fit), parent_hashes(layout, fit.weights, fits))
    layout.stacked_dir.mkdir()
    _with_lineage(layout.stacked_manifest, parent_hashes(layout, "stacked_h5s", fits))
    layout.validation_dir.mkdir()
    layout.validation_csv.write_text("target_name\n")
    write_lineage(layout.validation_lineage, parent_hashes(layout, "validation_results", fits))
    return layout


def _with_lineage(path, lineage: dict) -> None:
    path.write_text(json.dumps({"lineage": lineage}))


def validation_frame(errors, *, training=None, sanity=None, sim=None, holdout=None,
                     scope=None, fit="local") -> pd.DataFrame:
    """validation_results rows for targets t0..tn-1: states, then one district; `errors`
    is each row's score (and production's rel_abs_error); every target is 1, so the
    simulated value is 1 + error unless `sim` says otherwise."""
    n = len(errors)
    errors = np.asarray(errors, dtype=float)
    sim = 1 + errors if sim is None else np.asarray(sim, dtype=float)
    return pd.DataFrame({
        "area_type": ["state"] * (n - 1) + ["district"],
        "area_id": [str(i) for i in range(n)],
        "display_name": [f"area {i}" for i in range(n)],
        "district": [""] * n,
        "variable": ["snap"] * n,
        "target_name": [f"t{i}" for i in range(n)],
        "period": [2024] * n,
        "target_value": np.ones(n),
        "sim_value": sim,
        "error": sim - 1,
        "rel_error": errors,
        "abs_error": errors,
        "rel_abs_error": errors,
        "sanity_check": sanity or ["PASS"] * n,
        "sanity_reason": [""] * n,
        "in_training": training if training is not None else [True] * n,
        "holdout_group": holdout or [""] * n,
        "original_value": np.ones(n),
        "original_period": [2024] * n,
        "uprating_factor": np.ones(n),
        "reconcile_rule": [""] * n,
        "reconcile_factor": np.ones(n),
        "error_rule": ["relative"] * n,
        "error_floor": np.ones(n),
        "score": errors,
        "scope": scope or ["in_scope"] * n,
        "fit": [fit] * n,
    })


def local_view(targets: pd.DataFrame, selected: np.ndarray | None = None) -> FitTargets:
    """The local fit's view of `targets` (files without a national fit of their own):
    trained on `selected`, by default every target that is not held out."""
    if selected is None:
        selected = targets["holdout"].to_numpy() == 0
    return FitTargets.of(LOCAL, targets, selected)


def lock_holder(root) -> Holder | None:
    """The storage lock's recorded holder (live, or dead without releasing); None when free
    and clean."""
    path = Path(root) / LOCK_FILE
    try:
        return Holder(**json.loads(path.read_text()))
    except (OSError, ValueError):  # no lock file, a clean release (empty), or being written
        return None
