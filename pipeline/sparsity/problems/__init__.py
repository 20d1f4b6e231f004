"""The problems the sparsity search solves, each a `protocol.CompressionProblem`:
calibration (`calibration.py`, built from a package by `calibration_model.py`) and digits."""
