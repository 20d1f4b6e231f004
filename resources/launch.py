"""What a run is asked to do, checked when it starts, before its first step.

The launchpad's values (a fit's `records`, `allocation`, any FitParams or allocation
setting, a waiver) are applied to the profile's sections exactly as the assets apply them
and refused in one line naming the launchpad field, so an impossible record budget (or a
waiver of an integrity check) is refused at launch, not after the local fit and the
allocation search have run.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from pipeline.config import Profile
from pipeline.core.errors import InputError
from pipeline.core.fit_table import FITS, Fit
from pipeline.core.layout import ALLOCATION_META, Layout
from pipeline.release.waivers import parse_waiver
from pipeline.sparsity import AllocationSettings

PACKAGE = "calibration_package"
WAIVER = "launchpad resources.waiver.config"
ALLOCATION = "sparsity_allocation"


def check_launch(run_config: Mapping[str, Any], profile: Profile, layout: Layout,
                 steps: Iterable[str] | None, fits: tuple[Fit, ...] = FITS) -> None:
    """Refuse (InputError) launchpad values no run could honour. `steps` are the run's step
    keys (None: the whole job); the record budget is judged against the package's columns
    when this run does not rebuild the package, else against the most the profile's
    package can have."""
    ops = run_config.get("ops") or {}
    steps = None if steps is None else set(steps)
    columns, source = _columns(profile, layout, rebuilt=steps is None or PACKAGE in steps)
    for fit in fits:
        given = (ops.get(fit.weights) or {}).get("config") or {}
        where = f"launchpad ops.{fit.weights}.config"
        try:
            params = profile.fit_params(fit).with_(**given)
        except InputError as exc:
            raise InputError(where, exc.field, exc.problem, exc.fix) from None
        if params.records is not None and params.records > columns:
            raise InputError(where, "records", f"a budget of {params.records:,} records "
                             f"exceeds the {columns:,} columns of {source}",
                             f"set records to at most {columns:,}")
        searched = steps is None or ALLOCATION in steps
        if params.allocation == "learned" and not searched and not (
                layout.allocation_dir / ALLOCATION_META).is_file():
            raise InputError(where, "allocation", "allocation: learned, but no "
                             f"{ALLOCATION} exists under {layout.root}",
                             "run the allocation_search job first (make allocate), or set "
                             "allocation: budget")
    given = (ops.get(ALLOCATION) or {}).get("config") or {}
    try:
        AllocationSettings.model_validate({**profile.allocation.model_dump(), **given})
    except ValueError as exc:
        raise InputError(f"launchpad ops.{ALLOCATION}.config", None, str(exc).splitlines()[0],
                         "correct the value in the launchpad") from None
    waiver = ((run_config.get("resources") or {}).get("waiver") or {}).get("config") or {}
    parse_waiver(waiver.get("rules") or [], waiver.get("reason") or "",
                 waiver.get("operator") or "", None, WAIVER, fits)


def _columns(profile: Profile, layout: Layout, rebuilt: bool) -> tuple[int, str]:
    """The columns a fit of this run can keep, and where that number comes from."""
    meta = layout.package_dir / "metadata.json"
    if not rebuilt and meta.is_file():
        recorded = json.loads(meta.read_text())
        return (int(recorded["n_records"]) * int(recorded["n_clones"]),
                f"the calibration package under {layout.root}")
    return (profile.sample.households * profile.package.n_clones,
            f"the package profile {profile.name!r} builds (sample.households "
            f"{profile.sample.households:,} x package.n_clones {profile.package.n_clones})")
