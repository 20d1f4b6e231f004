# Two commands a new user needs: `make run` and `make test`. Both set up `.venv` first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PROFILE ?= demo
PORT ?= 3000
# The Dagster instance (run history, event logs, the UI's .nux/.logs_queue/.telemetry)
# lives under .dagster_home/, configured by the committed dagster.yaml copied there.
export DAGSTER_HOME := $(CURDIR)/.dagster_home
export CALIBRATION_STORAGE_ROOT ?= $(CURDIR)/storage
export CALIBRATION_PROFILE := $(PROFILE)
# The optional interop check: policyengine-us in its own venv (AGPL, never a default).
PE_VENV := .venv-policyengine

.PHONY: setup run test test-fast lint bench ui interop clean allocate

# Idempotent: re-running only re-installs when pyproject.toml changed.
setup: $(VENV)/.installed $(DAGSTER_HOME)/dagster.yaml

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned: an unpinned torch pulls a multi-GB CUDA build.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

# BASELINE=newest: a missing or dangling releases/CURRENT is first pointed at the newest release.
# JOB=refit: refit only. ACCEPT=gate.rule[,gate.rule] REASON="..." OPERATOR="name": accept
# those gate rules for this run, on record (README: "Change which targets count").
JOB ?= full_rebuild
run: setup
	$(BIN)/python -m assets.run --profile $(PROFILE) --job $(JOB) \
	  $(if $(BASELINE),--baseline $(BASELINE)) $(if $(ACCEPT),--accept "$(ACCEPT)") \
	  $(if $(REASON),--reason "$(REASON)") $(if $(OPERATOR),--operator "$(OPERATOR)")

test: setup
	$(BIN)/ruff check pipeline assets resources tests benchmarks scripts
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not slow"

lint: setup
	$(BIN)/ruff check pipeline assets resources tests benchmarks scripts

# The learned allocation of the national record budget (sparsity_allocation); then
# `make run PROFILE=demo_learned` fits national.h5 with it.
allocate: setup
	$(BIN)/python -m assets.run --profile $(PROFILE) --job allocation_search

# `make ui PROFILE=ci PORT=3107`: the launchpad and checks use that profile's settings.
# Started inside DAGSTER_HOME: from the repository root `dagster dev` would warn that the
# committed dagster.yaml there "will not be used" (make copied it into DAGSTER_HOME).
ui: setup
	cd $(DAGSTER_HOME) && $(CURDIR)/$(BIN)/dagster dev -w $(CURDIR)/workspace.yaml -p $(PORT)

# Loads every published file of the CURRENT release in policyengine-us and compares its
# totals with our validation (docs/policyengine.md). Needs `make run` first.
interop: setup $(PE_VENV)/.installed
	$(PE_VENV)/bin/python -m pytest -q tests/test_policyengine_optional.py
	$(PE_VENV)/bin/python scripts/policyengine_interop.py --storage $(CALIBRATION_STORAGE_ROOT)

$(PE_VENV)/.installed: pyproject.toml
	test -x $(PE_VENV)/bin/python || $(PYTHON) -m venv $(PE_VENV)
	$(PE_VENV)/bin/python -m pip install -q --upgrade pip
	$(PE_VENV)/bin/python -m pip install -q torch==2.13.0
	$(PE_VENV)/bin/python -m pip install -q -e ".[dev,policyengine]"
	touch $@

clean:
	# Releases are read-only (immutable once promoted): make them writable to delete them.
	chmod -R u+w storage 2>/dev/null || true
	rm -rf $(VENV) $(PE_VENV) storage .dagster_home
