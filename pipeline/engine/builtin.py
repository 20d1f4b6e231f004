"""The builtin engine: Tax-Calculator's federal taxes and our federal SNAP test.

Fast and dependency-free, the default of the `demo` and `ci` profiles. Its values depend on
the state only through SNAP's Alaska and Hawaii parameters, never on the county or
district. Federal taxes are computed once per distinct tax-unit row (`TaxCache`), in each
process.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import numpy as np
import taxcalc

from pipeline.core.packaged import TAKEUP_RATES
from pipeline.engine import snap as snap_rules
from pipeline.engine.base import Engine, EngineIdentity, StatePlan, StateValues
from pipeline.engine.simulation import Simulation, simulate
from pipeline.engine.takeup import EITC, SNAP
from pipeline.engine.tax_cache import TaxCache
from pipeline.engine.variables import BUILTIN
from pipeline.microdata import Microdata, RowBlock

_CACHES: dict[int, TaxCache] = {}  # per process and period: warm across calls


def tax_cache(period: int, seed: TaxCache | None = None) -> TaxCache:
    """This process's cache for `period` (the first call may hand in a warm one)."""
    return _CACHES.setdefault(period, seed or TaxCache(period))


class BuiltinEngine(Engine):
    name = "builtin"
    computes = frozenset(BUILTIN)
    takeups = (SNAP, EITC)

    def require(self) -> None:
        """Always available: its dependencies are the project's own."""

    def identity(self) -> EngineIdentity:
        return _identity()

    def state_values(self, base: Microdata, plan: StatePlan,
                     variables: tuple[str, ...]) -> StateValues:
        on = {t.entity: t.variable for t in self.takeups}
        household = base.household.assign(state_fips=plan.state_fips,
                                          **{on["household"]: True})
        tax_unit = base.tax_unit.assign(**{on["tax_unit"]: True})
        placed = Microdata(base.period, household, tax_unit, base.person)
        sim = simulate(placed, tax_cache(base.period).taxes(placed.tax_unit))
        frames = {"person": sim.person, "tax_unit": sim.tax_unit, "household": sim.household}
        values = {v: frames[BUILTIN[v]][v].to_numpy(np.float64) for v in variables}
        return StateValues(plan.state_fips, plan.districts, values)

    def simulate_published(self, path: Path, block: RowBlock | None, md: Microdata,
                           variables: tuple[str, ...]) -> Simulation:
        return simulate(md, tax_cache(md.period).taxes(md.tax_unit))


@functools.lru_cache(maxsize=1)
def _identity() -> EngineIdentity:
    """Tax-Calculator's current law, our SNAP parameters and the takeup rates."""
    h = hashlib.sha256()
    h.update((Path(taxcalc.__file__).parent / "policy_current_law.json").read_bytes())
    h.update(Path(TAKEUP_RATES).read_bytes())
    snap_parameters = {k: np.asarray(v).tolist() for k, v in vars(snap_rules).items()
                       if k.startswith("_") and isinstance(v, np.ndarray | int)}
    h.update(json.dumps(snap_parameters, sort_keys=True).encode())
    return EngineIdentity("builtin", f"taxcalc {taxcalc.__version__}", h.hexdigest())
