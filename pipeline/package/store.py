"""The calibration package on disk: pickle-free, self-describing, validated on load.

Production ships a pickled dict; loading one runs arbitrary code, so that path is
taken only when the caller passes `trust_pickle=True`.
"""

from __future__ import annotations

import json
import pickle
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from pipeline.core.atomic import atomic_dir
from pipeline.core.contracts import check_table
from pipeline.core.errors import InputError
from pipeline.core.hashing import sha256_file
from pipeline.engine import Engine, load_engine
from pipeline.targets.db import TARGETS, with_provenance
from pipeline.targets.target_config import apply_target_config

PACKAGE_VERSION = 2  # 2: metadata.json records every file's sha256
DATA_FILES = ("X.npz", "targets.csv", "initial_weights.npy", "geography.npz", "base.h5")
FILES = (*DATA_FILES, "metadata.json")
TARGET_COLUMNS = tuple(TARGETS.columns)


@dataclass
class CalibrationPackage:
    X: sp.csr_matrix | None  # None when loaded without the matrix (stacking, the walk)
    targets: pd.DataFrame
    initial_weights: np.ndarray
    cd_geoid: np.ndarray
    county_index: np.ndarray
    counties: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def n_records(self) -> int:
        return int(self.metadata["n_records"])

    @property
    def n_clones(self) -> int:
        return int(self.metadata["n_clones"])

    @property
    def target_vocabulary(self) -> dict[str, list[str]] | None:
        """The target DB's names, so a config is judged against the DB, not this subset."""
        return self.metadata.get("target_vocabulary")

    @property
    def engine(self) -> Engine:
        """The engine the package's values were computed with (builtin for a package from
        before engines had names)."""
        return load_engine(str(self.metadata.get("engine", {}).get("name", "builtin")))

    @property
    def base_h5(self) -> Path:
        if self.path is None:
            raise ValueError("package has no directory; save it first")
        return self.path / "base.h5"

    def check_shapes(self, source: str | Path | None = None) -> None:
        """Refuse a package whose parts disagree before anything trains on it."""
        expected = self.n_records * self.n_clones
        n_t, n_c = self.X.shape if self.X is not None else (len(self.targets), expected)
        checks = [
            ("X", n_c == expected, f"X has {n_c} columns, n_records*n_clones = {expected}"),
            ("targets", len(self.targets) == n_t, f"{len(self.targets)} targets, X has {n_t} rows"),
            ("initial_weights", self.initial_weights.shape == (n_c,),
             f"initial_weights has shape {self.initial_weights.shape}, expected ({n_c},)"),
            ("cd_geoid", self.cd_geoid.shape == (n_c,),
             f"cd_geoid has shape {self.cd_geoid.shape}, expected ({n_c},)"),
            ("county_index", self.county_index.shape == (n_c,),
             f"county_index has shape {self.county_index.shape}, expected ({n_c},)"),
        ]
        for name, ok, problem in checks:
            if not ok:
                raise InputError(source, name, problem, "rebuild the calibration package")
        missing = [c for c in TARGET_COLUMNS if c not in self.targets.columns]
        if missing:
            raise InputError(source, "targets.csv", f"missing columns {missing}",
                             "rebuild the calibration package")


def save_package(pkg: CalibrationPackage, path: str | Path, base_h5: str | Path) -> Path:
    """Write the whole directory under a temporary name, then rename it into place."""
    path = Path(path)
    pkg.check_shapes()
    with atomic_dir(path) as tmp:
        sp.save_npz(tmp / "X.npz", pkg.X.astype(np.float32).tocsr(), compressed=False)
        pkg.targets.to_csv(tmp / "targets.csv", index=False)
        np.save(tmp / "initial_weights.npy", pkg.initial_weights.astype(np.float64))
        np.savez(
            tmp / "geography.npz",
            cd_geoid=pkg.cd_geoid.astype(np.int32),
            county_index=pkg.county_index.astype(np.int32),
            counties=np.asarray(pkg.counties, dtype=str),
        )
        shutil.copyfile(base_h5, tmp / "base.h5")
        meta = dict(pkg.metadata, package_version=PACKAGE_VERSION,
                    files={name: sha256_file(tmp / name) for name in DATA_FILES})
        (tmp / "metadata.json").write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
    pkg.path = path
    return path


def load_package(path: str | Path, *, trust_pickle: bool = False,
                 matrix: bool = True) -> CalibrationPackage:
    """Load a package directory, or a production pickle when explicitly trusted.

    `matrix=False` skips X (the largest file by far) for the stages after the fit.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, None, "calibration package not found",
                         "materialize calibration_package or pass the right --package path")
    if path.is_file():
        return _load_production_pickle(path, trust_pickle)
    for name in FILES:
        if not (path / name).exists():
            raise InputError(path / name, name, "missing from the package directory",
                             "rebuild the calibration package (a partial copy is not a package)")
    verify_package_files(path)
    try:
        X = sp.load_npz(path / "X.npz").tocsr() if matrix else None
        geo = np.load(path / "geography.npz", allow_pickle=False)
        metadata = json.loads((path / "metadata.json").read_text())
        targets = pd.read_csv(path / "targets.csv", dtype={"geographic_id": str},
                              keep_default_na=False)
        initial_weights = np.load(path / "initial_weights.npy", allow_pickle=False)
        pkg = CalibrationPackage(
            X=X, targets=targets, initial_weights=initial_weights,
            cd_geoid=geo["cd_geoid"], county_index=geo["county_index"],
            counties=geo["counties"], metadata=metadata, path=path,
        )
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(path, None, f"unreadable package ({exc})",
                         "rebuild the calibration package") from None
    pkg.check_shapes(path)
    check_table(TARGETS, pkg.targets, path / "targets.csv", "rebuild the calibration package")
    return pkg


def verify_package_files(path: str | Path) -> None:
    """Every file's bytes are the ones the build recorded; a truncated, damaged or swapped
    file is refused by name before anything parses it."""
    path = Path(path)
    meta_path = path / "metadata.json"
    fix = "rebuild the calibration package (materialize calibration_package)"
    try:
        recorded = json.loads(meta_path.read_text()).get("files")
    except (OSError, ValueError) as exc:
        raise InputError(meta_path, None, f"unreadable package metadata ({exc})", fix) from None
    if not isinstance(recorded, dict) or set(recorded) != set(DATA_FILES):
        raise InputError(meta_path, "files", "no sha256 recorded for the package files "
                         "(written by an older version, or edited)", fix)
    for name in DATA_FILES:
        file = path / name
        if sha256_file(file) != recorded[name]:
            raise InputError(file, name, f"content differs from the sha256 recorded at build "
                             f"time ({file.stat().st_size:,} bytes now): the file is truncated "
                             "or was modified", fix)


def load_selection(
    package_dir: str | Path, target_config: str | Path | None, *, trust_pickle: bool = False,
    matrix: bool = True,
) -> tuple[CalibrationPackage, np.ndarray]:
    """The package as a config sees it, and the targets the config trains on.

    `pkg.targets` comes back with the config's reconciled `value`s (`reconcile_rule` and
    `reconcile_factor` say which rule changed a target, and by how much): the fit, the
    package gate, validation and gate 2 all read the values from here. Without a config,
    every non-holdout target is selected and nothing is reconciled. The config is judged
    against the target DB's names the package carries.
    """
    pkg = load_package(package_dir, trust_pickle=trust_pickle, matrix=matrix)
    if target_config is None:
        return pkg, pkg.targets["holdout"].astype(int).to_numpy() == 0
    pkg.targets, selected = apply_target_config(target_config, pkg.targets,
                                                pkg.target_vocabulary, pkg.engine)
    return pkg, selected


def _load_production_pickle(path: Path, trust_pickle: bool) -> CalibrationPackage:
    if not trust_pickle:
        raise InputError(path, None, "this is a pickle; loading it can run arbitrary code",
                         "pass --trust-pickle (trust_pickle=True) only for a file you made")
    with open(path, "rb") as f:
        raw = pickle.load(f)  # noqa: S301 - explicit trust flag checked above
    try:
        X = sp.csr_matrix(raw["X_sparse"], dtype=np.float32)
        targets = pd.DataFrame(raw["targets_df"]).reset_index(drop=True)
        meta = dict(raw.get("metadata", {}))
        n_cols = X.shape[1]
        n_clones = int(meta.get("n_clones", 1))
        meta.setdefault("n_clones", n_clones)
        meta.setdefault("n_records", n_cols // n_clones)
        targets["target_name"] = list(raw.get("target_names", targets.index.astype(str)))
        for col, default in (("target_id", None), ("holdout", False), ("constraints", "[]"),
                             ("period", 0), ("domain_variable", "")):
            if col not in targets.columns:
                targets[col] = np.arange(len(targets)) if default is None else default
        targets = with_provenance(targets)
        cd = np.asarray(raw.get("cd_geoid", np.zeros(n_cols)), dtype=np.int32)
        iw = raw.get("initial_weights")
        initial = np.full(n_cols, 100.0) if iw is None else np.asarray(iw, dtype=np.float64)
    except KeyError as exc:
        raise InputError(path, str(exc), "missing from the production package",
                         "export the package with X_sparse and targets_df") from None
    pkg = CalibrationPackage(
        X=X, targets=targets, initial_weights=initial, cd_geoid=cd,
        county_index=np.zeros(n_cols, dtype=np.int32), counties=np.array([""]),
        metadata=meta, path=None,
    )
    pkg.check_shapes(path)
    return pkg
