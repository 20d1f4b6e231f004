"""`calibrate fit`: flags reach the fit, a summary is printed, bad input exits 1."""

import json
import pickle

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from pipeline.cli import main
from pipeline.fit.params import PRESET_SOURCES
from pipeline.package.store import CalibrationPackage, save_package
from pipeline.targets.db import with_provenance

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def package(tmp_path):
    rng = np.random.default_rng(5)
    n_t, n_c = 12, 120
    X = sp.random(n_t, n_c, density=0.25, format="csr", random_state=rng, dtype=np.float32)
    X.data[:] = rng.integers(1, 4, X.nnz)
    targets = with_provenance(pd.DataFrame({
        "target_id": np.arange(n_t), "target_name": [f"state_6/snap/{i}" for i in range(n_t)],
        "variable": "snap", "geo_level": "state", "geographic_id": "6", "domain_variable": "",
        "value": X @ rng.gamma(2.0, 40.0, n_c), "period": 2024, "holdout": 0,
        "constraints": "[]",
    }))
    pkg = CalibrationPackage(X=X, targets=targets, initial_weights=np.full(n_c, 80.0),
                             cd_geoid=np.zeros(n_c), county_index=np.zeros(n_c, np.int32),
                             counties=np.array([""]), metadata={"n_records": n_c, "n_clones": 1})
    (tmp_path / "b.h5").write_bytes(b"x")
    return save_package(pkg, tmp_path / "pkg", tmp_path / "b.h5")


def test_fit_command_writes_outputs_with_given_flags(package, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["fit", "--package", str(package), "--out", str(out), "--preset", "national",
               "--epochs", "30", "--polish-epochs", "200", "--learning-rate", "0.1", "--seed", "3",
               "--device", "cpu", "--log-freq", "10", "--checkpoint-every", "15"])
    assert rc == 0
    cfg = json.loads((out / "run_config.json").read_text())
    assert cfg["params"] == {"preset": "national", "records": None, "lambda_l0": 2e-2,
                             "beta": 0.65, "lambda_l2": 1e-12, "learning_rate": 0.1,
                             "epochs": 30, "seed": 3, "device": "cpu", "log_freq": 10,
                             "checkpoint_every": 15, "polish_epochs": 200,
                             "temperature_schedule": "constant", "beta_start": 2.0,
                             "anneal_share": 0.5, "hybrid_share": 0.0, "allocation": "budget",
                             "stopping": "converged", "stop_window": 100,
                             "stop_tolerance": 1e-2,
                             "from_preset": ["beta", "lambda_l0", "lambda_l2"],
                             "preset_source": PRESET_SOURCES["national"]}
    assert "2e-2 (raised from the module's 1e-4)" in cfg["params"]["preset_source"]
    text = capsys.readouterr().out
    assert f"{cfg['records_kept']:,} of 120 records kept" in text
    assert "[PASS] weights_valid" in text
    rc = main(["fit", "--package", str(package), "--out", str(tmp_path / "more"),
               "--preset", "national", "--epochs", "40", "--polish-epochs", "200",
               "--learning-rate", "0.1",
               "--seed", "3", "--device", "cpu", "--resume-from", str(out / "checkpoint.pt")])
    assert rc == 0
    assert len(json.loads((tmp_path / "more" / "run_config.json").read_text())
               ["loss_history"]["l0"]) == 40


def test_bad_input_exits_1_with_the_fix(package, tmp_path, capsys):
    assert main(["fit", "--package", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 1
    assert "calibration package not found" in capsys.readouterr().err
    ckpt_out = tmp_path / "o2"
    # One polish epoch cannot show convergence: gate 1 fails, and the CLI says so (exit 3).
    assert main(["fit", "--package", str(package), "--out", str(ckpt_out), "--epochs", "5",
                 "--polish-epochs", "1", "--device", "cpu"]) == 3
    assert "[FAIL] loss_converged" in capsys.readouterr().out
    rc = main(["fit", "--package", str(package), "--out", str(tmp_path / "o3"), "--epochs", "9",
               "--lambda-l0", "0.5", "--device", "cpu",
               "--resume-from", str(ckpt_out / "checkpoint.pt")])
    assert rc == 1
    err = capsys.readouterr().err
    assert "lambda_l0: checkpoint 1e-07, now 0.5" in err and "Fix:" in err
    assert not (tmp_path / "o3" / "run_config.json").exists()


def test_records_flag_reaches_the_budget(package, tmp_path, capsys):
    out = tmp_path / "budget"
    assert main(["fit", "--package", str(package), "--out", str(out), "--records", "48",
                 "--epochs", "400", "--polish-epochs", "200", "--device", "cpu"]) == 0
    cfg = json.loads((out / "run_config.json").read_text())
    assert cfg["records_kept"] == 48 and cfg["params"]["records"] == 48
    assert abs(cfg["budget"]["expected_open"][-1] / 48 - 1) < 0.05
    assert "48 of 120 records kept (budget 48)" in capsys.readouterr().out


@pytest.mark.parametrize("records, message", [
    ("0", "field 'records': Input should be greater than or equal to 1 (got 0)"),
    ("-5", "field 'records': Input should be greater than or equal to 1 (got -5)"),
    ("121", "field 'fit.records': a budget of 121 records exceeds the package's 120 columns"),
])
def test_an_impossible_budget_is_refused(package, tmp_path, capsys, records, message):
    assert main(["fit", "--package", str(package), "--out", str(tmp_path / "o"),
                 "--records", records, "--device", "cpu"]) == 1
    assert message in capsys.readouterr().err


def test_device_comes_from_the_environment_unless_given(package, tmp_path, monkeypatch,
                                                        capsys):
    monkeypatch.setenv("CALIBRATION_DEVICE", "cpu")
    out = tmp_path / "env"
    assert main(["fit", "--package", str(package), "--out", str(out), "--epochs", "20",
                 "--polish-epochs", "50"]) in (0, 3)
    assert json.loads((out / "run_config.json").read_text())["params"]["device"] == "cpu"
    monkeypatch.setenv("CALIBRATION_DEVICE", "tpu")
    assert main(["fit", "--package", str(package), "--out", str(out), "--epochs", "20"]) == 1
    assert "field 'CALIBRATION_DEVICE': 'tpu' is not a device" in capsys.readouterr().err
    # --device wins over the environment.
    assert main(["fit", "--package", str(package), "--out", str(out), "--epochs", "20",
                 "--polish-epochs", "50", "--device", "cpu"]) in (0, 3)


def test_fit_takes_a_production_pickle_only_when_trusted(package, tmp_path, capsys):
    from pipeline.package.store import load_package

    pkg = load_package(package)
    raw = {"X_sparse": pkg.X, "target_names": pkg.targets["target_name"].tolist(),
           "targets_df": pkg.targets[["variable", "geo_level", "geographic_id",
                                      "domain_variable", "value"]],
           "initial_weights": pkg.initial_weights, "cd_geoid": pkg.cd_geoid,
           "metadata": {"n_clones": 1, "seed": 1}}
    path = tmp_path / "production.pkl"
    path.write_bytes(pickle.dumps(raw))
    args = ["fit", "--package", str(path), "--out", str(tmp_path / "p"), "--epochs", "30",
            "--polish-epochs", "200", "--device", "cpu"]
    assert main(args) == 1
    assert "pass --trust-pickle" in capsys.readouterr().err
    assert main([*args, "--trust-pickle"]) == 0
    assert "of 120 records kept; 12 targets trained" in capsys.readouterr().out
    cfg = json.loads((tmp_path / "p" / "run_config.json").read_text())
    assert cfg["package_dir"] == str(path) and cfg["lineage"]["calibration_package"] is None


def test_fit_reports_progress_as_plain_lines_when_not_a_terminal(package, tmp_path, capsys,
                                                                 monkeypatch):
    monkeypatch.setattr("pipeline.core.progress.INTERVAL_S", 0.0)
    assert main(["fit", "--package", str(package), "--out", str(tmp_path / "o"),
                 "--epochs", "100", "--polish-epochs", "200", "--device", "cpu",
                 "--log-freq", "50"]) == 0
    lines = capsys.readouterr().err.splitlines()
    l0 = [line for line in lines if line.startswith("fit: L0 phase")]
    assert len(l0) > 100  # a line per epoch at interval 0, and one at the end
    assert l0[-1].startswith("fit: L0 phase: 100/100 epoch (100%) in ")
    assert ", loss " in l0[-1] and ", kept " in l0[-1]
    assert lines[-1].startswith("fit: polish: 200/200 epoch (100%) in ")


def test_usage_errors_and_a_file_as_out_are_bad_input(package, tmp_path, capsys):
    """argparse's own exit 2 is the strict-ratio code here; `--out <file>` was a raw
    '[Errno 17] File exists'."""
    with pytest.raises(SystemExit) as done:
        main(["fit", "--package", str(package), "--epochs", "abc"])
    assert done.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "argument --epochs: invalid int value: 'abc'" in err
    assert "Fix:" in err
    taken = tmp_path / "a_file"
    taken.write_text("mine")
    assert main(["fit", "--package", str(package), "--out", str(taken), "--device", "cpu"]) == 1
    assert "field '--out': is a file" in capsys.readouterr().err
    assert taken.read_text() == "mine"


@pytest.mark.parametrize("value, code, says", [
    ("inf", 1, "field 'lambda_l0': Input should be a finite number (got inf)"),
    # A finite but absurd λ: NaN L0 loss, no record kept, every target missed. Every
    # relative rule passed it (rc 0); the absolute floor names what is wrong.
    ("1e300", 3, "[FAIL] absolute_floor"),
])
def test_a_fit_that_cannot_fit_is_refused(package, tmp_path, capsys, value, code, says):
    out = tmp_path / "o"
    assert main(["fit", "--package", str(package), "--out", str(out), "--lambda-l0", value,
                 "--epochs", "20", "--polish-epochs", "20", "--device", "cpu"]) == code
    captured = capsys.readouterr()
    assert says in captured.out + captured.err
    if code == 3:
        assert "[FAIL] fit_finite: not finite: l0 loss" in captured.out
        assert "0 records kept (at least 1)" in captured.out


def test_a_fit_starts_from_the_profile_the_package_was_built_with(package, tmp_path, capsys):
    """Not from production's regularisation: the demo package fitted without --profile kept
    production's λ_L2 and ended at 22% mean error."""
    from pipeline.config import load_profile

    meta_path = package / "metadata.json"
    meta = json.loads(meta_path.read_text())
    recorded = load_profile("ci").as_dict()
    recorded["fit"].update(epochs=23, polish_epochs=17, log_freq=5)
    meta_path.write_text(json.dumps({**meta, "profile": recorded}))
    files = json.loads(meta_path.read_text())["files"]
    assert "metadata.json" not in files  # metadata is not among the hashed data files
    out = tmp_path / "from_package"
    assert main(["fit", "--package", str(package), "--out", str(out), "--device", "cpu"]) in (
        0, 3)
    params = json.loads((out / "run_config.json").read_text())["params"]
    assert (params["epochs"], params["polish_epochs"], params["lambda_l2"]) == (23, 17, 2.2e-13)
    assert "starting from profile 'ci'" in capsys.readouterr().err
    out = tmp_path / "from_flag"
    assert main(["fit", "--package", str(package), "--out", str(out), "--device", "cpu",
                 "--profile", "demo", "--epochs", "20", "--polish-epochs", "20"]) in (0, 3)
    params = json.loads((out / "run_config.json").read_text())["params"]
    assert params["lambda_l2"] == load_profile("demo").fit.lambda_l2
