"""Build the calibration package: clones × geography, takeup draws, X over all active targets."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from pipeline.core.geo import FIPS_BY_ABBR, load_districts
from pipeline.core.hashing import sha256_file
from pipeline.core.lineage import record_parents
from pipeline.core.parallel import Runner
from pipeline.core.settings import Settings
from pipeline.engine import engine_identity
from pipeline.microdata import read_h5
from pipeline.package.geography import assign_geography
from pipeline.package.matrix import build_matrix, initial_weights
from pipeline.package.store import CalibrationPackage, save_package
from pipeline.targets.db import load_targets
from pipeline.targets.target_config import target_vocabulary

MAX_CLONES = 436  # a record's clones go to distinct districts


class GeographySettings(Settings):
    states: Literal["all"] | tuple[str, ...] = Field(
        "all", description="`all`, or state abbreviations such as [DE, VT]")

    @field_validator("states", mode="before")
    @classmethod
    def _known_states(cls, value: Any) -> Any:
        if value == "all":
            return value
        if not isinstance(value, list | tuple) or not value:
            raise ValueError("give `all` or a non-empty list of state abbreviations")
        states = tuple(str(s).upper() for s in value)
        unknown = sorted(set(states) - set(FIPS_BY_ABBR))
        if unknown:
            raise ValueError(f"unknown state abbreviations {unknown}; use {sorted(FIPS_BY_ABBR)}")
        return states

    @property
    def selected(self) -> tuple[str, ...] | None:
        """The chosen states, or None for every state."""
        return None if self.states == "all" else self.states


class PackageSettings(Settings):
    n_clones: int = Field(20, ge=1, le=MAX_CLONES, description="clones of each base record, "
                          "each in a distinct district")


def geography_districts(geography: GeographySettings) -> pd.DataFrame:
    """The districts a geography covers: all of them, or those of its states."""
    districts = load_districts()
    if geography.selected is None:
        return districts
    fips = _state_fips(geography.selected)
    return districts[districts["state_fips"].isin(fips)].reset_index(drop=True)


def geography_targets(targets: pd.DataFrame, geography: GeographySettings) -> pd.DataFrame:
    """Targets inside the geography; national ones only for the whole country."""
    if geography.selected is None:
        return targets.reset_index(drop=True)
    fips = {str(f) for f in _state_fips(geography.selected)}
    state_of = targets["geographic_id"].where(
        targets["geo_level"] != "district", targets["geographic_id"].str[:-2]
    )
    keep = (targets["geo_level"] != "national") & state_of.isin(fips)
    return targets[keep].reset_index(drop=True)


def _state_fips(abbreviations: tuple[str, ...]) -> list[int]:
    return [FIPS_BY_ABBR[a] for a in abbreviations]  # GeographySettings checked the names


def build_package(
    base_h5: str | Path, target_db: str | Path, out_dir: str | Path,
    geography: GeographySettings, package: PackageSettings, seed: int,
    runner: Runner | None = None, *, profile_record: dict[str, Any] | None = None,
) -> CalibrationPackage:
    """`seed` draws the clones' geography; `profile_record` (the whole profile, as a dict)
    is recorded in the metadata for the release manifest, never read."""
    started = time.perf_counter()
    md = read_h5(base_h5)
    all_targets = load_targets(target_db)
    targets = geography_targets(all_targets, geography)
    districts = geography_districts(geography)
    n_records = len(md.household)
    cd_geoid, county_index, counties = assign_geography(
        n_records, package.n_clones, seed, districts=districts
    )
    X = build_matrix(md, targets, cd_geoid, package.n_clones,
                     districts["cd_geoid"].to_numpy(dtype=np.int64), runner)
    metadata = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "profile": profile_record,
        "period": md.period,
        "engine": engine_identity(),
        "seed": seed,
        "n_records": n_records,
        "n_clones": package.n_clones,
        "n_targets": len(targets),
        "nnz": int(X.nnz),
        "targets_by_level": targets["geo_level"].value_counts().to_dict(),
        "target_vocabulary": target_vocabulary(all_targets),
        "inputs": {
            "base_h5_sha256": sha256_file(base_h5),
            "target_db_sha256": sha256_file(target_db),
        },
        "lineage": record_parents("calibration_package", {"target_db": target_db}),
        "build_seconds": round(time.perf_counter() - started, 2),
    }
    pkg = CalibrationPackage(
        X=X, targets=targets, initial_weights=initial_weights(targets, cd_geoid),
        cd_geoid=cd_geoid, county_index=county_index, counties=counties, metadata=metadata,
    )
    save_package(pkg, out_dir, base_h5)
    return pkg
