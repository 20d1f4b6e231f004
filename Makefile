# Two commands a new user needs: `make run` and `make test`. Both set up `.venv` first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PROFILE ?= demo
export DAGSTER_HOME := $(CURDIR)
export CALIBRATION_STORAGE_ROOT ?= $(CURDIR)/storage

.PHONY: setup run test test-fast lint bench ui clean

# Idempotent: re-running only re-installs when pyproject.toml changed.
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned: an unpinned torch pulls a multi-GB CUDA build.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

# BASELINE=newest: a missing or dangling releases/CURRENT is first pointed at the newest release.
run: setup
	$(BIN)/python -m assets.run --profile $(PROFILE) $(if $(BASELINE),--baseline $(BASELINE))

test: setup
	$(BIN)/ruff check pipeline assets resources tests benchmarks scripts
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not slow"

lint: setup
	$(BIN)/ruff check pipeline assets resources tests benchmarks scripts

ui: setup
	$(BIN)/dagster dev -w workspace.yaml

clean:
	rm -rf $(VENV) storage
