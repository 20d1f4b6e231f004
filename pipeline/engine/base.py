"""What the package build, stacking and validation need from a simulation engine.

Two paths use an engine and share nothing else: the matrix builder asks for every base
record's values placed in one state (`state_values`), validation asks for the values of a
published file as a user loads it (`simulate_published`). The X·w check compares the two.

An engine declares the target variables it computes (`computes`; a target naming another
variable is out of scope for it), its takeup inputs (`takeups`: drawn per household and
clone: a gate on the variables it names, so the matrix applies a clone's draws to values
computed with takeup on, and a choice between the on and `off` values of any other variable
it changes, or, where the variable's unit holds several of its draws, between the values of
each combination of them: `Mixed`) and its identity (name, version and a hash of its
parameters), which every artifact built with it records.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from pipeline.engine.simulation import Simulation
from pipeline.engine.takeup import Takeup
from pipeline.microdata import Microdata, RowBlock


@dataclass(frozen=True)
class EngineIdentity:
    name: str
    version: str
    parameters_sha256: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)

    def label(self) -> str:
        return f"{self.name} ({self.version}; parameters {self.parameters_sha256[:12]})"


@dataclass(frozen=True)
class StatePlan:
    """Where the base sample is placed for one state: in each of the state's districts,
    each record's county (a household's county is drawn per record and district)."""

    state_fips: int
    districts: np.ndarray  # int64 district GEOIDs
    counties: np.ndarray  # (n_districts, n_records) county names
    county_fips: np.ndarray  # (n_districts, n_records) 5-digit county FIPS

    def sha256(self) -> str:
        h = hashlib.sha256(f"{self.state_fips}".encode())
        for part in (self.districts, self.counties, self.county_fips):
            h.update(np.asarray(part).astype(str).tobytes())
        return h.hexdigest()


@dataclass(frozen=True)
class Mixed:
    """A variable one takeup changes in a unit that holds several of its draws (Colorado's
    Old Age Pension, which SNAP counts as income, reads a spouse's Medicaid enrollment): its
    values for every combination of the draws that matter, at the few records where the
    takeup changes it. Combination `c` sets the record's k-th unit that matters to bit k of c.
    """

    records: np.ndarray  # base household rows, ascending
    units: np.ndarray  # (records, K) base rows of the takeup entity's units that matter; -1 pads
    rows: dict[str, np.ndarray]  # variable -> base rows of its entity in `records`
    values: dict[str, np.ndarray]  # variable -> (n_districts, rows, 2**K)


@dataclass(frozen=True)
class StateValues:
    """An engine's values for the base records placed in one state, takeup on.

    Each variable's array is over the rows of its entity's base table, or, for a variable
    that depends on where in the state a record lives, (n_districts, rows): one row per
    district of `districts`, in order. `off` holds, per takeup input, the variables it
    changes beyond those it gates, computed with it off (Idaho's grocery credit, in its
    income tax, is lost in the months a household gets SNAP): a clone's draw picks one.
    `mixed` holds, per takeup input, what it changes in a unit holding several of its draws.
    """

    state_fips: int
    districts: np.ndarray
    values: dict[str, np.ndarray]
    off: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    mixed: dict[str, Mixed] = field(default_factory=dict)

    def gather(self, variable: str, rows: np.ndarray, district: np.ndarray,
               off: str | None = None) -> np.ndarray:
        """The variable at base `rows`, each in its own district (index into `districts`);
        with takeup input `off` off, if given."""
        values = self.values[variable] if off is None else self.off[off][variable]
        return values[district, rows] if values.ndim == 2 else values[rows]


class Engine(ABC):
    name: ClassVar[str]
    computes: ClassVar[frozenset[str]]
    takeups: ClassVar[tuple[Takeup, ...]]  # redrawn per clone
    max_block_households: ClassVar[int | None] = None  # per simulation in validation
    # Raised whenever `state_values` computes differently for the same engine identity,
    # so the per-state cache computes every state again rather than reuse old values.
    state_method: ClassVar[int] = 1

    @abstractmethod
    def require(self) -> None:
        """InputError unless the engine can run here (installed, the pinned version)."""

    @abstractmethod
    def identity(self) -> EngineIdentity:
        """Name, version and a hash of the parameters: results depend on all three."""

    @abstractmethod
    def state_values(self, base: Microdata, plan: StatePlan,
                     variables: tuple[str, ...]) -> StateValues:
        """Every base record placed in `plan`'s state, takeup on: the matrix builder's path."""

    @abstractmethod
    def simulate_published(self, path: Path, block: RowBlock | None, md: Microdata,
                           variables: tuple[str, ...]) -> Simulation:
        """A published file's values (one block of it, `md` as our reader reads it), as a
        user of the file computes them: validation's path."""

    def record_inputs(self, base: Microdata) -> dict[str, dict[str, np.ndarray]]:
        """Inputs drawn once per base record, the same in every clone and state (entity ->
        column -> values over the base table's rows): what the engine needs that the source
        lacks and that no clone may redraw (not a gate a clone's draw could pick through).
        None by default."""
        return {}

    def out_of_scope(self, variables: Iterable[str]) -> list[str]:
        """The variables this engine does not compute, sorted."""
        return sorted(set(variables) - self.computes)
