"""The fault suite: kills, concurrent runs, a full disk, a broken CURRENT, a mixed lineage.

Each test breaks a copy of the built ci world (`world`) the way a user or the machine would,
then checks the invariants: CURRENT and every earlier release still match their manifests,
nothing wrong was promoted, and the next run leaves no temporary file behind. Kills use the
failpoint (`CALIBRATION_KILL_BEFORE_RENAME`): the process SIGKILLs itself at the named
rename, the state a `kill -9` at that instant leaves, without racing a timer. The next run
after a kill runs in this process, where the engine is already warm.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import World, private_copy
from dagster import AssetCheckKey, AssetKey, DagsterRunStatus
from factories import lock_holder

from assets.definitions import make_definitions
from assets.run import main as make_run
from pipeline.config import load_profile
from pipeline.core.atomic import TMP_PREFIX
from pipeline.core.failpoint import KILL_ENV
from pipeline.core.fit_table import FITS
from pipeline.core.hashing import sha256_file
from pipeline.release.gates import GATES
from pipeline.release.versions import current_release, list_releases, promoted_versions

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
BIN = Path(sys.executable).parent


def _env(world: World, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALIBRATION_")}
    return {**env, "CALIBRATION_STORAGE_ROOT": str(world.root), "CALIBRATION_PROFILE": "ci",
            "CALIBRATION_TARGET_CONFIG": str(world.config), "CALIBRATION_DEVICE": "cpu",
            "DAGSTER_HOME": world.instance.root_directory, **extra}


def _run(world: World, args: list[str], kill: str | None = None, timeout: float = 300):
    extra = {KILL_ENV: kill} if kill else {}
    return subprocess.run(args, env=_env(world, **extra), capture_output=True, text=True,
                          timeout=timeout)


def _materialize(world: World, selection: str, kill: str | None = None):
    return _run(world, [str(BIN / "dagster"), "asset", "materialize", "-m", "assets.definitions",
                        "--select", selection], kill)


def _calibrate_fit(world: World, *extra: str, kill: str | None = None):
    root = world.root
    return _run(world, [str(BIN / "calibrate"), "fit", "--package",
                        str(root / "calibration_package"), "--target-config", str(world.config),
                        "--out", str(root / "calibration_weights"), "--profile", "ci",
                        "--device", "cpu", *extra], kill)


def _temps(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob(f"{TMP_PREFIX}*"))


def _kinds(temps: list[Path]) -> list[str]:
    """`.tmp-<name>` of each temporary name, without the writer's pid and random part."""
    return [p.name.rsplit(".", 1)[0] for p in temps]


def _releases_intact(root: Path, current: str, versions: list[str]) -> None:
    """CURRENT names `current`; every earlier release is there, byte for byte."""
    assert current_release(root).version == current
    have = {r.version: r for r in list_releases(root)}
    for version in versions:
        release = have[version]
        for rel, entry in release.manifest["files"].items():
            assert sha256_file(release.path / rel) == entry["sha256"], f"{version}/{rel}"


def _snapshot(world: World) -> tuple[str, list[str]]:
    return current_release(world.root).version, [r.version for r in list_releases(world.root)]


def _promoted(result) -> bool:
    return any(e.asset_key.path[-1] == "promoted_release"
               for e in result.get_asset_materialization_events())


def _status(world: World, run_id: str) -> DagsterRunStatus:
    return world.instance.get_run_by_id(run_id).status


def _check_again(world: World, *names: str):
    """Run these checks again (only them), as Dagster runs them."""
    keys = {AssetCheckKey(AssetKey(g.subject), g.name) for g in GATES if g.name in names}
    job = world.defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection=set(), asset_check_selection=keys)
    return job.execute_in_process(instance=world.instance, raise_on_error=False)


def _run_id_of_dead_holder(world: World) -> str:
    holder = lock_holder(world.root)
    assert holder is not None and holder.alive() is False  # the killed run's record
    return holder.run_id


# --- kill -9 -------------------------------------------------------------------------------

def test_kill_during_the_cli_fit_then_resume_leaves_nothing_behind(world):
    current, versions = _snapshot(world)
    killed = _calibrate_fit(world, kill="calibration_log.csv")
    assert killed.returncode == -signal.SIGKILL
    fit_dir = world.root / "calibration_weights"
    assert _kinds(_temps(world.root)) == [".tmp-calibration_log.csv"]
    assert not (fit_dir / "run_config.json").exists()  # a dead fit never looks complete
    _releases_intact(world.root, current, versions)

    resumed = _calibrate_fit(world, "--resume-from", str(fit_dir / "checkpoint.pt"))
    assert resumed.returncode == 0, resumed.stderr
    assert "removed 1 temporary files of dead runs" in resumed.stderr
    assert _temps(world.root) == [] and (fit_dir / "run_config.json").is_file()
    assert not world.materialize("promoted_release").success  # never next to the old files
    _releases_intact(world.root, current, versions)


def test_kill_during_the_dagster_fit_frees_its_pool_slot_and_the_next_run_proceeds(world):
    """The issue's hang: the killed run held the `gpu` pool slot of the committed
    dagster.yaml (limit 1), and every later run waited for it forever (at DEBUG), holding
    the storage lock. The next run runs here; a watchdog frees the slot after 180 s so a
    regression fails this test instead of hanging the suite."""
    current, versions = _snapshot(world)
    killed = _run(world, [sys.executable, "-m", "assets.run", "--profile", "ci", "--job",
                          "refit"], kill="checkpoint.pt")  # the first checkpoint, mid-L0
    assert killed.returncode == -signal.SIGKILL
    assert _kinds(_temps(world.root)) == [".tmp-checkpoint.pt"]
    dead_run = _run_id_of_dead_holder(world)
    assert _status(world, dead_run) == DagsterRunStatus.STARTED  # what a kill leaves
    storage = world.instance.event_log_storage
    [slot] = storage.get_concurrency_info("gpu").claimed_slots
    assert slot.run_id == dead_run  # the slot the dead run still holds
    _releases_intact(world.root, current, versions)

    fired = []
    watchdog = threading.Timer(180, lambda: (
        fired.append(True), storage.free_concurrency_slots_for_run(dead_run)))
    watchdog.start()
    try:
        result = world.run("refit")
    finally:
        watchdog.cancel()
    assert not fired, "the next run waited on the dead run's slot until the watchdog freed it"
    assert result.success and _promoted(result)
    messages = [e.message for e in world.instance.all_logs(result.run_id)]
    assert any(m.startswith(f"freed the pool slots of dead runs: pool gpu: run {dead_run}")
               for m in messages), "the dead run's slot was not freed by the next run"
    assert _status(world, dead_run) == DagsterRunStatus.FAILURE
    assert storage.get_concurrency_info("gpu").claimed_slots == []
    assert _temps(world.root) == []
    _releases_intact(world.root, current_release(world.root).version, versions)


def test_kill_during_stacking_is_cleaned_by_the_next_run(world):
    current, versions = _snapshot(world)
    before = sha256_file(world.root / "stacked_h5s" / "manifest.json")
    killed = _materialize(world, "stacked_h5s", kill="stacked_h5s")
    assert killed.returncode == -signal.SIGKILL
    [leftover] = _temps(world.root)
    assert leftover.parent == world.root and leftover.name.startswith(".tmp-stacked_h5s.")
    assert (leftover / "national.h5").is_file()  # it was killed with the files written
    assert sha256_file(world.root / "stacked_h5s" / "manifest.json") == before
    dead_run = _run_id_of_dead_holder(world)

    again = world.materialize("stacked_h5s")
    assert again.success and _temps(world.root) == []
    assert _status(world, dead_run) == DagsterRunStatus.FAILURE
    _releases_intact(world.root, current, versions)


@pytest.mark.parametrize("kill, left", [
    ("????????T??????Z-????????", "a complete release directory under its temporary name"),
    ("CURRENT", "a complete release that CURRENT never moved to"),
])
def test_kill_during_promotion_keeps_every_release_and_marks_the_unpromoted(world, kill, left,
                                                                           capsys):
    current, versions = _snapshot(world)
    # Gate 1 judged the fit against the release before; judge it against CURRENT again, as
    # a refit would (its checks, through Dagster, which records each verdict), so that only
    # promotion remains.
    assert _check_again(world, *(fit.review for fit in FITS)).success
    killed = _materialize(world, "validation_results,promoted_release", kill=kill)
    assert killed.returncode == -signal.SIGKILL, left
    _releases_intact(world.root, current, versions)
    after = [r.version for r in list_releases(world.root)]
    [leftover] = _temps(world.root)
    assert leftover.parent.name == "releases"
    if kill == "CURRENT":
        [orphan] = sorted(set(after) - set(versions))
        assert orphan not in promoted_versions(world.root)
        assert _kinds([leftover]) == [".tmp-CURRENT"] and leftover.is_symlink()
    else:
        assert after == versions and leftover.name.startswith(".tmp-20")

    result = world.materialize("validation_results", "promoted_release")
    assert result.success and _temps(world.root) == []
    new = current_release(world.root).version
    assert new not in versions
    _releases_intact(world.root, new, versions)
    from pipeline.cli import main as calibrate

    assert calibrate(["releases", "--storage", str(world.root)]) == 0
    listing = capsys.readouterr().out
    assert f"* {new}" in listing
    rows = [line for line in listing.splitlines() if line.startswith(("* ", "  20"))]
    assert sum(r.endswith("UNPROMOTED") for r in rows) == (1 if kill == "CURRENT" else 0)


# --- one run at a time ----------------------------------------------------------------------

def test_a_second_run_is_refused_and_a_killed_first_run_blocks_nothing(world):
    current, versions = _snapshot(world)
    command = [sys.executable, "-m", "assets.run", "--profile", "ci", "--job", "refit"]
    first = subprocess.Popen(command, env=_env(world), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while (holder := lock_holder(world.root)) is None or holder.pid != first.pid:
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.2)
        second = _run(world, command)
        assert second.returncode == 4
        assert f"in use by pid {first.pid}" in second.stderr
        assert "wait for that run" in second.stderr
        assert first.poll() is None  # the first run was never disturbed
    finally:
        first.send_signal(signal.SIGKILL)  # an unplanned kill, wherever the run was
        first.wait()
    _releases_intact(world.root, current, versions)
    result = world.run("refit")
    assert result.success and _promoted(result) and _temps(world.root) == []


def test_a_dagster_run_meets_the_lock_another_process_holds(world):
    """Runs that bypass the queue (UI launches in another instance, `dagster asset
    materialize`) take the lock in their storage resource, before any step."""
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\n"
                               "from pipeline.core.lock import storage_lock\n"
                               "with storage_lock(sys.argv[1], 'another run'):\n"
                               "    print('holding', flush=True); time.sleep(120)",
                               str(world.root)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        result = world.run("refit")
        assert not result.success and not result.get_asset_materialization_events()
        failure = next(e for e in result.all_events if e.is_run_failure)
        assert f"in use by pid {holder.pid}" in str(failure.event_specific_data.error)
    finally:
        holder.kill()
        holder.wait()


# --- disk full ------------------------------------------------------------------------------

@pytest.fixture
def full_disk(world, tmp_path):
    """The world's storage (without the raw source) on a small tmpfs; `fill(free)` leaves
    `free` bytes. Skipped where this platform cannot mount one."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'not root'})")
    try:
        shutil.copytree(world.root, mount / "storage", symlinks=True,
                        ignore=lambda d, names: ["source_cps"] if Path(d) == world.root else [])
        shutil.copy(world.config, mount / "targets.yaml")
        small = World(mount, world.instance)

        def fill(free: int) -> None:
            with open(mount / "filler", "wb") as f:
                stat = os.statvfs(mount)
                os.posix_fallocate(f.fileno(), 0, stat.f_bavail * stat.f_frsize - free)

        yield small, fill
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_refit_on_a_full_disk_fails_cleanly_and_the_next_one_succeeds(full_disk):
    world, fill = full_disk
    current, versions = _snapshot(world)
    fit = world.root / "calibration_weights"
    fit_bytes = sum(f.stat().st_size for f in fit.iterdir())
    fill(fit_bytes + 512 * 1024)  # the fit's outputs fit; the stacked files (MBs) do not
    refit = _run(world, [sys.executable, "-m", "assets.run", "--profile", "ci", "--job",
                         "refit"])
    assert refit.returncode == 1, refit.stderr[-3000:]  # was 139: a segfault at exit
    summary = refit.stderr[refit.stderr.rindex("promoted nothing"):]
    assert "stacked_h5s: StorageFull" in summary and "Fix: free space" in summary
    assert "Traceback" not in summary
    assert _temps(world.root) == []
    _releases_intact(world.root, current, versions)

    fill(0)
    cli = _calibrate_fit(world)
    # Progress lines come first; the error is the last thing the user reads.
    last = cli.stderr.strip().splitlines()[-1]
    assert cli.returncode == 5 and last.startswith("error: [Errno 28] no space left"), last
    assert _temps(world.root) == []

    (world.dir / "filler").unlink()
    result = world.run("refit")
    assert result.success and _promoted(result) and _temps(world.root) == []
    _releases_intact(world.root, current_release(world.root).version, versions)


# --- a broken CURRENT -----------------------------------------------------------------------

@pytest.mark.parametrize("breakage", ["missing", "dangling"])
def test_a_broken_current_refuses_every_run_before_any_stage(world, breakage, capsys,
                                                             monkeypatch):
    link = world.root / "releases" / "CURRENT"
    link.unlink()
    if breakage == "dangling":
        link.symlink_to("20990101T000000Z-deadbeef")
    fits = len(world.instance.fetch_materializations(AssetKey("calibration_weights"),
                                                     limit=100).records)
    result = world.run("refit")
    assert not result.success
    assert len(world.instance.fetch_materializations(AssetKey("calibration_weights"),
                                                     limit=100).records) == fits
    by_hand = world.materialize("promoted_release")
    assert not by_hand.success and len(list_releases(world.root)) == 1

    for name, value in _env(world).items():
        monkeypatch.setenv(name, value)
    assert make_run(["--profile", "ci", "--job", "refit"]) == 1
    summary = capsys.readouterr().err.rsplit("promoted nothing.", 1)[1]
    assert "CURRENT" in summary and "calibrate rollback VERSION" in summary
    assert "make run BASELINE=newest" in summary and "Traceback" not in summary
    assert summary.strip().endswith("no release is current")


def test_the_newest_release_as_baseline_by_explicit_choice(world, monkeypatch):
    [only] = [r.version for r in list_releases(world.root)]
    (world.root / "releases" / "CURRENT").unlink()
    monkeypatch.setenv("CALIBRATION_BASELINE", "newest")
    result = world.run("refit")
    assert result.success and _promoted(result)
    quality = json.loads((world.root / "gates" / "simulation_quality.json").read_text())
    assert quality["summary"].startswith("judged against the CURRENT release")
    assert quality["inputs"]["current_release"] == only  # judged against the newest
    history = json.loads((world.root / "releases" / "history.json").read_text())
    assert [h["action"] for h in history][-2:] == ["repair", "promote"]


# --- inputs that must be refused --------------------------------------------------------------

def test_a_refit_after_the_checks_is_never_promoted_next_to_the_old_files(world):
    """The issue's reproduction: refit alone, then promote alone. (The refit polishes
    longer rather than changing the seed: another seed's loss may exceed CURRENT's by more
    than gate 1 allows, and this refit must pass gate 1.)"""
    current, versions = _snapshot(world)
    refit = world.materialize("calibration_weights", run_config={"ops": {
        "calibration_weights": {"config": {"polish_epochs": 800}}}})
    assert refit.success
    promote = world.materialize("promoted_release")
    assert not promote.success
    failure = next(e for e in promote.all_events if e.is_step_failure)
    error = str(failure.step_failure_data.error)
    assert "stacked_h5s was not built from the current calibration_weights" in error
    assert "xw_consistency: judged other calibration_weights" in error
    _releases_intact(world.root, current, versions)
    assert [r.version for r in list_releases(world.root)] == versions


def test_a_truncated_package_file_stops_a_refit_before_the_fit(world):
    base = world.root / "calibration_package" / "base.h5"
    data = base.read_bytes()
    base.write_bytes(data[: len(data) // 2])
    fits = len(world.instance.fetch_materializations(AssetKey("calibration_weights"),
                                                     limit=100).records)
    result = world.run("refit")
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert failure.step_key == "calibration_package_package_validity"
    assert "base.h5" in str(failure.step_failure_data.error)
    assert len(world.instance.fetch_materializations(AssetKey("calibration_weights"),
                                                     limit=100).records) == fits


def test_a_bad_profile_through_make_is_one_line_not_a_traceback(tmp_path):
    """`make run PROFILE=<bad>` printed a traceback first: the definitions module builds
    the definitions of $CALIBRATION_PROFILE when imported. Make itself exits 2 on any
    failure and names the pipeline's code in its last line."""
    profile = tmp_path / "twice.yaml"
    profile.write_text("fit:\n  epochs: 10\nfit:\n  epochs: 20\n")
    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run(["make", "-s", "--no-print-directory", "run", f"PROFILE={profile}",
                           f"CALIBRATION_STORAGE_ROOT={tmp_path / 'storage'}"], cwd=repo,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    ours, make = done.stderr.strip().splitlines()
    assert ours.startswith(f"error: file {profile}, field 'fit': given twice") and "Fix:" in ours
    assert make.endswith("Error 1")
    assert not (tmp_path / "storage").exists()  # refused before anything ran


def test_a_profile_typo_ends_make_run_with_the_key_not_a_traceback(tmp_path, capsys):
    profile = tmp_path / "typo.yaml"
    profile.write_text("gate: {fit: {loss_tolerance: 0.2}}\n")
    assert make_run(["--profile", str(profile)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: file {profile}, field 'gate'") and "did you mean 'gates'" in err


# --- bad input, refused first, in one line ----------------------------------------------------

def _step_error(result) -> tuple[str, str]:
    failure = next(e for e in result.all_events if e.is_step_failure)
    error = failure.step_failure_data.error
    while error.cause is not None and error.cls_name.startswith("Dagster"):
        error = error.cause
    # An explained error is a Failure whose description is "<its class>: <its message>".
    message = re.sub(r"^[\w.]+\.(\w+): ", r"\1: ", error.message.strip())
    return failure.step_key, message.removeprefix("Failure: ")


def test_a_duplicate_key_in_the_target_config_stops_a_refit_before_the_fit(world):
    """YAML kept the second `exclude:`: the release trained on the validation-only
    population targets and dropped the state EITC ones, silently."""
    world.config.write_text(world.config.read_text() + "\nexclude:\n  - {variable: eitc}\n")
    fits = len(world.instance.fetch_materializations(AssetKey("calibration_weights"),
                                                     limit=100).records)
    result = world.run("refit")
    assert not result.success
    step, error = _step_error(result)
    assert step == "target_config"
    assert error.startswith(f"InputError: file {world.config}, field 'exclude': given twice "
                            "in one mapping, at lines")
    assert len(world.instance.fetch_materializations(AssetKey("calibration_weights"),
                                                     limit=100).records) == fits


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
@pytest.mark.parametrize("file", ["target_db/targets.db", "stratified_cps/base.h5"])
def test_a_damaged_input_file_is_an_input_error_naming_it(world, file, damage):
    """A truncated or garbage targets.db was pandas' raw DatabaseError; a truncated base.h5
    h5py's raw OSError, without the path."""
    path = world.root / file
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"garbage" * 999)
    result = world.materialize("calibration_package")
    assert not result.success
    step, error = _step_error(result)
    assert step == "calibration_package"
    assert error.startswith(f"InputError: file {path}") and "Fix: " in error, error
    assert "\n" not in error


def test_a_record_budget_beyond_the_package_is_refused_at_launch(tmp_path, capsys):
    """`national_fit: {records: 100000}` on the 4,000-column ci package was refused only
    after the source, package and local fit ran (98 s), naming targets.csv."""
    profile = tmp_path / "big.yaml"
    ci = Path(__file__).resolve().parents[1] / "pipeline" / "config" / "profiles" / "ci.yaml"
    profile.write_text(ci.read_text().replace("records: 1000", "records: 100000"))
    assert make_run(["--profile", str(profile)]) == 1  # refused as the profile loads
    err = capsys.readouterr().err
    assert err.startswith(f"error: file {profile}, field 'national_fit.records': a budget of "
                          "100,000 records exceeds the 4,000 columns") and err.count("\n") == 1


def test_a_fit_that_learnt_nothing_fails_gate_1(world, capsys):
    """`calibrate fit --lambda-l0 1e300`: NaN L0 loss, no record kept, every target missed;
    every gate-1 rule passed and rc was 0."""
    from pipeline.cli import main as calibrate

    root = world.root
    args = ["fit", "--package", str(root / "calibration_package"), "--target-config",
            str(world.config), "--out", str(world.dir / "fit_out"), "--profile", "ci",
            "--device", "cpu", "--epochs", "100", "--polish-epochs", "50"]
    assert calibrate([*args, "--lambda-l0", "1e300"]) == 3
    out = capsys.readouterr().out
    assert "[FAIL] fit_finite: not finite: l0 loss" in out
    assert "[FAIL] absolute_floor: trained mean |rel error| 1 (ceiling 0.1)" in out
    assert calibrate([*args, "--lambda-l0", "inf"]) == 1
    assert "field 'lambda_l0': Input should be a finite number" in capsys.readouterr().err


def test_calibrate_fit_starts_from_the_packages_own_profile(world, capsys):
    """Without --profile the ci package was fitted with production's regularisation (the
    demo package ended at 22% mean error, gate 1 green but for the budget)."""
    from pipeline.cli import main as calibrate

    out = world.dir / "fit_out"
    assert calibrate(["fit", "--package", str(world.root / "calibration_package"),
                      "--target-config", str(world.config), "--out", str(out),
                      "--device", "cpu", "--epochs", "60", "--polish-epochs", "40"]) in (0, 3)
    assert "starting from profile 'ci'" in capsys.readouterr().err
    params = json.loads((out / "run_config.json").read_text())["params"]
    ci = load_profile("ci").fit
    assert (params["lambda_l2"], params["log_freq"], params["epochs"]) == (
        ci.lambda_l2, ci.log_freq, 60)


# --- attacks on promotion: a verdict binds every byte it judged ------------------------------
# Each runs after every check passed (judged against CURRENT, as a refit's would be) and
# before promotion, on a copy of one prepared world.

@pytest.fixture(scope="module")
def judged_world(built_world, tmp_path_factory):
    with private_copy(built_world, tmp_path_factory.mktemp("judged")) as world:
        assert _check_again(world, *(fit.review for fit in FITS), "simulation_quality").success
        yield world


@pytest.fixture
def ready(judged_world, tmp_path):
    """A private copy of a world where only promotion remains."""
    with private_copy(judged_world, tmp_path) as world:
        yield world


def _refused(world: World, *names: str, baseline_damaged: bool = False) -> str:
    """Promote; it must fail, name every file in `names`, and leave the releases alone
    (all but CURRENT, when the test damaged it on purpose)."""
    current, versions = _snapshot(world)
    result = world.materialize("promoted_release")
    assert not result.success and not _promoted(result)
    step, error = _step_error(result)
    assert step == "promoted_release" and error.startswith("GateError: promotion refused")
    for name in names:
        assert name in error, error
    _releases_intact(world.root, current, [v for v in versions
                                           if not (baseline_damaged and v == current)])
    assert [r.version for r in list_releases(world.root)] == versions
    return error


def _scale_weight(path: Path, factor: float, *, in_place: bool = False) -> None:
    """One household_weight x factor: on a copy moved over the original (a new inode), or
    on the file's own bytes."""
    import h5py

    target = path if in_place else path.with_name(path.name + ".edit")
    if not in_place:
        shutil.copy(path, target)
    with h5py.File(target, "r+") as f:
        data = f["household_weight"][next(iter(f["household_weight"]))]
        data[0] = data[0] * factor
    if not in_place:
        os.replace(target, path)


def test_the_control_promotes(ready):
    result = ready.materialize("promoted_release")
    assert result.success and _promoted(result)
    release = current_release(ready.root)
    gates = release.manifest["gates"]
    assert gates["structural_sanity"]["files_judged"] > 3
    assert gates["xw_consistency"]["judged_with"]["profile"] == "ci"
    for gate in gates:  # the verdicts that judged it travel with it, as judged
        assert sha256_file(release.path / "gates" / f"{gate}.json") == gates[gate][
            "verdict_sha256"]


def test_a_published_file_changed_after_the_checks_is_not_promoted(ready):
    """The issue's first reproduction: DE.h5 with one weight x1000, moved over the original,
    was promoted with rc 0 and its tampered sha256 in the manifest."""
    _scale_weight(ready.root / "stacked_h5s" / "states" / "DE.h5", 1000.0)
    error = _refused(ready, "stacked_h5s/states/DE.h5: changed since structural_sanity, "
                            "xw_consistency, simulation_quality judged it")
    assert "run the checks again" in error


@pytest.mark.parametrize("stray, content", [
    ("states/CA.h5", None),  # a real state file copied into the ci stacking
    ("districts/0601.h5", b"junk"),
])
def test_files_nobody_checked_are_not_published(ready, stray, content):
    path = ready.root / "stacked_h5s" / stray
    if content is None:
        shutil.copy(ready.root / "stacked_h5s" / "states" / "DE.h5", path)
    else:
        path.write_bytes(content)
    _refused(ready, f"stacked_h5s/{stray}: in the stacked directory but no check judged it")


@pytest.mark.parametrize("fit_dir, name", [
    ("calibration_weights", "run_config.json"),
    ("calibration_weights", "diagnostics.csv"),
    ("national_weights", "calibration_log.csv"),
])
def test_the_fit_record_gate_1_read_is_bound(ready, fit_dir, name):
    """Edited run_config.json (epochs, records kept, max error) or a replaced diagnostics
    put forged numbers into the promoted manifest: gate 1 read them, bound only weights."""
    path = ready.root / fit_dir / name
    if name == "run_config.json":
        record = json.loads(path.read_text())
        record["params"]["epochs"] = 5000
        record["records_kept"] *= 2
        record["error_summary"]["max"] = 1e-4
        path.write_text(json.dumps(record, indent=2))
    else:
        lines = path.read_text().splitlines()
        path.write_text("\n".join(lines[:2]) + "\n")
    _refused(ready, f"{fit_dir}/{name}: changed since")


def test_judged_with_one_profile_promoted_with_another(ready, tmp_path):
    ci = Path(__file__).resolve().parents[1] / "pipeline" / "config" / "profiles" / "ci.yaml"
    loose = tmp_path / "loose.yaml"
    loose.write_text(ci.read_text() + "gates:\n  consistency_tolerance: 0.5\n")
    defs = make_definitions(profile=str(loose), storage_root=str(ready.root),
                            target_config_path=str(ready.config), device="cpu",
                            dask="inprocess")
    keys = {AssetCheckKey(AssetKey(g.subject), g.name) for g in GATES}
    job = defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection=set(), asset_check_selection=keys)
    assert job.execute_in_process(instance=ready.instance, raise_on_error=False).success
    _refused(ready, "xw_consistency: judged with the thresholds of profile "
                    f"'{loose}', not those of 'ci'")


def test_a_verdict_edited_by_hand_is_refused(ready):
    path = ready.root / "gates" / "xw_consistency.json"
    verdict = json.loads(path.read_text())
    verdict["summary"] = "all rules passed (checked by hand)"
    path.write_text(json.dumps(verdict, indent=2))
    _refused(ready, "xw_consistency: its verdict file is not the one its check recorded "
                    "(edited since)")


def _writable(path: Path) -> None:
    for p in [path, *path.rglob("*")]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)


@pytest.mark.parametrize("damage", ["tampered", "stray"])
def test_a_baseline_release_that_fails_its_manifest(ready, damage, capsys):
    """Gate 2 compared against whatever CURRENT held: a CURRENT made to look worse lets
    any regression through."""
    from pipeline.cli import main as calibrate

    baseline = current_release(ready.root)
    _writable(baseline.path)
    if damage == "tampered":
        csv = baseline.path / "validation_results.csv"
        csv.write_text(csv.read_text().replace(",0.0", ",9.0"))
        named = "validation_results.csv: changed since it was released"
    else:
        (baseline.path / "states" / "CA.h5").write_bytes(b"not judged")
        named = "states/CA.h5: not in the manifest"
    # After the checks: promotion re-hashes the baseline the gates judged against.
    if damage == "tampered":
        _refused(ready, f"releases/{baseline.version}/validation_results.csv: changed since",
                 baseline_damaged=True)
    # Judged again: gate 2 (and gate 1) refuse the baseline before comparing anything.
    result = _check_again(ready, "simulation_quality", "fit_review")
    failed = {e.check_name: e for e in result.get_asset_check_evaluations() if not e.passed}
    assert set(failed) == {"simulation_quality", "fit_review"}
    assert f"baseline release {baseline.version}: {named}" in failed[
        "simulation_quality"].description
    logged = [e.user_message for e in ready.instance.all_logs(result.run_id)]
    assert any(m.startswith("check simulation_quality failed: ") and named in m
               for m in logged), logged  # what a terminal shows, not only the UI
    assert not ready.materialize("promoted_release").success
    assert calibrate(["releases", "--storage", str(ready.root)]) == 0
    assert f"verify FAILED (1: {named}" in " ".join(capsys.readouterr().out.split())
    assert calibrate(["verify", "--storage", str(ready.root)]) == 6


def test_a_release_is_a_read_only_copy_of_what_was_judged(ready, capsys):
    """Releases were hard links into working storage: an in-place edit of a working file
    changed the release and every older release linking it, and nothing noticed."""
    from pipeline.cli import main as calibrate

    result = ready.materialize("promoted_release")
    assert result.success
    release = current_release(ready.root)
    working = ready.root / "stacked_h5s" / "states" / "DE.h5"
    published = release.path / "states" / "DE.h5"
    assert published.stat().st_ino != working.stat().st_ino and working.stat().st_nlink == 1
    assert published.stat().st_mode & 0o222 == 0 and release.path.stat().st_mode & 0o222 == 0
    before = sha256_file(published)
    _scale_weight(working, 1000.0, in_place=True)
    assert sha256_file(published) == before
    assert calibrate(["verify", "--all", "--storage", str(ready.root)]) == 0
    capsys.readouterr()
    _writable(release.path)
    _scale_weight(published, 1000.0, in_place=True)
    assert calibrate(["verify", "--storage", str(ready.root)]) == 6
    assert "states/DE.h5: changed since it was released" in capsys.readouterr().out
