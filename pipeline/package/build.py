"""Build the calibration package: clones × geography, takeup draws, X over all active targets
the package's engine computes (the others are reported as out of scope)."""

from __future__ import annotations

import json
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
    return [FIPS_BY_ABBR[a] for a in abbreviations]  # GeographySettings checked the names


def build_package(
    base_h5: str | Path, target_db: str | Path, out_dir: str | Path,
    geography: GeographySettings, package: PackageSettings, seed: int,
    runner: Runner | None = None, *, profile_record: dict[str, Any] | None = None,
    engine: str = "builtin", cache_dir: str | Path | None = None,
) -> CalibrationPackage:
    """`seed` draws the clones' geography; `profile_record` (the whole profile, as a dict)
    is recorded in the metadata for the release manifest, never read. `engine` computes X
    (its per-state values read from and written to `cache_dir` when given); the targets it
    does not compute are left out and reported."""
    started = time.perf_counter()
    chosen = load_engine(engine)
    chosen.require()
    md = read_h5(base_h5)
    all_targets = load_targets(target_db)
    targets, skipped = in_scope(geography_targets(all_targets, geography), chosen)
    districts = geography_districts(geography)
    n_records = len(md.household)
    cd_geoid, county_index, counties = assign_geography(
        md.household["household_id"].to_numpy(), package.n_clones, seed, districts=districts
    )
    features, of_target = parse_features(targets)
    plan = MatrixPlan(md, sha256_file(base_h5), chosen.name, features,
                      RowLookup.of(targets, of_target, len(features),
                                    districts["cd_geoid"].to_numpy(dtype=np.int64)),
                      districts[["cd_geoid", "state_fips"]],
                      None if cache_dir is None else str(cache_dir))
    X, state_seconds = build_matrix(plan, targets, cd_geoid, package.n_clones, runner)
    metadata = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "profile": profile_record,
        "period": md.period,
        "engine": chosen.identity().as_dict(),
        "out_of_scope": out_of_scope_summary(skipped, chosen),
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
        "state_seconds": {str(k): v for k, v in state_seconds.items()},
    }
    pkg = CalibrationPackage(
        X=X, targets=targets, initial_weights=initial_weights(targets, cd_geoid),
        cd_geoid=cd_geoid, county_index=county_index, counties=counties, metadata=metadata,
    )
    save_package(pkg, out_dir, base_h5)
    return pkg
