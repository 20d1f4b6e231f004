"""Target config: the YAML that decides which DB targets reach the optimizer, and how
conflicting levels are reconciled (`reconcile:`, see `pipeline.targets.reconcile`).

Production silently matches nothing when a rule names an unknown variable; here a rule
that matches no target is an error that lists what exists, so a typo cannot quietly
drop a target group from the fit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core.atomic import write_text
from pipeline.core.errors import InputError
from pipeline.core.yamlfile import read_yaml
from pipeline.engine import Engine
from pipeline.targets.db import normalise_domain
from pipeline.targets.reconcile import ReconcileRule, parse_rule, reconcile, target_groups
from pipeline.targets.split import VALIDATION_SPLIT

RULE_FIELDS = ("variable", "geo_level", "domain_variable", "target_name")
GEO_LEVELS = ("national", "state", "district")
SECTIONS = ("include", "exclude", "reconcile")


@dataclass(frozen=True)
class TargetRule:
    """Matches a target when every field it names matches (None = any)."""

    variable: str | None = None
    geo_level: str | None = None
    domain_variable: str | None = None
    target_name: str | None = None  # one target, as the gates and validation name it

    def mask(self, targets: pd.DataFrame) -> np.ndarray:
        out = np.ones(len(targets), dtype=bool)
        for field in RULE_FIELDS:
            want = getattr(self, field)
            if want is not None:
                have = targets[field].fillna("").astype(str)
                if field == "domain_variable":
                    have = have.map(normalise_domain)
                out &= (have == want).to_numpy()
        return out


@dataclass(frozen=True)
class TargetConfig:
    include: tuple[TargetRule, ...] | None  # None: every target
    exclude: tuple[TargetRule, ...] = ()
    path: str | None = None
    reconcile: tuple[ReconcileRule, ...] = ()


def _rule(raw: object, path: Path, where: str) -> TargetRule:
    fix = f"write each rule as a mapping with some of {list(RULE_FIELDS)}"
    if not isinstance(raw, dict) or not raw:
        raise InputError(path, where, f"rule is {raw!r}", fix)
    unknown = sorted(set(map(str, raw)) - set(RULE_FIELDS))
    if unknown:
        raise InputError(path, f"{where}.{unknown[0]}", "unknown rule key", fix)
    values = {}
    for key, value in raw.items():
        if value is None and key == "domain_variable":
            value = ""
        if not isinstance(value, str):
            raise InputError(path, f"{where}.{key}", f"value {value!r} is not a string",
                             f"quote it, e.g. {key}: \"...\"")
        values[key] = normalise_domain(value) if key == "domain_variable" else value
    if values.get("geo_level", GEO_LEVELS[0]) not in GEO_LEVELS:
        raise InputError(path, f"{where}.geo_level", f"unknown geo level {values['geo_level']!r}",
                         f"use one of {list(GEO_LEVELS)}")
    return TargetRule(**values)


def load_target_config(path: str | Path) -> TargetConfig:
    """Parse and validate the YAML; an empty file includes every target, reconciles none."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, None, "target config not found",
                         "point to a YAML file with include:/exclude: rule lists")
    doc = read_yaml(path)
    doc = {} if doc is None else doc
    if not isinstance(doc, dict):
        raise InputError(path, None, f"top level is a {type(doc).__name__}",
                         "the top level must be a mapping with include: and/or exclude:")
    unknown = sorted(set(map(str, doc)) - set(SECTIONS))
    if unknown:
        raise InputError(path, unknown[0], "unknown key", f"use only {list(SECTIONS)}")
    sections: dict[str, tuple | None] = {}
    for section in SECTIONS:
        raw = doc.get(section)
        if raw is None:
            sections[section] = None
            continue
        if not isinstance(raw, list):
            raise InputError(path, section, f"is a {type(raw).__name__}",
                             "give a list of rules, one '- {variable: ...}' per line")
        parse = parse_rule if section == "reconcile" else _rule
        sections[section] = tuple(parse(r, path, f"{section}[{i}]") for i, r in enumerate(raw))
    return TargetConfig(include=sections["include"], exclude=sections["exclude"] or (),
                        path=str(path), reconcile=sections["reconcile"] or ())


def target_vocabulary(targets_df: pd.DataFrame) -> dict[str, list]:
    """The names a rule may use: every variable, geo level, domain and target name in
    `targets_df`, and every (variable, domain, geo level) a reconcile rule may name."""
    return {
        "variable": sorted(targets_df["variable"].astype(str).unique()),
        "geo_level": sorted(targets_df["geo_level"].astype(str).unique()),
        "domain_variable": sorted(
            targets_df["domain_variable"].fillna("").astype(str).map(normalise_domain).unique()),
        "target_name": _target_names(targets_df),
        "groups": target_groups(targets_df),
    }


def _target_names(targets_df: pd.DataFrame) -> list[str]:
    return sorted(targets_df["target_name"].astype(str))


def _check_family(rule: TargetRule, groups: list[list[str]], path: str | Path | None,
                  where: str) -> None:
    """A rule whose fields each exist but never together (a family with no rows at the
    level it names) is an error, against the whole DB's (variable, domain, level) groups:
    a package for a few states still carries them."""
    want = (rule.variable, rule.domain_variable, rule.geo_level)
    if sum(w is not None for w in want) < 2:
        return
    if any(all(w is None or w == have for w, have in zip(want, group, strict=True))
           for group in groups):
        return
    family = [w for w in want[:2] if w is not None]
    levels = sorted({lvl for v, d, lvl in groups
                     if rule.variable in (None, v) and rule.domain_variable in (None, d)})
    field = "geo_level" if rule.geo_level is not None and levels else (
        "domain_variable" if rule.domain_variable is not None else "variable")
    raise InputError(path, f"{where}.{field}",
                     f"the target DB has no {'/'.join(family) or 'target'} rows"
                     + (f" at the {rule.geo_level} level" if rule.geo_level else ""),
                     f"name a level where they exist: {levels}" if levels else
                     "name a variable and domain_variable that occur together")


def check_engine(config: TargetConfig, engine: Engine, path: str | Path | None) -> None:
    """A rule naming a variable the engine does not compute is refused: it would select
    nothing (the engine's package leaves those targets out of scope)."""
    rules = [("include", config.include or ()), ("exclude", config.exclude),
             ("reconcile", config.reconcile)]
    for section, section_rules in rules:
        for i, rule in enumerate(section_rules):
            named = [rule.variable or "", *(rule.domain_variable or "").split(",")]
            missing = engine.out_of_scope(v for v in named if v)
            if missing:
                raise InputError(path, f"{section}[{i}].variable",
                                 f"{missing[0]!r} is not computed by the engine "
                                 f"{engine.name!r}: its targets are out of scope there",
                                 "run with engine: policyengine (make run ENGINE=policyengine)"
                                 " or drop the rule")


def select_targets(targets_df: pd.DataFrame, config: TargetConfig,
                   path: str | Path | None = None,
                   vocabulary: dict[str, list] | None = None,
                   engine: Engine | None = None, *,
                   train_split: bool = False) -> np.ndarray:
    """Boolean mask over `targets_df`: include first, then exclude; never a holdout target,
    except the validation split's when `train_split` (a published fit trains on every
    trusted target; its held-out twin, and everything that measures generalization, not).

    Names, and the families rules name, are checked against `vocabulary` (the whole target
    DB's, which a package carries), else against `targets_df`: a package for a few states
    has no national targets for a national rule to match, and that is no error. With an
    `engine`, a rule naming a variable it does not compute is refused.
    """
    path = path if path is not None else config.path
    if engine is not None:
        check_engine(config, engine, path)
    existing = vocabulary or target_vocabulary(targets_df)
    if "target_name" not in existing:  # a package built before rules could name targets
        existing = {**existing, "target_name": _target_names(targets_df)}
    rules = [("include", config.include or ()), ("exclude", config.exclude)]
    for section, section_rules in rules:
        for i, rule in enumerate(section_rules):
            for field in RULE_FIELDS:
                want = getattr(rule, field)
                if want is not None and want not in existing[field]:
                    raise InputError(path, f"{section}[{i}].{field}",
                                     f"{want!r} matches no target",
                                     f"use one of {_shown(existing[field])}")
            _check_family(rule, existing["groups"], path, f"{section}[{i}]")
    if config.include is None:
        selected = np.ones(len(targets_df), dtype=bool)
    else:
        selected = np.zeros(len(targets_df), dtype=bool)
        for rule in config.include:
            selected |= rule.mask(targets_df)
    for rule in config.exclude:
        selected &= ~rule.mask(targets_df)
    trusted = targets_df["holdout"].to_numpy() == 0
    if train_split:
        trusted |= (targets_df["holdout_group"] == VALIDATION_SPLIT).to_numpy()
    return selected & trusted


def _shown(names: list[str], most: int = 40) -> str:
    """The names a rule may use, cut short where there are thousands (target names)."""
    if len(names) <= most:
        return str(names)
    return f"{names[:most]} ... ({len(names)} in all; the package's targets.csv lists them)"


def configure_targets(targets_df: pd.DataFrame, config: TargetConfig,
                      path: str | Path | None = None,
                      vocabulary: dict[str, list] | None = None,
                      engine: Engine | None = None, *,
                      train_split: bool = False) -> tuple[pd.DataFrame, np.ndarray]:
    """The targets as the fit sees them (values reconciled) and the selection."""
    path = path if path is not None else config.path
    selected = select_targets(targets_df, config, path, vocabulary, engine,
                              train_split=train_split)
    groups = (vocabulary or target_vocabulary(targets_df))["groups"]
    return reconcile(targets_df, selected, config.reconcile, groups, path)


def apply_target_config(path: str | Path, targets_df: pd.DataFrame,
                        vocabulary: dict[str, list] | None = None,
                        engine: Engine | None = None, *,
                        train_split: bool = False) -> tuple[pd.DataFrame, np.ndarray]:
    """Load the YAML at `path`, then select and reconcile (errors name that file)."""
    return configure_targets(targets_df, load_target_config(path), Path(path), vocabulary,
                             engine, train_split=train_split)


def install_target_config(
    source: str | Path, destination: str | Path, targets_df: pd.DataFrame,
    engine: Engine | None = None,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Validate a user's YAML against the targets (and the engine that will compute them),
    then publish a copy for the fit to use.

    The copy makes a run immune to edits of the user's file while it is in flight.
    """
    configured = apply_target_config(source, targets_df, engine=engine)
    write_text(destination, Path(source).read_text())
    return configured
