"""Validation's own aggregation: a target's weighted total over one block of a published file.

Deliberately separate from the matrix builder's code (pipeline.package.matrix), so the X·w
check compares two independent answers.
"""

from __future__ import annotations

import json
import operator

import numpy as np
import pandas as pd

from pipeline.core.errors import InputError
from pipeline.engine import VARIABLES, Simulation
from pipeline.microdata import Microdata

_COMPARE = {"==": operator.eq, "!=": operator.ne, ">": operator.gt, ">=": operator.ge,
            "<": operator.lt, "<=": operator.le}


class EntityTables:
    """A file's simulated values by entity, with each entity's household weight."""

    def __init__(self, md: Microdata, sim: Simulation):
        hh_id = md.household["household_id"]
        self.frames = {"household": sim.household, "tax_unit": sim.tax_unit,
                       "person": sim.person}
        self.household_id = {"household": hh_id, "tax_unit": md.tax_unit["household_id"],
                             "person": md.person["household_id"]}
        self.person_tax_unit = md.person["tax_unit_id"]
        self.tax_unit_id = md.tax_unit["tax_unit_id"]
        weight = pd.Series(md.household["household_weight"].to_numpy(np.float64),
                           index=hh_id.to_numpy())
        self.weight = {e: weight.reindex(ids.to_numpy()).to_numpy()
                       for e, ids in self.household_id.items()}
        self._cache: dict[tuple[str, str], np.ndarray] = {}

    def values(self, variable: str, entity: str) -> np.ndarray:
        """`variable` at `entity`: own values, or a larger entity's broadcast down."""
        key = (variable, entity)
        if key not in self._cache:
            source = VARIABLES[variable]
            own = self.frames[source][variable]
            if source == entity:
                out = own.to_numpy(dtype=np.float64)
            elif source == "household":
                by_id = pd.Series(own.to_numpy(np.float64), index=self.household_id[source])
                out = by_id.reindex(self.household_id[entity].to_numpy()).to_numpy()
            elif source == "tax_unit" and entity == "person":
                by_id = pd.Series(own.to_numpy(np.float64), index=self.tax_unit_id.to_numpy())
                out = by_id.reindex(self.person_tax_unit.to_numpy()).to_numpy()
            else:
                raise InputError(None, variable,
                                 f"a {source} variable cannot constrain a {entity} target",
                                 "constrain on a variable of the target's entity or a larger one")
            self._cache[key] = out
        return self._cache[key]

    def total(self, variable: str, constraints: str) -> float:
        entity = VARIABLES[variable]
        mask = np.ones(len(self.weight[entity]), dtype=bool)
        for var, op, threshold in json.loads(constraints):
            if op not in _COMPARE:
                raise InputError(None, "constraints", f"unknown operation {op!r}",
                                 f"use one of {list(_COMPARE)}")
            mask &= _COMPARE[op](self.values(str(var), entity), float(threshold))
        values = self.values(variable, entity)
        return float(np.sum(values[mask] * self.weight[entity][mask]))
