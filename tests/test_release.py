import json
import os
from datetime import UTC, datetime

import pytest
from factories import validation_frame

from pipeline.core.errors import InputError
from pipeline.core.hashing import sha256_file
from pipeline.release import versions as rel

T1 = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
T2 = datetime(2025, 1, 3, 3, 4, 5, tzinfo=UTC)


def _inputs(tmp_path, tag: str):
    src = tmp_path / f"src-{tag}"
    (src / "stacked" / "states").mkdir(parents=True)
    (src / "stacked" / "states" / "NC.h5").write_bytes(f"nc-{tag}".encode())
    (src / "stacked" / "manifest.json").write_text("{}")
    (src / "weights.npy").write_bytes(f"w-{tag}".encode())
    validation_frame([0.01 if tag == "a" else 0.2]).to_csv(src / "validation_results.csv",
                                                            index=False)
    return {"stacked": src / "stacked", "weights.npy": src / "weights.npy",
            "validation_results.csv": src / "validation_results.csv"}


def test_two_promotions_move_current_and_rollback(tmp_path):
    root = tmp_path / "store"
    assert rel.current_release(root) is None and rel.load_current_validation(root) is None
    r1 = rel.promote(root, _inputs(tmp_path, "a"), {"metrics": {"loss": 1.5}}, now=T1)
    assert r1.version.startswith("20250102T030405Z-") and len(r1.version) == 25
    assert rel.current_release(root).version == r1.version
    m = json.loads((r1.path / "manifest.json").read_text())
    assert m["metrics"] == {"loss": 1.5}
    assert set(m["files"]) == {"stacked/states/NC.h5", "stacked/manifest.json", "weights.npy",
                               "validation_results.csv"}
    assert m["files"]["weights.npy"]["sha256"] == sha256_file(r1.path / "weights.npy")
    assert (r1.path / "stacked/states/NC.h5").read_bytes() == b"nc-a"

    r2 = rel.promote(root, _inputs(tmp_path, "b"), {"metrics": {"loss": 1.2}}, now=T2)
    assert [r.version for r in rel.list_releases(root)] == [r1.version, r2.version]
    assert os.readlink(root / "releases" / "CURRENT") == r2.version
    assert rel.load_current_validation(root)["rel_abs_error"].tolist() == [0.2]
    assert rel.load_current_validation(root)["area_id"].tolist() == ["0"]  # text, not 0

    assert rel.rollback(root).version == r1.version
    assert rel.current_release(root).version == r1.version
    assert (r2.path / "weights.npy").read_bytes() == b"w-b"  # earlier/later releases stay
    with pytest.raises(InputError, match="no earlier release"):
        rel.rollback(root)
    assert rel.rollback(root, r2.version).version == r2.version
    with pytest.raises(InputError, match="no complete release"):
        rel.rollback(root, "19990101T000000Z-deadbeef")


def test_failing_promotion_leaves_current_and_releases_untouched(tmp_path, monkeypatch):
    root = tmp_path / "store"
    r1 = rel.promote(root, _inputs(tmp_path, "a"), {}, now=T1)
    before = sorted(p.name for p in (root / "releases").iterdir())

    files = _inputs(tmp_path, "b")
    files["diagnostics.csv"] = tmp_path / "missing.csv"
    with pytest.raises(InputError, match="does not exist"):
        rel.promote(root, files, {}, now=T2)

    calls = []

    def fail_second(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError("disk full")
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(src.read_bytes())
        return sha256_file(dst)

    monkeypatch.setattr(rel, "_place", fail_second)
    with pytest.raises(OSError, match="disk full"):
        rel.promote(root, _inputs(tmp_path, "c"), {}, now=T2)
    assert sorted(p.name for p in (root / "releases").iterdir()) == before
    assert rel.current_release(root).version == r1.version
    assert (r1.path / "weights.npy").read_bytes() == b"w-a"


def test_release_is_never_overwritten_and_reserved_keys_refused(tmp_path):
    """The same content promoted again within the same second (a retry after a kill between
    the release's rename and the CURRENT swap) is a new version; the first stays as it was."""
    root = tmp_path / "store"
    files = _inputs(tmp_path, "a")
    first = rel.promote(root, files, {}, now=T1)
    written = (first.path / "manifest.json").read_bytes()
    again = rel.promote(root, files, {}, now=T1)
    assert again.version == f"{first.version}-2"
    assert rel.promote(root, files, {}, now=T1).version == f"{first.version}-3"
    assert (first.path / "manifest.json").read_bytes() == written
    assert rel.current_release(root).version == f"{first.version}-3"
    with pytest.raises(InputError, match="reserved"):
        rel.promote(root, files, {"files": []}, now=T2)
    assert [r.version for r in rel.list_releases(root)] == [
        first.version, again.version, f"{first.version}-3"]


def _three_releases(tmp_path):
    root = tmp_path / "store"
    made = [rel.promote(root, _inputs(tmp_path, tag), {}, now=now) for tag, now in
            (("a", T1), ("b", T2), ("c", T3))]
    return root, [r.version for r in made]


T3 = datetime(2025, 1, 4, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize("breakage, problem", [
    ("missing", "CURRENT is missing while 3 releases exist"),
    ("dangling", "points at '20240101T000000Z-00000000', which is not a complete release"),
])
def test_a_broken_current_next_to_releases_is_refused_with_the_repair(tmp_path, breakage,
                                                                       problem):
    root, versions = _three_releases(tmp_path)
    rel.rollback(root, versions[1])
    link = root / "releases" / "CURRENT"
    link.unlink()
    if breakage == "dangling":
        link.symlink_to("20240101T000000Z-00000000")
    for read in (rel.current_release, rel.load_current_validation):
        with pytest.raises(InputError) as info:
            read(root)
        text = str(info.value)
        assert problem in text and "no baseline and nothing may be promoted" in text
        assert f"it last pointed at {versions[1]}" in text  # from the promotion history
        assert "calibrate rollback VERSION" in text and "CALIBRATION_BASELINE=newest" in text
    with pytest.raises(InputError, match="pass the version to restore"):
        rel.rollback(root)
    assert rel.repair_current(root).version == versions[2]  # the explicit "newest" choice
    assert rel.current_release(root).version == versions[2]
    assert rel.repair_current(root) is None  # nothing left to repair


def test_no_release_yet_is_not_a_broken_current(tmp_path):
    assert rel.current_problem(tmp_path) is None and rel.current_release(tmp_path) is None
    assert rel.repair_current(tmp_path) is None


def test_a_release_whose_promotion_died_before_the_swap_is_unpromoted(tmp_path, monkeypatch):
    root, versions = _three_releases(tmp_path)

    def crash(target):
        if target.name == "CURRENT":
            raise KeyboardInterrupt("killed between the rename and the CURRENT swap")

    monkeypatch.setattr(rel, "before_rename", crash)
    with pytest.raises(KeyboardInterrupt):
        rel.promote(root, _inputs(tmp_path, "d"), {}, now=datetime(2025, 1, 5, tzinfo=UTC))
    monkeypatch.undo()
    orphan = rel.list_releases(root)[-1].version
    assert orphan not in versions and rel.current_release(root).version == versions[2]
    assert rel.promoted_versions(root) == set(versions)
    # A swap whose history record was lost is recorded by the next swap.
    link = root / "releases" / "CURRENT"
    link.unlink()
    link.symlink_to(orphan)
    rel.rollback(root, versions[0])
    assert rel.promoted_versions(root) == {*versions, orphan}
    history = json.loads((root / "releases" / "history.json").read_text())
    assert [h["action"] for h in history] == ["promote"] * 3 + ["recorded late", "rollback"]


def test_releases_command_lists_and_marks_with_a_dangling_current(tmp_path, monkeypatch, capsys):
    from pipeline.cli import main

    root, versions = _three_releases(tmp_path)
    monkeypatch.setattr(rel, "before_rename", lambda t: (_ for _ in ()).throw(
        KeyboardInterrupt()) if t.name == "CURRENT" else None)
    with pytest.raises(KeyboardInterrupt):
        rel.promote(root, _inputs(tmp_path, "d"), {}, now=datetime(2025, 1, 5, tzinfo=UTC))
    monkeypatch.undo()
    assert main(["releases", "--storage", str(root)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["release", "mean", "err", "max", "err", "local", "kept",
                              "national", "kept", "gates", "note"]
    assert out[3].startswith(f"* {versions[2]}") and "UNPROMOTED" not in out[3]
    assert out[4].startswith("  2025010") and out[4].endswith("UNPROMOTED")
    assert out[5].startswith("UNPROMOTED: its promotion stopped before CURRENT moved")
    assert out[6] == "verify OK: every release's files match its manifest"
    assert max(map(len, out)) <= 100
    (root / "releases" / "CURRENT").unlink()
    (root / "releases" / "CURRENT").symlink_to("gone")
    assert main(["releases", "--storage", str(root)]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 7 and "* " not in captured.out
    assert "CURRENT points at 'gone'" in captured.err and "calibrate rollback" in captured.err


def test_a_first_promotion_that_died_before_the_swap_is_not_a_broken_current(tmp_path,
                                                                           monkeypatch):
    root = tmp_path / "store"
    monkeypatch.setattr(rel, "before_rename", lambda t: (_ for _ in ()).throw(
        KeyboardInterrupt()) if t.name == "CURRENT" else None)
    with pytest.raises(KeyboardInterrupt):
        rel.promote(root, _inputs(tmp_path, "a"), {}, now=T1)
    monkeypatch.undo()
    [orphan] = rel.list_releases(root)
    assert rel.current_problem(root) is None and rel.current_release(root) is None
    assert rel.promoted_versions(root) == set()
    assert rel.promote(root, _inputs(tmp_path, "b"), {}, now=T2).version in (
        rel.promoted_versions(root))
    assert orphan.version not in rel.promoted_versions(root)


def test_releases_cut_before_the_history_count_as_promoted(tmp_path):
    root, versions = _three_releases(tmp_path)
    (root / "releases" / "history.json").unlink()  # a root from before promotions were recorded
    assert rel.promoted_versions(root) == set(versions)
    rel.rollback(root, versions[0])
    assert rel.promoted_versions(root) == set(versions)
    (root / "releases" / "CURRENT").unlink()
    assert rel.current_problem(root) == "is missing"


def test_a_release_is_a_read_only_copy_never_a_link(tmp_path):
    """Releases were hard links into working storage: an in-place edit of a working file
    rewrote every release linking it, and `calibrate releases` still showed them fine."""
    root = tmp_path / "store"
    files = _inputs(tmp_path, "a")
    release = rel.promote(root, files, {}, now=T1)
    copy = release.path / "weights.npy"
    assert copy.stat().st_ino != files["weights.npy"].stat().st_ino
    assert copy.stat().st_nlink == 1 and files["weights.npy"].stat().st_nlink == 1
    assert copy.stat().st_mode & 0o222 == 0 and release.path.stat().st_mode & 0o222 == 0
    assert (release.path / "stacked" / "states").stat().st_mode & 0o222 == 0
    with open(files["weights.npy"], "r+b") as f:  # the working file edited in place
        f.write(b"W")
    assert copy.read_bytes() == b"w-a" and rel.verify_release(release) == []


def _forge_with_manifest(path):
    (path / "weights.npy").write_bytes(b"forged")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["files"]["weights.npy"]["sha256"] = sha256_file(path / "weights.npy")
    (path / "manifest.json").write_text(json.dumps(manifest))


def _writable(path):
    for p in [path, *path.rglob("*")]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)


@pytest.mark.parametrize("damage, problem", [
    (lambda p: (p / "weights.npy").write_bytes(b"forged"),
     "weights.npy: changed since it was released (sha256 "),
    (lambda p: (p / "weights.npy").unlink(), "weights.npy: missing"),
    (lambda p: (p / "stacked" / "states" / "CA.h5").write_bytes(b"stray"),
     "stacked/states/CA.h5: not in the manifest (no check judged it)"),
    # The manifest re-written to match a forged file: its digest no longer names the version.
    (lambda p: _forge_with_manifest(p),
     "manifest.json: edited since it was released"),
])
def test_verify_names_what_changed_in_a_release(tmp_path, capsys, damage, problem):
    from pipeline.cli import main

    root = tmp_path / "store"
    release = rel.promote(root, _inputs(tmp_path, "a"), {"metrics": {"loss": 1.5}}, now=T1)
    assert main(["verify", "--storage", str(root)]) == 0
    assert capsys.readouterr().out.startswith(f"{release.version}: OK (4 files)")
    _writable(release.path)
    damage(release.path)
    [again] = rel.list_releases(root)
    assert any(p.startswith(problem) for p in rel.verify_release(again)), \
        rel.verify_release(again)
    assert main(["verify", release.version, "--storage", str(root)]) == 6
    captured = capsys.readouterr()
    assert f"{release.version}: FAILED" in captured.out and problem in captured.out
    assert "Fix: roll back to an intact release" in captured.err
    assert main(["releases", "--storage", str(root)]) == 0
    # The table wraps at 100 columns.
    assert f"verify FAILED (1: {problem}" in " ".join(capsys.readouterr().out.split())


def test_promotion_publishes_only_judged_bytes(tmp_path):
    """`expected` is what the gates judged: an unjudged file, or a byte changed between the
    judgement and the copy, refuses the release and names the file."""
    root = tmp_path / "store"
    files = _inputs(tmp_path, "a")
    judged = {"weights.npy": sha256_file(files["weights.npy"]),
              "validation_results.csv": sha256_file(files["validation_results.csv"]),
              "stacked/states/NC.h5": sha256_file(files["stacked"] / "states" / "NC.h5")}
    with pytest.raises(InputError, match="would be published but no check judged it") as info:
        rel.promote(root, files, {}, now=T1, expected=judged)
    assert info.value.field == "stacked/manifest.json"
    judged["stacked/manifest.json"] = sha256_file(files["stacked"] / "manifest.json")
    files["weights.npy"].write_bytes(b"changed after the checks")
    with pytest.raises(InputError, match="its bytes changed since they were judged") as info:
        rel.promote(root, files, {}, now=T1, expected=judged)
    assert info.value.field == "weights.npy"
    assert rel.list_releases(root) == [] and rel.current_release(root) is None
    assert [p.name for p in (root / "releases").iterdir()] == ["history.json"]
    files["weights.npy"].write_bytes(b"w-a")
    assert rel.promote(root, files, {}, now=T1, expected=judged).manifest["files"][
        "weights.npy"]["sha256"] == judged["weights.npy"]
