"""Simulation engines behind one interface (`base.Engine`): `builtin` (Tax-Calculator and our
SNAP test) and `policyengine` (policyengine-us, an optional extra); no Dagster."""

from pipeline.engine.base import Engine, EngineIdentity, StatePlan, StateValues
from pipeline.engine.simulation import Simulation, simulate
from pipeline.engine.taxes import TaxResults, compute_taxes
from pipeline.engine.variables import VARIABLES

ENGINES = ("builtin", "policyengine")


def load_engine(name: str) -> Engine:
    """The engine called `name` (its module is imported only when asked for)."""
    if name == "builtin":
        from pipeline.engine.builtin import BuiltinEngine

        return BuiltinEngine()
    if name == "policyengine":
        from pipeline.engine.policyengine import PolicyEngineUS

        return PolicyEngineUS()
    raise ValueError(f"unknown engine {name!r}; use one of {list(ENGINES)}")


__all__ = ["ENGINES", "VARIABLES", "Engine", "EngineIdentity", "Simulation", "StatePlan",
           "StateValues", "TaxResults", "compute_taxes", "load_engine", "simulate"]
