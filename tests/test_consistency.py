import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from pipeline.core.errors import InputError
from pipeline.package.store import CalibrationPackage
from pipeline.validate.consistency import xw_consistency


def _package():
    X = sp.csr_matrix(np.array([[1, 0, 2, 0], [0, 3, 0, 1], [5, 5, 5, 5]], dtype=np.float32))
    targets = pd.DataFrame({"target_name": ["a", "b", "c"]})
    n = X.shape[1]
    return CalibrationPackage(X=X, targets=targets, initial_weights=np.ones(n),
                              cd_geoid=np.zeros(n, np.int32),
                              county_index=np.zeros(n, np.int32), counties=np.array([""]),
                              metadata={"n_records": 2, "n_clones": 2})


def test_exact_agreement_and_reported_deviation():
    pkg = _package()
    w = np.array([1.5, 2.0, 0.0, 4.0])
    totals = pd.DataFrame({"target_name": ["c", "a", "b"], "sim_value": [37.5, 1.5, 10.0]})
    report = xw_consistency(pkg, w, totals, np.array([True, True, True]))
    assert report.passed and report.max_rel_deviation == 0.0 and report.n_targets == 3

    off = totals.assign(sim_value=[37.5, 1.5, 10.5])  # b: |10 - 10.5| / 10.5
    report = xw_consistency(pkg, w, off, np.array([True, True, True]))
    assert not report.passed
    assert report.max_rel_deviation == pytest.approx(0.5 / 10.5)
    assert report.mean_rel_deviation == pytest.approx(0.5 / 10.5 / 3)
    assert report.worst.loc[0, "target_name"] == "b" and report.worst.loc[0, "xw"] == 10.0
    assert xw_consistency(pkg, w, off, np.array([True, True, True]), tolerance=0.05).passed
    # an unselected target's deviation does not count
    assert xw_consistency(pkg, w, off, np.array([True, False, True])).passed


def test_missing_totals_and_bad_shapes_fail():
    pkg = _package()
    totals = pd.DataFrame({"target_name": ["a"], "sim_value": [1.5]})
    report = xw_consistency(pkg, np.array([1.5, 2, 0, 4.0]), totals, np.array([True, True, False]))
    assert not report.passed and report.missing == ["b"]
    with pytest.raises(InputError, match="do not fit"):
        xw_consistency(pkg, np.ones(3), totals, np.array([True, True, False]))
