"""The L0 calibration fit: fast sparse operator, reproducible training, exported = trained."""

from pipeline.fit.package_fit import fit_package
from pipeline.fit.params import FitParams
from pipeline.fit.review import FitThresholds, review_fit
from pipeline.fit.training import FitResult, fit

__all__ = ["FitParams", "FitResult", "FitThresholds", "fit", "fit_package",
           "review_fit"]
