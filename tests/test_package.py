"""The package format: round trip, refusal of partial or inconsistent packages, pickles."""

import pickle

import numpy as np
import pytest
from factories import small_package

from pipeline.core.errors import InputError
from pipeline.package.store import load_package, save_package
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
    assert loaded.metadata["package_version"] == 1
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
