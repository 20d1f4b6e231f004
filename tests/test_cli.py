"""`calibrate validate-package` exit codes match production's validator: 0, 1, 2."""

import pickle

import numpy as np
from factories import small_package

from pipeline.cli import main as calibrate
from pipeline.package.store import save_package


def _saved(tmp_path, impossible: bool):
    pkg = small_package()
    if not impossible:
        pkg.targets.loc[1, "value"] = 0.0  # an all-zero row is fine when the target is 0
    base = tmp_path / "base.h5"
    base.write_bytes(b"base")
    return save_package(pkg, tmp_path / "pkg", base)


def test_exit_codes(tmp_path, capsys):
    path = _saved(tmp_path, impossible=False)
    assert calibrate(["validate-package", str(path)]) == 0
    # cd_1000/household_count: row sum 30 against 1e6 is below 1% (and 0.1%).
    assert calibrate(["validate-package", str(path), "--strict"]) == 2
    assert calibrate(["validate-package", str(path), "--strict", "0.00001"]) == 0
    assert "STRICT cd_1000/household_count" in capsys.readouterr().out
    assert calibrate(["validate-package", str(tmp_path / "missing")]) == 1


def test_impossible_target_exits_1(tmp_path, capsys):
    assert calibrate(["validate-package", str(_saved(tmp_path, impossible=True))]) == 1
    assert "IMPOSSIBLE state_10/snap/[snap>0]" in capsys.readouterr().out


def test_pickle_needs_the_trust_flag(tmp_path, capsys):
    pkg = small_package()
    pkg.targets.loc[1, "value"] = 0.0
    path = tmp_path / "production.pkl"
    path.write_bytes(pickle.dumps({
        "X_sparse": pkg.X, "targets_df": pkg.targets, "metadata": {"n_clones": 2},
        "initial_weights": np.ones(6), "target_names": pkg.targets["target_name"].tolist(),
    }))
    assert calibrate(["validate-package", str(path)]) == 1
    assert "--trust-pickle" in capsys.readouterr().err
    assert calibrate(["validate-package", str(path), "--trust-pickle"]) == 0
