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
# ENGINE=builtin|policyengine overrides the profile's engine (empty: the profile's).
ENGINE ?=
export CALIBRATION_ENGINE := $(ENGINE)
# The policyengine extra (policyengine-us 2.68.0, AGPL-3.0), installed into .venv only when
# the engine needs it: ENGINE=policyengine, a profile with `engine: policyengine`, or tests.
PE_INSTALLED := $(VENV)/.policyengine

.PHONY: setup run test test-fast lint bench ui interop clean allocate

# Idempotent: re-running only re-installs when pyproject.toml changed.
setup: $(VENV)/.installed $(DAGSTER_HOME)/dagster.yaml $(if $(filter policyengine,$(ENGINE)),$(PE_INSTALLED))

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned: an unpinned torch pulls a multi-GB CUDA build.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

$(PE_INSTALLED): $(VENV)/.installed
	$(BIN)/python -m pip install -q -e ".[dev,policyengine]"
	touch $@

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

# BASELINE=newest: a missing or dangling releases/CURRENT is first pointed at the newest release.
# JOB=refit: refit only. ACCEPT=gate.rule[,gate.rule] REASON="..." OPERATOR="name": accept
# those gate rules for this run, on record (README: "Change which targets count").
JOB ?= full_rebuild
run: setup
	@engine="$$($(BIN)/python -m assets.run --profile $(PROFILE) --print-engine)" || exit 1; \
	if [ "$$engine" = policyengine ]; then $(MAKE) --no-print-directory $(PE_INSTALLED); fi
	$(BIN)/python -m assets.run --profile $(PROFILE) --job $(JOB) \
	  $(if $(BASELINE),--baseline $(BASELINE)) $(if $(ACCEPT),--accept "$(ACCEPT)") \
	  $(if $(REASON),--reason "$(REASON)") $(if $(OPERATOR),--operator "$(OPERATOR)")

# CI (`.ci/run`) runs this: the policyengine extra is installed, so the ci profile also runs
# end to end under policyengine-us (tests/test_e2e_policyengine.py).
test: setup $(PE_INSTALLED)
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

# Loads every state, district and national file of releases/CURRENT in policyengine-us and
# compares its totals with the release's own validation (docs/policyengine.md). Needs
# `make run` first.
interop: setup $(PE_INSTALLED)
	$(BIN)/python -m pytest -q tests/test_policyengine.py
	$(BIN)/python scripts/policyengine_interop.py --storage $(CALIBRATION_STORAGE_ROOT)

clean:
	# Releases are read-only (immutable once promoted): make them writable to delete them.
	chmod -R u+w storage 2>/dev/null || true
	rm -rf $(VENV) storage .dagster_home
