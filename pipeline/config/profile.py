"""The profile: one typed model for a build's size, its fits and its gate thresholds.

The composition layer: each section is the settings model of the stage that reads it, and
the stage is handed its section, never the profile (no stage imports this module).

A profile file states only what differs from the defaults below; `pipeline/config/profiles/`
ships `demo`, `ci` and `production`. Loading checks every key and range, so a typo or an
impossible value stops the run before any stage starts, naming the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from pipeline.core.errors import InputError
from pipeline.core.fit_table import FITS, Fit
from pipeline.core.packaged import PROFILE_DIR
from pipeline.core.settings import Settings, parse_settings
from pipeline.core.yamlfile import read_yaml
from pipeline.fit.params import FitParams, NationalFitParams
from pipeline.package.build import GeographySettings, PackageSettings
from pipeline.release.thresholds import GateSettings
from pipeline.source.stratify import SampleSettings
from pipeline.sparsity.allocation_settings import AllocationSettings
from pipeline.targets.split import SplitSettings


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
    fit: FitParams = FitParams()  # the local fit: the state and district files
    national_fit: NationalFitParams = NationalFitParams()  # national.h5
    allocation: AllocationSettings = AllocationSettings()  # the learned allocation's search
    gates: GateSettings = GateSettings()

    def fit_params(self, fit: Fit) -> FitParams:
        """A fit's hyperparameters: its section (`Fit.section`) of this profile."""
        return getattr(self, fit.section)

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
    raw = read_yaml(path)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise InputError(path, None, f"top level is a {type(raw).__name__}",
                         "write a mapping such as `name: mine` with the sections to change")
    profile = parse_settings(Profile, {"name": path.stem, **raw}, path)
    check_budgets(profile, path)
    return profile


def check_budgets(profile: Profile, path: str | Path | None) -> None:
    """A record budget beyond the package's columns (at most sample households x clones)
    is refused when the profile loads, before any stage runs, not by the fit it reaches."""
    columns = profile.sample.households * profile.package.n_clones
    for fit in FITS:
        records, section = profile.fit_params(fit).records, fit.section
        if records is not None and records > columns:
            raise InputError(path, f"{section}.records", f"a budget of {records:,} records "
                             f"exceeds the {columns:,} columns this profile's package has at "
                             f"most (sample.households {profile.sample.households:,} x "
                             f"package.n_clones {profile.package.n_clones})",
                             f"set {section}.records to at most {columns:,}, or give more "
                             "households or clones")
