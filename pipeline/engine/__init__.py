"""The simulation engine: federal taxes (Tax-Calculator), SNAP, takeup; no Dagster."""

from pipeline.engine.simulation import Simulation, simulate
from pipeline.engine.taxes import TaxResults, compute_taxes, engine_identity
from pipeline.engine.variables import VARIABLES

__all__ = ["VARIABLES", "Simulation", "TaxResults", "compute_taxes", "engine_identity", "simulate"]
