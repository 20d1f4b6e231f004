"""Profiles: plain YAML a user can read and change, naming the size of a build."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline.core.errors import InputError
from pipeline.core.geo import FIPS_BY_ABBR
from pipeline.core.packaged import PROFILE_DIR


@dataclass(frozen=True)
class Profile:
    name: str
    period: int
    seed: int
    households: int
    top_agi_quantile: float  # households at or above it are kept whole by stratification
    states: tuple[str, ...] | None  # None = every state
    n_clones: int
    fit: dict[str, Any] = field(default_factory=dict)
    gates: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "period": self.period, "seed": self.seed,
            "households": self.households, "top_agi_quantile": self.top_agi_quantile,
            "states": list(self.states or []) or "all",
            "n_clones": self.n_clones, "fit": self.fit, "gates": self.gates,
        }


def profile_path(name_or_path: str) -> Path:
    """A bare name means `profiles/<name>.yaml`; anything with a suffix is a path."""
    if name_or_path.endswith((".yaml", ".yml")):
        return Path(name_or_path)
    return PROFILE_DIR / f"{name_or_path}.yaml"


def load_profile(name_or_path: str) -> Profile:
    path = profile_path(name_or_path)
    if not path.exists():
        known = sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))
        raise InputError(path, None, "profile not found", f"use one of {known} or a YAML path")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InputError(path, None, f"not valid YAML ({exc})", "fix the YAML syntax") from exc
    try:
        states = raw["geography"]["states"]
        profile = Profile(
            name=str(raw.get("name", path.stem)),
            period=int(raw["period"]),
            seed=int(raw["seed"]),
            households=int(raw["sample"]["households"]),
            top_agi_quantile=float(raw["sample"].get("top_agi_quantile", 0.99)),
            states=None if states == "all" else tuple(str(s).upper() for s in states),
            n_clones=int(raw["package"]["n_clones"]),
            fit=dict(raw.get("fit") or {}),
            gates=dict(raw.get("gates") or {}),
            source=str(path),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(path, str(exc).strip("'"), "missing or malformed",
                         "compare with profiles/demo.yaml") from exc
    unknown = sorted(set(profile.states or ()) - set(FIPS_BY_ABBR))
    if unknown:
        raise InputError(path, "geography.states", f"unknown state abbreviations {unknown}",
                         f"use `all` or some of {sorted(FIPS_BY_ABBR)}")
    if profile.n_clones < 1 or profile.households < 1:
        raise InputError(path, "package.n_clones", "must be positive", "set a positive number")
    return profile
