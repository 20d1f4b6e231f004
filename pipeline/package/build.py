"""Build the calibration package: clones × geography, takeup draws, X over all active targets."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config import Profile
from pipeline.core.geo import FIPS_BY_ABBR, load_districts
from pipeline.core.hashing import sha256_file
from pipeline.core.parallel import Runner
from pipeline.engine import engine_identity
from pipeline.microdata import read_h5
from pipeline.package.geography import assign_geography
from pipeline.package.matrix import build_matrix, initial_weights
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


def _state_fips(abbreviations: tuple[str, ...]) -> list[int]:
    return [FIPS_BY_ABBR[a] for a in abbreviations]  # load_profile checked the names


def build_package(
    base_h5: str | Path, target_db: str | Path, out_dir: str | Path, profile: Profile,
    runner: Runner | None = None,
) -> CalibrationPackage:
    started = time.perf_counter()
    md = read_h5(base_h5)
    all_targets = load_targets(target_db)
    targets = profile_targets(all_targets, profile)
    districts = profile_districts(profile)
    n_records = len(md.household)
    cd_geoid, county_index, counties = assign_geography(
        n_records, profile.package.n_clones, profile.seed, districts=districts
    )
    X = build_matrix(md, targets, cd_geoid, profile.package.n_clones,
                     districts["cd_geoid"].to_numpy(dtype=np.int64), runner)
    metadata = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "profile": profile.as_dict(),
        "period": md.period,
        "engine": engine_identity(),
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
