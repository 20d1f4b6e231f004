"""policyengine-us as an engine: the engine the users of the published files run.

An optional extra (`pip install -e '.[policyengine]'`, AGPL-3.0), imported only when it
computes, so the rest of the pipeline runs without it. Always offline
(`HF_HUB_OFFLINE=1`, `dataset=` a file we wrote).

The matrix builder's path (`state_values`) works as the production system builds its
matrix: one `Microsimulation` per state over the whole base sample, every record placed in
that state, written to a file in the published files' vocabulary (so policyengine-us reads
exactly what a published household holds) and loaded as a user loads a file. Takeup
inputs this engine redraws per clone are set on (their gated variables are then zeroed by a
clone's draws). A takeup is not always a pure gate: Idaho's grocery credit is lost in the
months a household gets SNAP, so its income tax reads SNAP takeup. The trace shows what
reads each takeup input; those target variables are computed once more with it off, and a
clone's draw picks between the two (`StateValues.off`). Where the variable's unit holds
several draws (a household's SNAP reads each member's Medicaid takeup in Colorado, through
its Old Age Pension), it is computed for each combination of them at the records it
changes (`StateValues.mixed`).

A household's county changes what policyengine-us computes (ACA rating areas, SNAP
utility regions and work-requirement waivers, sales and local taxes, HUD limits), so the
first district of the state is computed in full with policyengine-core's tracer on, and
every other district only re-computes the variables the trace shows to depend on the
county, after setting each record's county there. The branches formulas keep between
calls go too: the itemization branches hold copies of what they read, so a tax unit that
itemizes in one county but not in the next would otherwise keep the first county's tax
(policyengine-core documents that branches a formula keeps are not invalidated).

Validation's path (`simulate_published`) loads a published file in `Microsimulation`, as a
user does (a file above `MAX_HOUSEHOLDS` in slices of whole households).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import os
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from pipeline.core import heap
from pipeline.core.errors import InputError
from pipeline.core.packaged import packaged
from pipeline.engine.base import Engine, EngineIdentity, Mixed, StatePlan, StateValues
from pipeline.engine.simulation import Simulation
from pipeline.engine.takeup import Takeup, draw_units, unit_uniforms
from pipeline.engine.variables import HOLDS, VARIABLES
from pipeline.microdata import H5Writer, Microdata, RowBlock, string_widths

PACKAGE = "policyengine-us"
PINNED = "2.68.0"
INSTALL = "make setup ENGINE=policyengine (or: pip install -e '.[policyengine]')"
MAX_HOUSEHOLDS = 25_000  # per Microsimulation in validation: ~3 GB resident
# A record whose variable reads more draws of one takeup than this is refused: its values are
# computed for every combination of them (2**6 copies of it in each district).
MAX_MIXED_UNITS = 6
TAKEUP_RATES = packaged("data", "takeup_rates_policyengine.csv")
# Our name -> policyengine-us's, where they differ.
ALIASES = {"is_tax_filer": "tax_unit_is_filer"}
GEOGRAPHY = ("county", "county_fips")  # the inputs a district variant changes
IDS = {"person": "person_id", "tax_unit": "tax_unit_id", "household": "household_id"}

# Redrawn per clone: turning one off zeroes its gated variables; any other target variable
# it changes has `off` values, or `mixed` ones (tests/test_policyengine.py checks all three).
SNAP = Takeup("takes_up_snap_if_eligible", "household", ("snap",), "takeup/snap",
              "snap_rate", TAKEUP_RATES)
MEDICAID = Takeup("takes_up_medicaid_if_eligible", "person", ("medicaid_enrolled",),
                  "takeup/medicaid", "medicaid_rate", TAKEUP_RATES)
# Drawn once per record (clone 0) and the same in every clone, as the production system
# keeps them: not pure gates (a tax unit that files anyway gets its premium credit whatever
# it takes up; filing changes credits and taxes), so a clone's draw could not be applied to
# values computed with it on. Both are inputs every published household carries.
ACA = Takeup("takes_up_aca_if_eligible", "tax_unit", (), "takeup/aca", "aca_rate",
             TAKEUP_RATES)
VOLUNTARY_FILING = "would_file_taxes_voluntarily"
VOLUNTARY_FILING_RATES = packaged("data", "voluntary_filing_rates.csv")


class PolicyEngineUS(Engine):
    name = "policyengine"
    computes = frozenset(VARIABLES)
    takeups = (SNAP, MEDICAID)
    max_block_households = MAX_HOUSEHOLDS
    # 2: districts drop the formulas' branches (1 kept stale values); 3: takeups' `off` values
    # (`mixed` values left it at 3: they are computed only where 3 refused the state)
    state_method = 3

    def require(self) -> None:
        installed = _installed_version()
        if installed is None:
            raise InputError(None, "engine", f"the profile asks for engine: {self.name}, but "
                             f"{PACKAGE} is not installed",
                             f"install the optional extra: {INSTALL}")
        if installed != PINNED:
            raise InputError(None, "engine", f"{PACKAGE} {installed} is installed; this "
                             f"pipeline is pinned to {PACKAGE} {PINNED}",
                             f"pip install {PACKAGE}=={PINNED} (or {INSTALL})")

    def identity(self) -> EngineIdentity:
        self.require()
        return _identity()

    def state_values(self, base: Microdata, plan: StatePlan,
                     variables: tuple[str, ...]) -> StateValues:
        self.require()
        with tempfile.TemporaryDirectory(prefix="pe-state-") as tmp:
            path = Path(tmp) / "state.h5"
            write_dataset(place(base, plan, 0, self), path)
            sim = _microsimulation(path)
            sim.trace = True
            first = {v: _values(sim, v, base.period) for v in variables}
            parents = _parents(sim.tracer.trees)
            sim.trace = False
        state = _State(sim, plan, base.period, _dependents(parents, GEOGRAPHY),
                       set(sim.input_variables))
        values = state.over_districts(variables, first)
        off, wider = {}, {}
        for takeup in self.takeups:
            reads = _dependents(parents, (takeup.variable,))
            reading = {v: values[v] for v in variables
                       if v not in takeup.gates and ALIASES.get(v, v) in reads}
            changed = _changed(values, state.takeup_off(takeup, reads, reading)
                               ) if reading else {}
            held = {v: a for v, a in changed.items() if VARIABLES[v] in HOLDS[takeup.entity]}
            if held:
                off[takeup.variable] = held
            if len(held) < len(changed):
                gates = _gate_values(state, takeup, values)
                wider[takeup] = ({v: a for v, a in changed.items() if v not in held}, gates)
        # A Microsimulation is a web of reference cycles, freed only by the cycle collector:
        # free it now, so that a worker never holds two states' simulations at once.
        del sim, state
        heap.release()
        changes = [{*off.get(t.variable, {}), *wider.get(t, ({},))[0]} for t in self.takeups]
        twice = [v for v in variables if sum(v in c for c in changes) > 1]
        if twice:
            raise InputError(None, "takeups", f"in state {plan.state_fips} {twice} change with "
                             "more than one per-clone takeup: one clone's draws could not pick "
                             "their values", "target other variables, or draw all but one of "
                             "those takeups once per record")
        mixed = {t.variable: _mixed(self, base, plan, t, values, changed, gates)
                 for t, (changed, gates) in wider.items()}
        return StateValues(plan.state_fips, plan.districts, values, off, mixed)

    def record_inputs(self, base: Microdata) -> dict[str, dict[str, np.ndarray]]:
        """ACA takeup (at the rate of the record's own state) and voluntary filing (the
        production system's rates by children, wages and the head's age), clone 0's draws."""
        hh_ids = base.household["household_id"].to_numpy()
        unit_hh = base.household_rows("tax_unit")
        state = base.household["state_fips"].to_numpy()
        aca = draw_units(ACA, hh_ids, unit_hh, 0, state)
        voluntary = unit_uniforms("takeup/voluntary_filing", hh_ids, unit_hh, 0) < (
            voluntary_filing_rates(base))
        return {"tax_unit": {ACA.variable: aca, VOLUNTARY_FILING: voluntary}}

    def simulate_published(self, path: Path, block: RowBlock | None, md: Microdata,
                           variables: tuple[str, ...]) -> Simulation:
        self.require()
        with tempfile.TemporaryDirectory(prefix="pe-block-") as tmp:
            dataset = path if block is None else _slice(path, block, Path(tmp) / "block.h5")
            sim = _microsimulation(dataset)
            period = md.period
            frames = {e: pd.DataFrame({IDS[e]: _ids(sim, IDS[e], e, period)}) for e in IDS}
            frames["person"]["household_id"] = _ids(sim, "household_id", "person", period)
            frames["person"]["tax_unit_id"] = _ids(sim, "tax_unit_id", "person", period)
            frames["tax_unit"]["household_id"] = _ids(sim, "household_id", "tax_unit", period)
            for v in variables:
                frames[VARIABLES[v]][v] = _values(sim, v, period)
        # Free the block's simulation (reference cycles) before the next one: a worker that
        # kept them grew ~0.63 GiB a 25,000-household block (3.73 GiB after Michigan's four
        # blocks, 1.84 with this; 11.2 GiB on the production walk's largest states).
        del sim
        heap.release()
        for entity, frame in frames.items():
            ours = getattr(md, entity)[IDS[entity]].to_numpy(np.int64)
            if not np.array_equal(frame[IDS[entity]].to_numpy(np.int64), ours):
                raise InputError(path, IDS[entity], f"policyengine-us reads other {entity} "
                                 "ids than the file holds (ids beyond int32, or a family id "
                                 "beyond float32's exact integers)",
                                 "materialize stacked_h5s again (ids are renumbered)")
        return Simulation(frames["person"], frames["tax_unit"], frames["household"])


class _State:
    """One state's simulation, moved between its districts (and takeups) by re-computing
    only what reads the inputs that changed."""

    def __init__(self, sim, plan: StatePlan, period: int, geography: set[str],
                 inputs: set[str]):
        self.sim, self.plan, self.period = sim, plan, period
        self.geography, self.inputs = geography, inputs

    def over_districts(self, variables: tuple[str, ...],
                       first: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """`variables` in each district (n_districts rows for those that read the county);
        `first`: the first district's, already computed where the simulation stands."""
        if first is None:
            self._move(0)
            first = {v: _values(self.sim, v, self.period) for v in variables}
        local = [v for v in variables if ALIASES.get(v, v) in self.geography]
        values = {v: first[v] for v in variables if v not in local}
        per_district = {v: [first[v]] for v in local}
        for d in range(1, len(self.plan.districts)):
            self._move(d)
            for v in local:
                per_district[v].append(_values(self.sim, v, self.period))
        values.update({v: np.stack(rows) for v, rows in per_district.items()})
        return values

    def takeup_off(self, takeup: Takeup, reads: set[str], on: dict[str, np.ndarray]
                   ) -> dict[str, np.ndarray]:
        """Those of `on`'s variables that `takeup` off for everyone changes, in each district;
        then on again. Screened in the first district: one it leaves alone there is taken to
        be alone in every district (ACA credits read Medicaid takeup in every state and never
        change with it: the screen saves ~60% of a state's time), which the X·w check proves
        on the published files."""
        self._set(takeup, False, reads)
        try:
            self._move(0)
            first = {v: _values(self.sim, v, self.period) for v in on}
            changed = [v for v in on if not np.array_equal(first[v], _district(on[v], 0))]
            if not changed:
                return {}
            return self.over_districts(tuple(changed), {v: first[v] for v in changed})
        finally:
            self._set(takeup, True, reads)

    def _set(self, takeup: Takeup, on: bool, reads: set[str]) -> None:
        n = len(self.sim.calculate(IDS[takeup.entity], self.period))
        self.sim.set_input(takeup.variable, self.period, np.full(n, on))
        self._drop(reads)

    def _move(self, district: int) -> None:
        for name, column in zip(GEOGRAPHY, (self.plan.counties, self.plan.county_fips),
                                strict=True):
            self.sim.set_input(name, self.period, _text(column[district]))
        self._drop(self.geography)

    def _drop(self, readers: set[str]) -> None:
        """Forget what read a changed input, and the branches formulas keep (they hold
        copies of what they read)."""
        for name in sorted(readers - self.inputs):
            self.sim.delete_arrays(name)
        self.sim.branches.clear()
        heap.release()  # the dropped branches are cycles: ~0.1 GiB a district otherwise


def _district(values: np.ndarray, district: int) -> np.ndarray:
    return values[district] if values.ndim == 2 else values


def _changed(on: dict[str, np.ndarray], off: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The `off` values that differ from `on` in any district (a trace shows what a
    variable reads, not whether the read changes it)."""
    def same(a: np.ndarray, b: np.ndarray) -> bool:
        return bool(np.array_equal(*np.broadcast_arrays(a, b)))
    return {v: values for v, values in off.items() if not same(on[v], values)}


def _gate_values(state: _State, takeup: Takeup, values: dict[str, np.ndarray]
                 ) -> np.ndarray:
    """Per unit of the takeup's entity, whether any of its gates is non-zero with the takeup
    on in any district: the units whose draws can matter."""
    missing = tuple(g for g in takeup.gates if g not in values)
    found = {**values, **(state.over_districts(missing) if missing else {})}
    on = [np.asarray(found[g]) != 0 for g in takeup.gates]
    return np.logical_or.reduce([a.any(axis=0) if a.ndim == 2 else a for a in on])


def _mixed(engine: PolicyEngineUS, base: Microdata, plan: StatePlan, takeup: Takeup,
           on: dict[str, np.ndarray], off: dict[str, np.ndarray], matters: np.ndarray
           ) -> Mixed:
    """The `off` variables, which live in units holding several of the takeup's draws, for
    every combination of the draws that matter, at the records where the takeup changes
    them: those records only, one copy per district and combination, in one simulation
    (policyengine-us computes a household from its own members alone; the all-on and
    all-off copies are checked against the state's values to prove it)."""
    records = _affected(base, on, off)
    units = _drawn_units(base, plan, takeup, sorted(off), records, matters)
    copies = _combination_copies(engine, base, plan, takeup, records, units)
    rows, values = _per_combination(base, plan, takeup, records, 2 ** units.shape[1],
                                    _simulated(copies, tuple(off)), on, off)
    return Mixed(records, units, rows, values)


def _affected(base: Microdata, on: dict[str, np.ndarray], off: dict[str, np.ndarray]
              ) -> np.ndarray:
    """The records (household rows) where an `off` value differs from the `on` one."""
    differs = np.zeros(len(base.household), dtype=bool)
    for v, values in off.items():
        a, b = np.broadcast_arrays(on[v], values)
        diff = a != b
        differs[base.household_rows(VARIABLES[v])[diff.any(axis=0) if diff.ndim == 2
                                                  else diff]] = True
    return np.flatnonzero(differs)


def _drawn_units(base: Microdata, plan: StatePlan, takeup: Takeup, changed: list[str],
                 records: np.ndarray, matters: np.ndarray) -> np.ndarray:
    """Per record, the rows of its units whose draws matter (-1 after the last): at least
    one and at most `MAX_MIXED_UNITS`, else InputError naming the household."""
    owner = base.household_rows(takeup.entity)
    counted = [np.flatnonzero((owner == r) & matters) for r in records]
    k = max(len(c) for c in counted)
    if k == 0 or k > MAX_MIXED_UNITS:
        worst = base.household["household_id"].to_numpy()[records[np.argmax(
            [len(c) for c in counted])]]
        raise InputError(None, "takeups", f"{takeup.variable} changes {changed} in state "
                         f"{plan.state_fips} through {k} draws of household {worst} (0 or "
                         f"more than {MAX_MIXED_UNITS} cannot be computed per combination)",
                         "target other variables, or draw that takeup once per record")
    units = np.full((len(records), k), -1, dtype=np.int64)
    for i, c in enumerate(counted):
        units[i, :len(c)] = c
    return units


def _combination_copies(engine: PolicyEngineUS, base: Microdata, plan: StatePlan,
                        takeup: Takeup, records: np.ndarray, units: np.ndarray) -> Microdata:
    """The records placed once per district and combination: copy d * combinations + c is
    in district d, and bit i of c is the draw of the record's i-th unit that matters (the
    others take up)."""
    sub = base.take_households(records)
    combos = 2 ** units.shape[1]
    n = len(plan.districts) * combos
    copies = _copies(place(sub, _restricted(plan, records), 0, engine), n)
    district = np.repeat(np.arange(n), len(sub.household)) // combos
    record = np.tile(records, n)
    copies.household["county"] = plan.counties[district, record]
    copies.household["county_fips"] = plan.county_fips[district, record]
    rank = np.tile(_ranks(units, base.household_rows(takeup.entity), records), n)
    combo = np.repeat(np.arange(n), len(getattr(sub, takeup.entity))) % combos
    getattr(copies, takeup.entity)[takeup.variable] = (rank < 0) | (
        (combo >> np.maximum(rank, 0)) & 1).astype(bool)
    return copies


def _simulated(md: Microdata, variables: tuple[str, ...]) -> dict[str, np.ndarray]:
    with tempfile.TemporaryDirectory(prefix="pe-mixed-") as tmp:
        path = Path(tmp) / "mixed.h5"
        write_dataset(md, path)
        sim = _microsimulation(path)
        computed = {v: _values(sim, v, md.period) for v in variables}
    del sim
    heap.release()
    return computed


def _per_combination(base: Microdata, plan: StatePlan, takeup: Takeup, records: np.ndarray,
                     combos: int, computed: dict[str, np.ndarray], on: dict[str, np.ndarray],
                     off: dict[str, np.ndarray]
                     ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """`Mixed`'s rows and values of each variable: its rows at the records, and its values
    per district, row and combination. InputError unless the all-on and all-off copies
    compute the state simulation's own values."""
    n_districts = len(plan.districts)
    rows, values = {}, {}
    for v in off:
        mine = np.flatnonzero(np.isin(base.household_rows(VARIABLES[v]), records))
        grid = computed[v].reshape(n_districts, combos, len(mine)).transpose(0, 2, 1)
        for name, expected, c in (("on", on[v], combos - 1), ("off", off[v], 0)):
            want = np.broadcast_to(expected, (n_districts, *np.shape(expected)[-1:]))
            if not np.array_equal(grid[:, :, c], want[:, mine]):
                raise InputError(None, "takeups", f"in state {plan.state_fips} the copies of "
                                 f"{len(records)} records with {takeup.variable} all {name} "
                                 f"compute other {v} than the state's simulation",
                                 "draw that takeup once per record")
        rows[v], values[v] = mine, grid
    return rows, values


def _ranks(units: np.ndarray, owner: np.ndarray, records: np.ndarray) -> np.ndarray:
    """Per unit of the records (their rows in order), its rank among its record's units
    that matter; -1 where its draw does not matter."""
    mine = pd.Index(np.flatnonzero(np.isin(owner, records)))
    rank = np.full(len(mine), -1, dtype=np.int64)
    counted = units >= 0
    rank[mine.get_indexer(units[counted])] = np.nonzero(counted)[1]
    return rank


def _restricted(plan: StatePlan, records: np.ndarray) -> StatePlan:
    return StatePlan(plan.state_fips, plan.districts, plan.counties[:, records],
                     plan.county_fips[:, records])


def _copies(md: Microdata, n: int) -> Microdata:
    """`md` (ids numbered from 1) `n` times over, copy c's ids after copy c-1's."""
    def repeat(table: pd.DataFrame, ids: dict[str, int]) -> pd.DataFrame:
        out = pd.concat([table] * n, ignore_index=True)
        for column, count in ids.items():
            out[column] = out[column].to_numpy() + np.repeat(np.arange(n) * count, len(table))
        return out
    hh, tu, person = len(md.household), len(md.tax_unit), len(md.person)
    return Microdata(md.period, repeat(md.household, {"household_id": hh}),
                     repeat(md.tax_unit, {"tax_unit_id": tu, "household_id": hh}),
                     repeat(md.person, {"person_id": person, "tax_unit_id": tu,
                                        "household_id": hh}))


def place(base: Microdata, plan: StatePlan, district: int, engine: PolicyEngineUS
          ) -> Microdata:
    """The base sample in one of the plan's districts, ids renumbered from 1 (policyengine-us
    stores them as int32), per-clone takeups on and per-record takeups drawn (clone 0)."""
    hh, tu, person = base.household, base.tax_unit, base.person
    n, m = len(hh), len(tu)
    hh_pos, person_hh = base.household_rows("tax_unit"), base.household_rows("person")
    person_tu = pd.Index(tu["tax_unit_id"]).get_indexer(person["tax_unit_id"])
    tables = {
        "household": hh.assign(household_id=np.arange(1, n + 1), state_fips=plan.state_fips,
                               congressional_district_geoid=int(plan.districts[district]),
                               county=plan.counties[district],
                               county_fips=plan.county_fips[district]),
        "tax_unit": tu.assign(tax_unit_id=np.arange(1, m + 1), household_id=hh_pos + 1),
        "person": person.assign(person_id=np.arange(1, len(person) + 1),
                                household_id=person_hh + 1, tax_unit_id=person_tu + 1),
    }
    for takeup in engine.takeups:
        tables[takeup.entity][takeup.variable] = True
    for entity, columns in engine.record_inputs(base).items():
        for name, values in columns.items():
            tables[entity][name] = values
    return Microdata(base.period, tables["household"], tables["tax_unit"], tables["person"])


@functools.lru_cache(maxsize=2)
def _voluntary_table(path: Path = VOLUNTARY_FILING_RATES) -> pd.DataFrame:
    if not Path(path).is_file():
        raise InputError(path, None, "voluntary filing rate file is missing",
                         "run scripts/derive_takeup_rates.py")
    return pd.read_csv(path, comment="#").set_index(["children", "wages", "age"])


def voluntary_filing_rates(base: Microdata) -> np.ndarray:
    """Per tax unit, the production system's probability of filing voluntarily: by whether
    it has child dependents (under 18), its wages (0, under $15K, under $30K, more) and
    whether its head is 65 or older."""
    tu, person = base.tax_unit, base.person
    unit = pd.Index(tu["tax_unit_id"]).get_indexer(person["tax_unit_id"])
    child = person["is_tax_unit_dependent"].to_numpy(bool) & (person["age"].to_numpy() < 18)
    children = np.bincount(unit, weights=child, minlength=len(tu)) > 0
    wages = tu["e00200"].to_numpy(float) if "e00200" in tu else np.zeros(len(tu))
    band = np.select([wages <= 0, wages < 15_000, wages < 30_000], ["zero", "low", "medium"],
                     "high")
    age = np.where(tu["age_head"].to_numpy() >= 65, "age_65_plus", "under_65")
    keys = pd.MultiIndex.from_arrays([np.where(children, "with_children", "no_children"),
                                      band, age])
    return _voluntary_table().reindex(keys)["rate"].to_numpy()


def write_dataset(md: Microdata, path: Path) -> None:
    """`md` as a published file: policyengine-us's variables only (the rest aside)."""
    with H5Writer(path, md.period, string_widths(md),
                  sidecar=path.with_suffix(".pipeline.h5")) as writer:
        writer.append(md.validate())


def _installed_version() -> str | None:
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=1)
def _identity() -> EngineIdentity:
    """policyengine-us's and policyengine-core's versions; a hash of every parameter file
    policyengine-us ships and of the takeup and voluntary filing rates this engine draws
    with."""
    core = importlib.metadata.version("policyengine-core")
    root = Path(importlib.util.find_spec("policyengine_us").submodule_search_locations[0])
    h = hashlib.sha256()
    for file in sorted((root / "parameters").rglob("*.yaml")):
        h.update(str(file.relative_to(root)).encode())
        h.update(file.read_bytes())
    h.update(TAKEUP_RATES.read_bytes())
    h.update(VOLUNTARY_FILING_RATES.read_bytes())
    return EngineIdentity("policyengine", f"{PACKAGE} {_installed_version()}, "
                          f"policyengine-core {core}", h.hexdigest())


def _microsimulation(dataset: Path):
    return _microsimulation_class()(dataset=str(dataset))


@functools.lru_cache(maxsize=1)
def _microsimulation_class():
    os.environ["HF_HUB_OFFLINE"] = "1"
    from policyengine_us import Microsimulation

    heap.freeze_what_lives()  # its tax-benefit system lives as long as this process
    return Microsimulation


def _values(sim, variable: str, period: int) -> np.ndarray:
    name = ALIASES.get(variable, variable)
    result = sim.calculate(name, period, map_to=VARIABLES[variable], use_weights=False)
    return np.asarray(result, dtype=np.float64)


def _ids(sim, name: str, entity: str, period: int) -> np.ndarray:
    result = sim.calculate(name, period, map_to=entity, use_weights=False)
    return np.asarray(result).astype(np.int64)


def _text(values: np.ndarray) -> np.ndarray:
    return np.array([str(v).encode() for v in values])


def _parents(trees: list) -> dict[str, set[str]]:
    """Each traced variable's readers: the calculations that asked for it."""
    parents: dict[str, set[str]] = {}
    stack = list(trees)
    while stack:
        node = stack.pop()
        for child in node.children:
            parents.setdefault(child.name, set()).add(node.name)
            stack.append(child)
    return parents


def _dependents(parents: dict[str, set[str]], roots: tuple[str, ...]) -> set[str]:
    """Every variable that reads one of `roots`, however indirectly."""
    found: set[str] = set()
    todo = list(roots)
    while todo:
        for parent in parents.get(todo.pop(), ()):
            if parent not in found:
                found.add(parent)
                todo.append(parent)
    return found


def _slice(path: Path, block: RowBlock, out: Path) -> Path:
    """Whole households `block` of a published file as a file of its own."""
    rows = {"household": block.households, "spm_unit": block.households,
            "family": block.households, "tax_unit": block.tax_units, "person": block.persons}
    with h5py.File(path, "r") as src, h5py.File(out, "w") as dst:
        marital = _marital_rows(src, block)
        for name, group in src.items():
            entity = group.attrs["entity"]
            for period, dataset in group.items():
                lo, hi = marital if entity == "marital_unit" else rows[entity]
                dst.create_dataset(f"{name}/{period}", data=dataset[lo:hi])
    return out


def _marital_rows(f: h5py.File, block: RowBlock) -> tuple[int, int]:
    """Marital units are written in the order of their first member: the block's are the
    ones its persons name."""
    period = str(f.attrs["period"])
    ids = f["marital_unit_id"][period][:]
    members = f["person_marital_unit_id"][period][block.persons[0]:block.persons[1]]
    where = pd.Index(ids).get_indexer(np.unique(members))
    lo, hi = int(where.min()), int(where.max()) + 1
    if hi - lo != len(where):
        raise InputError(None, "marital_unit_id", "a block's marital units are not contiguous",
                         "materialize stacked_h5s again")
    return lo, hi
