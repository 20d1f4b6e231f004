import json
import os
from datetime import UTC, datetime

import pytest
from factories import validation_frame

from pipeline.core.errors import InputError
from pipeline.core.hashing import sha256_file
from pipeline.release import releases as rel

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

    monkeypatch.setattr(rel, "_place", fail_second)
    with pytest.raises(OSError, match="disk full"):
        rel.promote(root, _inputs(tmp_path, "c"), {}, now=T2)
    assert sorted(p.name for p in (root / "releases").iterdir()) == before
    assert rel.current_release(root).version == r1.version
    assert (r1.path / "weights.npy").read_bytes() == b"w-a"


def test_release_is_never_overwritten_and_reserved_keys_refused(tmp_path):
    root = tmp_path / "store"
    files = _inputs(tmp_path, "a")
    rel.promote(root, files, {}, now=T1)
    with pytest.raises(InputError, match="immutable"):
        rel.promote(root, files, {}, now=T1)
    with pytest.raises(InputError, match="reserved"):
        rel.promote(root, files, {"files": []}, now=T2)
    assert len(rel.list_releases(root)) == 1
