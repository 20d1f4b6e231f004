"""Build the calibration package: clones × geography, takeup draws, X over all active targets
the package's engine computes (the others are reported as out of scope)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config import Profile
from pipeline.core.geo import FIPS_BY_ABBR, load_districts
from pipeline.core.hashing import sha256_file
from pipeline.core.parallel import Runner
from pipeline.engine import Engine, load_engine
from pipeline.microdata import read_h5
from pipeline.package.geography import assign_geography
from pipeline.package.matrix import (
    MatrixPlan,
    RowLookup,
    build_matrix,
    initial_weights,
    parse_features,
)
from pipeline.package.store import CalibrationPackage, save_package
from pipeline.targets.config import target_vocabulary
from pipeline.targets.db import load_targets


def profile_districts(profile: Profile) -> pd.DataFrame:
    """The districts a profile covers: all of them, or those of its states."""
    districts = load_districts()
    if profile.states is None:
        return districts
    fips = _state_fips(profile.states)
    return districts[districts["state_fips"].isin(fips)].reset_index(drop=True)


def profile_targets(targets: pd.DataFrame, profile: Profile) -> pd.DataFrame:
    """Targets inside the profile's geography; national ones only for the whole country."""
    if profile.states is None:
        return targets.reset_index(drop=True)
    fips = {str(f) for f in _state_fips(profile.states)}
    state_of = targets["geographic_id"].where(
        targets["geo_level"] != "district", targets["geographic_id"].str[:-2]
    )
    keep = (targets["geo_level"] != "national") & state_of.isin(fips)
    return targets[keep].reset_index(drop=True)


def in_scope(targets: pd.DataFrame, engine: Engine) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(targets the engine computes, the rest): a target is out of scope when its variable or
    a constraint's is not one the engine computes."""
    used = [{v, *(c[0] for c in json.loads(cons))}
            for v, cons in zip(targets["variable"], targets["constraints"], strict=True)]
    ok = np.array([not engine.out_of_scope(u) for u in used], dtype=bool)
    return targets[ok].reset_index(drop=True), targets[~ok].reset_index(drop=True)


def out_of_scope_summary(targets: pd.DataFrame, engine: Engine) -> dict:
    """What a package built with `engine` leaves out (reported, never trained)."""
    return {"engine": engine.name, "targets": len(targets),
            "variables": sorted({v for v, cons in zip(targets["variable"], targets["constraints"],
                                                      strict=True)
                                 for v in {v, *(c[0] for c in json.loads(cons))}
                                 if engine.out_of_scope([v])}),
            "target_names": targets["target_name"].head(20).tolist()}


def _state_fips(abbreviations: tuple[str, ...]) -> list[int]:
    return [FIPS_BY_ABBR[a] for a in abbreviations]  # load_profile checked the names


def build_package(
    base_h5: str | Path, target_db: str | Path, out_dir: str | Path, profile: Profile,
    runner: Runner | None = None, engine: str = "builtin", cache_dir: str | Path | None = None,
) -> CalibrationPackage:
    """The package of `profile`'s geography under `engine` (per-state engine values read from
    and written to `cache_dir` when given)."""
    started = time.perf_counter()
    chosen = load_engine(engine)
    chosen.require()
    md = read_h5(base_h5)
    all_targets = load_targets(target_db)
    targets, skipped = in_scope(profile_targets(all_targets, profile), chosen)
    districts = profile_districts(profile)
    n_records = len(md.household)
    cd_geoid, county_index, counties = assign_geography(
        md.household["household_id"].to_numpy(), profile.package.n_clones, profile.seed,
        districts=districts
    )
    features, of_target = parse_features(targets)
    plan = MatrixPlan(md, sha256_file(base_h5), chosen.name, features,
                      RowLookup.of(targets, of_target, len(features),
                                    districts["cd_geoid"].to_numpy(dtype=np.int64)),
                      districts[["cd_geoid", "state_fips"]],
                      None if cache_dir is None else str(cache_dir))
    X = build_matrix(plan, targets, cd_geoid, profile.package.n_clones, runner)
    metadata = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "profile": profile.as_dict(),
        "period": md.period,
        "engine": chosen.identity().as_dict(),
        "out_of_scope": out_of_scope_summary(skipped, chosen),
        "seed": profile.seed,
        "n_records": n_records,
        "n_clones": profile.package.n_clones,
        "n_targets": len(targets),
        "nnz": int(X.nnz),
        "targets_by_level": targets["geo_level"].value_counts().to_dict(),
        "target_vocabulary": target_vocabulary(all_targets),
        "inputs": {
            "base_h5_sha256": sha256_file(base_h5),
            "target_db_sha256": sha256_file(target_db),
        },
        "lineage": {"target_db": sha256_file(target_db)},
        "build_seconds": round(time.perf_counter() - started, 2),
    }
    pkg = CalibrationPackage(
        X=X, targets=targets, initial_weights=initial_weights(targets, cd_geoid),
        cd_geoid=cd_geoid, county_index=county_index, counties=counties, metadata=metadata,
    )
    save_package(pkg, out_dir, base_h5)
    return pkg
