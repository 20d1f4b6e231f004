"""The fault and attack table: every way issue 20 promoted a wrong release, hung a run or let
bad input through, plus this project's own attacks, and what each does now.

    .venv/bin/python benchmarks/bench_attacks.py [--work DIR] [--only NAME ...] \
        [--out benchmarks/results/attacks.md]

It builds the ci profile once (full rebuild, then a refit judged against that release and
stopped before promotion: the state "every check passed, nothing promoted yet"), with the
committed dagster.yaml as the instance's settings. Each row works on a copy of that world:
it does what a user, an attacker or the machine would (edit a file after the checks, drop a
stray file, judge with one profile and promote with another, kill a run), runs what a person
runs (`dagster asset materialize --select promoted_release` with the Makefile's environment,
`make run`, `calibrate ...`), and records:
- rc and the message: the last line the user reads that names the problem;
- promoted: whether CURRENT moved to a new release; wrong: a new release holding bytes no
  check judged, or judged with other thresholds than the ones promoted under;
- lost: a release promoted before the row no longer matches its manifest, or CURRENT broke;
- orphans: temporary files and unpromoted releases left after the next run (the same
  command again; for the crash rows, the next `make run`), and whether that run succeeded.
Goals: 0 wrong promotions; every crash survived with the next run proceeding unaided; every
bad input refused before any expensive stage with file, field and fix, no traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h5py

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "attacks.md"
BIN = Path(sys.executable).parent
PROMOTE = [str(BIN / "dagster"), "asset", "materialize", "-m", "assets.definitions",
           "--select", "promoted_release"]
RUN_REFIT = [sys.executable, "-m", "assets.run", "--profile", "ci", "--job", "refit"]
ERROR_LINE = re.compile(r"^(error: |[\w.]*(Error|Busy|Full)\b[^:]*: |make: \*\*\*)")


TIMEOUT = 420.0  # a ci refit takes 1-3 minutes on a shared box; past this it hangs
HUNG = 124


def run_bounded(args: list[str], env: dict[str, str], timeout: float = TIMEOUT
                ) -> subprocess.CompletedProcess:
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        err += f"\nHUNG: no end after {timeout:.0f} s; killed"
        return subprocess.CompletedProcess(args, HUNG, out, err)
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


# --- the world ------------------------------------------------------------------------------

@dataclass(frozen=True)
class World:
    dir: Path

    @property
    def root(self) -> Path:
        return self.dir / "storage"

    @property
    def home(self) -> Path:
        return self.dir / "dagster_home"

    @property
    def config(self) -> Path:
        return self.dir / "targets.yaml"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CALIBRATION_")}
        # PYTHONPATH: this checkout's code, whichever checkout the venv was installed from.
        return {**env, "PYTHONPATH": str(ROOT),
                "DAGSTER_HOME": str(self.home), "CALIBRATION_STORAGE_ROOT": str(self.root),
                "CALIBRATION_PROFILE": "ci", "CALIBRATION_TARGET_CONFIG": str(self.config),
                "CALIBRATION_DEVICE": "cpu", "CALIBRATION_DASK": "inprocess", **extra}

    def run(self, args: list[str], timeout: float = TIMEOUT, **extra: str
            ) -> subprocess.CompletedProcess:
        """rc HUNG when it ran past `timeout` (then its process group is killed: a run
        waiting on a pool ignores SIGTERM)."""
        return run_bounded(args, self.env(**extra), timeout)

    def copy(self, to: Path) -> World:
        shutil.copytree(self.dir, to, symlinks=True)
        return World(to)


def build(directory: Path) -> World:
    """Full rebuild (release 1), then everything of a refit but the promotion."""
    world = World(directory)
    world.home.mkdir(parents=True)
    shutil.copy(ROOT / "dagster.yaml", world.home / "dagster.yaml")
    shutil.copy(ROOT / "pipeline" / "config" / "targets.yaml", world.config)
    script = (
        "import sys\n"
        "from dagster import AssetKey, DagsterInstance\n"
        "from assets.definitions import make_definitions\n"
        "defs = make_definitions()\n"
        "instance = DagsterInstance.get()\n"
        "assert defs.resolve_job_def('full_rebuild').execute_in_process(instance=instance)"
        ".success\n"
        "job = defs.resolve_implicit_global_asset_job_def()\n"
        "keys = [AssetKey(k) for k in ('target_config', 'national_target_config', "
        "'calibration_weights', 'national_weights', 'stacked_h5s', 'validation_results')]\n"
        "assert job.execute_in_process(instance=instance, asset_selection=keys).success\n")
    done = world.run([sys.executable, "-c", script], timeout=7200)
    if done.returncode != 0:
        raise SystemExit(f"building the ci world failed:\n{done.stderr[-5000:]}")
    return world


# --- what a row observes --------------------------------------------------------------------

def releases(root: Path) -> dict[str, dict]:
    out = {}
    base = root / "releases"
    for p in sorted(base.iterdir()) if base.is_dir() else []:
        if p.is_dir() and not p.is_symlink() and (p / "manifest.json").is_file():
            out[p.name] = json.loads((p / "manifest.json").read_text())
    return out


def current(root: Path) -> str | None:
    link = root / "releases" / "CURRENT"
    return os.readlink(link) if link.is_symlink() else None


def sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def release_intact(root: Path, version: str, manifest: dict) -> bool:
    path = root / "releases" / version
    files = manifest["files"]
    on_disk = {str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()}
    return on_disk == set(files) | {"manifest.json"} and all(
        sha256(path / rel) == entry["sha256"] for rel, entry in files.items())


def temps(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob(".tmp-*"))


def unpromoted(root: Path) -> list[str]:
    history = root / "releases" / "history.json"
    if not history.is_file():
        return []
    seen = {e["version"] for e in json.loads(history.read_text())}
    seen.add(current(root) or "")
    return sorted(set(releases(root)) - seen)


OURS = re.compile(r"^(error: |(InputError|GateError|PoolBusy|StorageBusy|StorageFull)\b)")
FAILED_CHECK = re.compile(r"Asset check '\w+' on '\w+' failed")


def message(done: subprocess.CompletedProcess) -> str:
    """What names the problem, as the user reads it: the pipeline's own error (not Dagster's
    wrappers, nor the exception it was raised from), else a failed check, else another
    error, else the current release's line of `calibrate releases`, else the last line."""
    lines = [ln.strip() for ln in (done.stdout + "\n" + done.stderr).splitlines() if ln.strip()]
    lines = [re.sub(r"^[\w.]+\.(\w+(Error|Busy|Full)): ", r"\1: ",
                    ln.split(" - ", 6)[-1] if " - dagster - " in ln else ln) for ln in lines]
    if done.returncode == HUNG:
        return lines[-1]
    for wanted in (OURS.match, FAILED_CHECK.search, lambda ln: ERROR_LINE.match(ln) and not
                   ln.startswith(("make: ***", "dagster", "Error: Materialization failed")),
                   lambda ln: ln.startswith(("* 2", "Promoted release", "promoted release"))):
        found = [ln for ln in lines if wanted(ln)]
        if found:
            return found[-1][:500]
    return (lines or [""])[-1][:500]


# --- the rows -------------------------------------------------------------------------------

@dataclass
class Row:
    name: str
    done: str  # what was done, in words
    act: Callable[[World], subprocess.CompletedProcess]
    wrong: Callable[[World, str], bool] | None = None  # is this new release wrong?
    next_run: Callable[[World], subprocess.CompletedProcess] | None = None
    kind: str = "attack"  # attack | crash | input
    damages_release: bool = False  # the attack edits the CURRENT release itself


@dataclass
class Result:
    row: Row
    rc: int
    message: str
    traceback: bool
    promoted: bool
    wrong: bool
    lost: bool
    next_rc: int | None
    orphans: list[str] = field(default_factory=list)
    seconds: float = 0.0


def promote(world: World) -> subprocess.CompletedProcess:
    return world.run(PROMOTE)


def after(edit: Callable[[World], object]) -> Callable[[World], subprocess.CompletedProcess]:
    """Edit the world after every check passed, then promote."""
    def act(world: World) -> subprocess.CompletedProcess:
        edit(world)
        return promote(world)
    return act


def any_promotion(world: World, version: str) -> bool:
    return True


def holds(rel: str) -> Callable[[World, str], bool]:
    return lambda world, version: (world.root / "releases" / version / rel).exists()


def _scale_weight(path: Path, factor: float) -> None:
    """Copy, multiply one household_weight, move over the original (a new inode)."""
    tmp = path.with_name(path.name + ".edit")
    shutil.copy(path, tmp)
    with h5py.File(tmp, "r+") as f:
        group = f["household_weight"]
        data = group[next(iter(group))]
        data[0] = data[0] * factor
    os.replace(tmp, path)


def _edit_in_place(path: Path, factor: float) -> None:
    """The same edit on the file's own inode (what an editor that writes in place does)."""
    with h5py.File(path, "r+") as f:
        group = f["household_weight"]
        data = group[next(iter(group))]
        data[0] = data[0] * factor


def _edit_json(path: Path, change: Callable[[dict], None]) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=2))


def _forge_run_config(config: dict) -> None:
    config["params"]["epochs"] = 5000
    config["records_kept"] = config["records_kept"] * 2
    config["error_summary"]["max"] = 0.0001


def _forge_diagnostics(world: World) -> None:
    path = world.root / "calibration_weights" / "diagnostics.csv"
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    i = header.index("abs_rel_error")
    for n in range(1, len(lines)):
        cells = lines[n].split(",")
        cells[i] = "0.0"
        lines[n] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")


def _tamper_baseline_validation(world: World) -> None:
    """Make CURRENT's validation results much worse, so gate 2 would pass anything."""
    import pandas as pd

    path = world.root / "releases" / current(world.root) / "validation_results.csv"
    os.chmod(path, 0o644)
    frame = pd.read_csv(path, keep_default_na=False, dtype=str)
    for col in ("rel_abs_error", "score"):
        if col in frame:
            frame[col] = "9.0"
    tmp = path.with_name("v.tmp")
    frame.to_csv(tmp, index=False)
    os.replace(tmp, path)


def _loose_profile(world: World) -> Path:
    path = world.dir / "loose.yaml"
    text = (ROOT / "pipeline" / "config" / "profiles" / "ci.yaml").read_text()
    path.write_text(text + "gates:\n  consistency_tolerance: 0.5\n")
    return path


def judged_loose_promoted_ci(world: World) -> subprocess.CompletedProcess:
    """Every check judged under a profile with a 50x looser X·w tolerance, then promoted
    under ci."""
    loose = _loose_profile(world)
    judged = world.run([str(BIN / "dagster"), "asset", "materialize", "-m",
                        "assets.definitions", "--select", "stacked_h5s,validation_results"],
                       CALIBRATION_PROFILE=str(loose))
    assert judged.returncode == 0, judged.stderr[-2000:]
    return promote(world)


def _flip_verdict(world: World) -> None:
    """A hand-made cover-up: DE.h5 x1000, then the stacked manifest, validation's lineage and
    every verdict's hashes rewritten to match, as if the checks had judged these bytes."""
    stacked = world.root / "stacked_h5s"
    _scale_weight(stacked / "states" / "DE.h5", 1000.0)
    new_file = sha256(stacked / "states" / "DE.h5")
    _edit_json(stacked / "manifest.json",
               lambda m: m["files"]["states/DE.h5"].update(sha256=new_file))
    new_manifest = sha256(stacked / "manifest.json")
    _edit_json(world.root / "validation_results" / "lineage.json",
               lambda m: m["lineage"].update(stacked_h5s=new_manifest))
    for verdict in (world.root / "gates").glob("*.json"):
        def cover(raw: dict) -> None:
            if "stacked_h5s" in raw.get("inputs", {}):
                raw["inputs"]["stacked_h5s"] = new_manifest
            files = raw.get("files", {})
            if "stacked_h5s/states/DE.h5" in files:
                files["stacked_h5s/states/DE.h5"] = new_file
                files["stacked_h5s/manifest.json"] = new_manifest
        _edit_json(verdict, cover)


def kill_fit_by_failpoint(world: World) -> subprocess.CompletedProcess:
    return world.run(RUN_REFIT, CALIBRATION_KILL_BEFORE_RENAME="checkpoint.pt")


def kill_fit_after(seconds: float) -> Callable[[World], subprocess.CompletedProcess]:
    """A real kill -9, `seconds` after the local fit step started."""
    def act(world: World) -> subprocess.CompletedProcess:
        log = world.dir / "run.log"
        with open(log, "w") as out:
            proc = subprocess.Popen(RUN_REFIT, cwd=ROOT, env=world.env(), stdout=out,
                                    stderr=subprocess.STDOUT)
        deadline = time.time() + 600
        while 'Started execution of step "calibration_weights"' not in log.read_text():
            if proc.poll() is not None or time.time() > deadline:
                break
            time.sleep(0.5)
        time.sleep(seconds)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return subprocess.CompletedProcess(RUN_REFIT, proc.returncode, "", log.read_text())
    return act


def refit(world: World) -> subprocess.CompletedProcess:
    return world.run(RUN_REFIT)


def calibrate(*args: str) -> Callable[[World], subprocess.CompletedProcess]:
    def act(world: World) -> subprocess.CompletedProcess:
        argv = [a.format(root=world.root, dir=world.dir, config=world.config) for a in args]
        return world.run([str(BIN / "calibrate"), *argv])
    return act


def fit_cli(*extra: str, out: str = "{dir}/fit_out"
            ) -> Callable[[World], subprocess.CompletedProcess]:
    return calibrate("fit", "--package", "{root}/calibration_package", "--target-config",
                     "{config}", "--out", out, "--device", "cpu", *extra)


def with_file(rel: str, text: str, then: Callable[[World, Path], subprocess.CompletedProcess]
              ) -> Callable[[World], subprocess.CompletedProcess]:
    def act(world: World) -> subprocess.CompletedProcess:
        path = world.dir / rel
        path.write_text(text)
        return then(world, path)
    return act


def make_run(world: World, profile: Path | str, *extra: str) -> subprocess.CompletedProcess:
    return world.run(["make", "-s", "--no-print-directory", "run", f"PROFILE={profile}",
                      f"CALIBRATION_STORAGE_ROOT={world.root}", f"DAGSTER_HOME={world.home}",
                      *extra])


def truncate(rel: str, keep: float = 0.5) -> Callable[[World], object]:
    def edit(world: World) -> None:
        path = world.root / rel
        os.chmod(path, 0o644)
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * keep)])
    return edit


def materialize(selection: str, edit: Callable[[World], object]
                ) -> Callable[[World], subprocess.CompletedProcess]:
    def act(world: World) -> subprocess.CompletedProcess:
        edit(world)
        return world.run([str(BIN / "dagster"), "asset", "materialize", "-m",
                          "assets.definitions", "--select", selection])
    return act


def _dup_exclude(world: World) -> None:
    world.config.write_text(world.config.read_text() + "\nexclude:\n  - {variable: eitc}\n")


DUP_EXCLUDE_NOTE = "appended a second top-level exclude: (YAML keeps the last)"


def edit_after_promotion(world: World) -> subprocess.CompletedProcess:
    """Promote, then edit the working copy of a published file in place, then list."""
    promoted = promote(world)
    assert promoted.returncode == 0, promoted.stderr[-2000:]
    _edit_in_place(world.root / "stacked_h5s" / "states" / "DE.h5", 1000.0)
    return world.run([str(BIN / "calibrate"), "releases", "--storage", str(world.root)])


def stray_in_release(world: World) -> subprocess.CompletedProcess:
    release = world.root / "releases" / current(world.root)
    os.chmod(release / "states", 0o755)
    (release / "states" / "CA.h5").write_bytes(b"not judged")
    return world.run([str(BIN / "calibrate"), "releases", "--storage", str(world.root)])


def _symlink_to_tampered(world: World) -> None:
    """DE.h5 replaced by a symlink to a tampered copy outside the storage root."""
    path = world.root / "stacked_h5s" / "states" / "DE.h5"
    outside = world.dir / "DE_elsewhere.h5"
    shutil.copy(path, outside)
    _scale_weight(outside, 1000.0)
    path.unlink()
    path.symlink_to(outside)


def holds_temporary(world: World, version: str) -> bool:
    return any(p.name.startswith(".tmp") for p in (world.root / "releases" / version).rglob("*"))


def tamper_baseline_then_judge(world: World) -> subprocess.CompletedProcess:
    _tamper_baseline_validation(world)
    return world.run([str(BIN / "dagster"), "asset", "materialize", "-m",
                      "assets.definitions", "--select", "validation_results,promoted_release"])


ROWS: list[Row] = [
    Row("control", "nothing changed: promote after every check passed", promote,
        wrong=lambda w, v: False),
    # The reproductions.
    Row("tamper_state_file", "stacked_h5s/states/DE.h5: one household_weight x1000 (copy, "
        "edit, move over), then promote", after(lambda w: _scale_weight(
            w.root / "stacked_h5s" / "states" / "DE.h5", 1000.0)), any_promotion),
    Row("hard_link_edit", "promote, then edit the working stacked_h5s/states/DE.h5 in "
        "place (h5py r+), then `calibrate releases`", edit_after_promotion),
    Row("stray_state", "a copy of states/DE.h5 dropped in as states/CA.h5, then promote",
        after(lambda w: shutil.copy(w.root / "stacked_h5s/states/DE.h5",
                                    w.root / "stacked_h5s/states/CA.h5")),
        holds("states/CA.h5")),
    Row("junk_district", "a junk districts/0601.h5 dropped in, then promote",
        after(lambda w: (w.root / "stacked_h5s/districts/0601.h5").write_bytes(b"junk")),
        holds("districts/0601.h5")),
    Row("forged_run_config", "calibration_weights/run_config.json: epochs 5000, records "
        "kept x2, max error 0.0001, then promote",
        after(lambda w: _edit_json(w.root / "calibration_weights/run_config.json",
                                   _forge_run_config)), any_promotion),
    Row("forged_diagnostics", "calibration_weights/diagnostics.csv: every abs_rel_error set "
        "to 0, then promote", after(_forge_diagnostics), any_promotion),
    Row("forged_national_record", "national_weights/run_config.json edited (records kept "
        "x2), then promote", after(lambda w: _edit_json(
            w.root / "national_weights/run_config.json", _forge_run_config)), any_promotion),
    Row("forged_log", "calibration_weights/calibration_log.csv truncated to its header, then "
        "promote", after(lambda w: (w.root / "calibration_weights/calibration_log.csv")
                         .write_text((w.root / "calibration_weights/calibration_log.csv")
                                     .read_text().splitlines()[0] + "\n")), any_promotion),
    # The same family, this project's own attacks.
    Row("tampered_baseline_after", "CURRENT's validation_results.csv made 9x worse after "
        "the checks, then promote", after(_tamper_baseline_validation), any_promotion,
        damages_release=True),
    Row("tampered_baseline_judged", "CURRENT's validation_results.csv made 9x worse, then "
        "validation and gate 2 run against it, then promote", tamper_baseline_then_judge,
        any_promotion, damages_release=True),
    Row("profile_switch", "checks judged under a profile with a 50x looser X·w tolerance, "
        "then promoted under ci", judged_loose_promoted_ci, any_promotion),
    Row("verdict_edited", "DE.h5 x1000, then the stacked manifest, validation's lineage and "
        "every verdict's hashes rewritten by hand to match, then promote",
        after(_flip_verdict), any_promotion),
    Row("stray_in_release", "a file dropped into the CURRENT release, then `calibrate "
        "releases`", stray_in_release, any_promotion, damages_release=True),
    Row("stray_in_release_baseline", "a file dropped into the CURRENT release, then "
        "validation and gate 2 judge against it, then promote",
        lambda w: (stray_in_release(w), tamper_baseline_noop(w))[1], any_promotion,
        damages_release=True),
    Row("target_config_after", "the target config edited (one rule dropped) after the "
        "checks, then promote", after(lambda w: (w.root / "target_config" / "targets.yaml")
                                      .write_text("{}\n")), any_promotion),
    Row("symlink_swap", "stacked_h5s/states/DE.h5 replaced by a symlink to a copy outside "
        "the storage root with one household_weight x1000, then promote",
        after(_symlink_to_tampered), any_promotion),
    Row("hidden_stray", "a copy of states/DE.h5 dropped in as states/.tmp-CA.h5 (a name the "
        "pipeline treats as temporary), then promote", after(lambda w: shutil.copy(
            w.root / "stacked_h5s/states/DE.h5", w.root / "stacked_h5s/states/.tmp-CA.h5")),
        holds_temporary),
    Row("stray_in_fit_dir", "a stray weights_v2.npy dropped into calibration_weights/, then "
        "promote", after(lambda w: shutil.copy(w.root / "calibration_weights/weights.npy",
                                               w.root / "calibration_weights/weights_v2.npy")),
        lambda w, v: any((w.root / "releases" / v).rglob("weights_v2.npy"))),
    # Crashes.
    Row("kill_fit_failpoint", "kill -9 of `make run` refit at the fit's first checkpoint "
        "(CALIBRATION_KILL_BEFORE_RENAME=checkpoint.pt); next: `make run` refit",
        kill_fit_by_failpoint, None, refit, kind="crash"),
    Row("kill_fit_12s", "kill -9 of `make run` refit 12 s into calibration_weights; next: "
        "`make run` refit", kill_fit_after(12), None, refit, kind="crash"),
    Row("kill_stacking", "kill -9 while stacking (failpoint stacked_h5s); next: `make run` "
        "refit", lambda w: w.run([str(BIN / "dagster"), "asset", "materialize", "-m",
                                  "assets.definitions", "--select", "stacked_h5s"],
                                 CALIBRATION_KILL_BEFORE_RENAME="stacked_h5s"),
        None, refit, kind="crash"),
    Row("kill_before_current", "kill -9 between the release's rename and the CURRENT swap "
        "(failpoint CURRENT); next: promote again at once", lambda w: w.run(
            PROMOTE, CALIBRATION_KILL_BEFORE_RENAME="CURRENT"), None, promote, kind="crash"),
    # Bad input.
    Row("lambda_inf", "`calibrate fit --lambda-l0 inf` on the ci package",
        fit_cli("--lambda-l0", "inf"), kind="input"),
    Row("lambda_1e300", "`calibrate fit --lambda-l0 1e300` on the ci package",
        fit_cli("--lambda-l0", "1e300", "--profile", "ci"), kind="input"),
    Row("fit_without_profile", "`calibrate fit` without --profile on the ci package",
        fit_cli(), kind="input"),
    Row("duplicate_exclude", f"target config: {DUP_EXCLUDE_NOTE}; `make run` refit",
        lambda w: (_dup_exclude(w), refit(w))[1], kind="input"),
    Row("profile_duplicate_key", "`make run PROFILE=<profile with fit: given twice>`",
        with_file("twice.yaml", "fit:\n  epochs: 10\nfit:\n  epochs: 20\n",
                  lambda w, p: make_run(w, p)), kind="input"),
    Row("profile_typo", "`make run PROFILE=<profile with gate: for gates:>`",
        with_file("typo.yaml", "gate: {fit: {loss_tolerance: 0.2}}\n",
                  lambda w, p: make_run(w, p)), kind="input"),
    Row("profile_nan", "`make run PROFILE=<profile with fit.learning_rate: .nan>`",
        with_file("nan.yaml", "fit: {learning_rate: .nan}\n", lambda w, p: make_run(w, p)),
        kind="input"),
    Row("budget_beyond_columns", "`make run PROFILE=<ci with national_fit.records: 100000>` "
        "(4,000 columns)", with_file(
            "big.yaml", (ROOT / "pipeline/config/profiles/ci.yaml").read_text()
            .replace("records: 1000", "records: 100000"), lambda w, p: make_run(w, p)),
        kind="input"),
    Row("truncated_targets_db", "target_db/targets.db cut in half; materialize "
        "calibration_package", materialize("calibration_package",
                                           truncate("target_db/targets.db")), kind="input"),
    Row("garbage_targets_db", "target_db/targets.db replaced by text; materialize "
        "calibration_package", materialize("calibration_package", lambda w: (
            w.root / "target_db/targets.db").write_bytes(b"not sqlite\n" * 1000)),
        kind="input"),
    Row("truncated_base_h5", "stratified_cps/base.h5 cut in half; materialize "
        "calibration_package", materialize("calibration_package",
                                           truncate("stratified_cps/base.h5")), kind="input"),
    Row("out_is_a_file", "`calibrate fit --out <an existing file>`",
        lambda w: ((w.dir / "a_file").write_text("x"), fit_cli(out="{dir}/a_file")(w))[1],
        kind="input"),
    Row("epochs_abc", "`calibrate fit --epochs abc`", fit_cli("--epochs", "abc"),
        kind="input"),
]


def tamper_baseline_noop(world: World) -> subprocess.CompletedProcess:
    return world.run([str(BIN / "dagster"), "asset", "materialize", "-m",
                      "assets.definitions", "--select", "validation_results,promoted_release"])


def remove(path: Path) -> None:
    """Remove a world (its releases are read-only)."""
    if path.exists():
        for p in [path, *path.rglob("*")]:
            if p.is_dir() and not p.is_symlink():
                os.chmod(p, 0o755)
        shutil.rmtree(path)


def run_row(row: Row, base: World, work: Path) -> Result:
    remove(work / row.name)
    world = base.copy(work / row.name)
    before = releases(world.root)
    started_current = current(world.root)
    started = time.perf_counter()
    done = row.act(world)
    seconds = time.perf_counter() - started
    now = current(world.root)
    promoted = now is not None and now != started_current and now not in before
    wrong = bool(promoted and row.wrong is not None and row.wrong(world, now))
    next_rc = None
    if row.next_run is not None:
        next_rc = row.next_run(world).returncode
    # Lost: CURRENT broke, or a release (one from before the row, or one it promoted)
    # vanished or no longer matches its manifest; the release a row damaged on purpose
    # does not count.
    end = releases(world.root)
    spared = {started_current} if row.damages_release else set()
    lost = current(world.root) is None or any(v not in end for v in before) or any(
        not release_intact(world.root, v, m) for v, m in end.items() if v not in spared)
    orphans = [str(p.relative_to(world.root)) for p in temps(world.root)]
    orphans += [f"unpromoted release {v}" for v in unpromoted(world.root)]
    result = Result(row, done.returncode, message(done), "Traceback" in done.stderr,
                    promoted, wrong, lost, next_rc, orphans, seconds)
    remove(world.dir)
    return result


def table(results: list[Result]) -> str:
    head = ("| row | kind | what was done | rc | message | traceback | promoted | wrong | "
            "lost | next run rc | orphans after the next run |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|\n")
    body = "".join(
        f"| {r.row.name} | {r.row.kind} | {r.row.done} | {r.rc} | "
        f"{r.message.replace('|', '/')} | {'yes' if r.traceback else 'no'} | "
        f"{'yes' if r.promoted else 'no'} | {'**YES**' if r.wrong else 'no'} | "
        f"{'**YES**' if r.lost else 'no'} | {'-' if r.next_rc is None else r.next_rc} | "
        f"{', '.join(r.orphans) or 'none'} |\n" for r in results)
    wrong = sum(r.wrong for r in results)
    lost = sum(r.lost for r in results)
    crashes = [r for r in results if r.row.kind == "crash"]
    survived = sum(r.next_rc == 0 and not any(o.startswith(".tmp") or "/.tmp" in o
                                              for o in r.orphans) for r in crashes)
    inputs = [r for r in results if r.row.kind == "input"]
    clean = sum(r.rc != 0 and not r.traceback and "Fix:" in r.message for r in inputs
                if r.row.name != "fit_without_profile")
    return (head + body + f"\nwrong promotions: {wrong}; releases lost: {lost}; crashes "
            f"survived with the next run proceeding unaided and no temporary file left: "
            f"{survived} of {len(crashes)} (an unpromoted release is kept on purpose, marked "
            f"UNPROMOTED by `calibrate releases`); bad inputs refused in one line with a fix "
            f"and no traceback: {clean} of {len(inputs) - 1} (`fit_without_profile` is a valid "
            "input).\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, help="directory for the worlds (default: a "
                        "temporary one); an existing built world there is reused")
    parser.add_argument("--only", nargs="*", help="row names")
    parser.add_argument("--out", type=Path, help=f"write the table here (e.g. {RESULTS})")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="attacks-"))
    base = World(work / "base")
    load = os.getloadavg()[0]
    started = time.perf_counter()
    if not (base.root / "releases" / "CURRENT").is_symlink():
        remove(base.dir)
        build(base.dir)
    built = time.perf_counter() - started
    rows = [r for r in ROWS if not args.only or r.name in args.only]
    results = []
    for row in rows:
        result = run_row(row, base, work)
        print(f"{row.name}: rc {result.rc}, promoted {result.promoted}, wrong {result.wrong}, "
              f"lost {result.lost}, next {result.next_rc}, orphans {result.orphans} "
              f"({result.seconds:.0f} s): {result.message}", flush=True)
        results.append(result)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    text = (f"# Fault and attack table (`benchmarks/bench_attacks.py`)\n\ncode at {commit}; "
            f"ci profile; world built in {built:.0f} s; load average {load:.2f} at start "
            f"(a shared 2-core box); {len(results)} rows.\n\n" + table(results))
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
