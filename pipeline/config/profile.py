"""The profile: one typed model for a build's size, its fit and its gate thresholds.

A profile file states only what differs from the defaults below; `pipeline/config/profiles/`
ships `demo`, `ci` and `production`. Loading checks every key and range, so a typo or an
impossible value stops the run before any stage starts, naming the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, field_validator

from pipeline.core.errors import InputError
from pipeline.core.geo import FIPS_BY_ABBR
from pipeline.core.packaged import PROFILE_DIR
from pipeline.core.settings import Settings, parse_settings
from pipeline.fit.params import FitParams, NationalFitParams
from pipeline.fit.review import FitThresholds
from pipeline.sparsity.settings import AllocationSettings
from pipeline.validate.quality import QualityThresholds

MAX_CLONES = 436  # a record's clones go to distinct districts


class SampleSettings(Settings):
    households: int = Field(12_000, ge=100, description="stratified base sample size")
    top_agi_quantile: float = Field(0.99, gt=0, lt=1, description="households at or above "
                                    "this weighted AGI quantile are kept whole")


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


class PackageSettings(Settings):
    n_clones: int = Field(20, ge=1, le=MAX_CLONES, description="clones of each base record, "
                          "each in a distinct district")


class SplitSettings(Settings):
    share: float = Field(0.1, ge=0, lt=1, description="share of each variable x geo level's "
                         "trainable targets held out as the validation split")
    seed: int = Field(0, ge=0, description="which targets the split draws")


class GateSettings(Settings):
    consistency_tolerance: float = Field(0.01, gt=0, description="X·w against the totals "
                                         "computed from the published files")
    hierarchy_tolerance: float = Field(0.05, gt=0, description="warning when a parent target "
                                       "and the sum of its children differ by more")
    fit: FitThresholds = FitThresholds()
    quality: QualityThresholds = QualityThresholds()


class Profile(Settings):
    name: str
    engine: Literal["builtin", "policyengine"] = Field(
        "builtin", description="the simulation engine that builds X and judges the files: "
        "builtin (Tax-Calculator and our SNAP test) or policyengine (policyengine-us, the "
        "engine the files' users run; needs the policyengine extra)")
    period: int = Field(2024, ge=2014, le=2034, description="the calibration year")
    seed: int = Field(0, ge=0, description="stratified sample and geography draws")
    sample: SampleSettings = SampleSettings()
    geography: GeographySettings = GeographySettings()
    package: PackageSettings = PackageSettings()
    validation_split: SplitSettings = SplitSettings()
    fit: FitParams = FitParams()  # the local-area fit: the state and district files
    national_fit: NationalFitParams = NationalFitParams()  # national.h5
    allocation: AllocationSettings = AllocationSettings()  # the learned allocation's search
    gates: GateSettings = GateSettings()

    @property
    def states(self) -> tuple[str, ...] | None:
        """The profile's states, or None for every state."""
        return None if self.geography.states == "all" else self.geography.states

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def profile_path(name_or_path: str) -> Path:
    """A bare name means a shipped profile; anything ending in .yaml/.yml is a path."""
    if name_or_path.endswith((".yaml", ".yml")):
        return Path(name_or_path)
    return PROFILE_DIR / f"{name_or_path}.yaml"


def shipped_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def load_profile(name_or_path: str) -> Profile:
    path = profile_path(name_or_path)
    if not path.is_file():
        raise InputError(path, None, "profile not found",
                         f"use one of {shipped_profiles()} or a YAML path")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InputError(path, None, f"not valid YAML ({exc})", "fix the YAML syntax") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise InputError(path, None, f"top level is a {type(raw).__name__}",
                         "write a mapping such as `name: mine` with the sections to change")
    return parse_settings(Profile, {"name": path.stem, **raw}, path)
