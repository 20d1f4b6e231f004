"""The package format: round trip, refusal of partial or inconsistent packages, pickles."""

import json
import pickle

import numpy as np
import pytest
from factories import base_microdata, small_package

from pipeline.cli import main as calibrate
from pipeline.core.errors import InputError
from pipeline.core.hashing import sha256_file
from pipeline.core.lineage import package_content_sha
from pipeline.microdata import write_h5
from pipeline.package.store import DATA_FILES, load_package, save_package
from pipeline.package.validity import validate_package


def test_round_trip_is_exact(tmp_path):
    base = tmp_path / "base.h5"
    base.write_bytes(b"base")
    save_package(small_package(), tmp_path / "pkg", base)
    loaded = load_package(tmp_path / "pkg")
    assert (loaded.X != small_package().X).nnz == 0
    assert loaded.X.dtype == np.float32
    assert loaded.targets["geographic_id"].tolist() == ["US", "10", "1000"]
    assert loaded.targets["domain_variable"].tolist() == ["age", "snap", ""]
    assert loaded.targets["value"].tolist() == [10.0, 7.0, 1e6]
    assert loaded.n_records == 3 and loaded.n_clones == 2
    assert loaded.base_h5.read_bytes() == b"base"
    assert loaded.metadata["package_version"] == 2
    assert not list(tmp_path.glob(".tmp-*"))


def test_partial_package_is_refused_with_the_missing_file(tmp_path):
    base = tmp_path / "base.h5"
    base.write_bytes(b"base")
    save_package(small_package(), tmp_path / "pkg", base)
    (tmp_path / "pkg" / "X.npz").unlink()
    with pytest.raises(InputError, match="X.npz"):
        load_package(tmp_path / "pkg")


def test_shape_mismatch_is_refused():
    pkg = small_package()
    pkg.initial_weights = np.ones(5)
    with pytest.raises(InputError, match="initial_weights"):
        pkg.check_shapes()


def test_pickle_needs_explicit_trust(tmp_path):
    pkg = small_package()
    raw = {"X_sparse": pkg.X, "targets_df": pkg.targets.drop(columns=["target_name"]),
           "target_names": pkg.targets["target_name"].tolist(),
           "metadata": {"n_clones": 2}, "initial_weights": pkg.initial_weights,
           "cd_geoid": pkg.cd_geoid}
    path = tmp_path / "calibration_package.pkl"
    path.write_bytes(pickle.dumps(raw))
    with pytest.raises(InputError, match="trust-pickle"):
        load_package(path)
    loaded = load_package(path, trust_pickle=True)
    assert loaded.X.shape == (3, 6)
    assert loaded.n_records == 3
    assert loaded.targets["target_name"].tolist() == pkg.targets["target_name"].tolist()


def test_validation_finds_impossible_and_strict_targets():
    pkg = small_package()
    report = validate_package(pkg, strict_ratio=0.01)
    assert report.impossible["target_name"].tolist() == ["state_10/snap/[snap>0]"]
    assert report.exit_code(strict=False) == 1
    # Unselecting the impossible target leaves the strict failure: 30 / 1e6 < 1%.
    selected = np.array([True, False, True])
    report = validate_package(pkg, selected, strict_ratio=0.01)
    assert report.impossible.empty
    assert report.strict_failures["target_name"].tolist() == ["cd_1000/household_count"]
    assert report.strict_failures["ratio"].iloc[0] == pytest.approx(30 / 1e6)
    assert report.exit_code(strict=False) == 0
    assert report.exit_code(strict=True) == 2


def _saved_package(tmp_path):
    base = tmp_path / "base.h5"
    write_h5(base_microdata(), base)
    return save_package(small_package(), tmp_path / "pkg", base)


def test_every_file_sha256_is_recorded_at_save(tmp_path):
    path = _saved_package(tmp_path)
    recorded = json.loads((path / "metadata.json").read_text())["files"]
    assert recorded == {name: sha256_file(path / name) for name in DATA_FILES}
    assert set(DATA_FILES) | {"metadata.json"} == {p.name for p in path.iterdir()}


@pytest.mark.parametrize("name", [*DATA_FILES, "metadata.json"])
def test_a_truncated_file_is_refused_by_name_before_parsing(tmp_path, name, capsys):
    path = _saved_package(tmp_path)
    victim = path / name
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as info:
        load_package(path)
    assert info.value.file == str(victim) and "rebuild the calibration package" in info.value.fix
    if name != "metadata.json":
        assert info.value.field == name and "truncated or was modified" in info.value.problem
    assert calibrate(["validate-package", str(path)]) == 1
    err = capsys.readouterr().err
    assert str(victim) in err and "Fix: rebuild the calibration package" in err


@pytest.mark.parametrize("name", ["X.npz", "geography.npz"])
def test_a_damaged_zip_is_an_input_error_even_with_matching_hashes(tmp_path, name):
    """Defense in depth: bytes that hash right but do not parse are never a raw BadZipFile."""
    path = _saved_package(tmp_path)
    victim = path / name
    victim.write_bytes(victim.read_bytes()[:100])
    meta = json.loads((path / "metadata.json").read_text())
    meta["files"][name] = sha256_file(victim)
    (path / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="unreadable package"):
        load_package(path)


def test_a_package_without_recorded_hashes_is_refused(tmp_path):
    path = _saved_package(tmp_path)
    meta = json.loads((path / "metadata.json").read_text())
    del meta["files"]
    (path / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="no sha256 recorded") as info:
        load_package(path)
    assert info.value.field == "files"


def test_the_content_hash_follows_the_bytes_not_the_build_time(tmp_path):
    first = _saved_package(tmp_path / "a")
    second = _saved_package(tmp_path / "b")
    assert package_content_sha(first) == package_content_sha(second)
    with open(second / "initial_weights.npy", "r+b") as f:
        f.seek(-8, 2)
        f.write(b"\x00" * 8)
    assert package_content_sha(first) != package_content_sha(second)
