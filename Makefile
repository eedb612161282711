# One entry point for people and CI. `make demo` and `make test` work from a fresh clone.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PYTHON := $(BIN)/python

.PHONY: help install venv node lint fmt test test-fast demo serve bench chaos probes clean checkov azmodels

help:
	@echo "make demo   - run the whole pipeline offline (Azurite + Graph simulator + devhost)"
	@echo "make test   - lint (ruff, mypy, import contracts), Checkov over infra/, and every test (unit, Azurite integration, end-to-end, infra/ against Azure's REST models)"
	@echo "make serve  - run the offline host for interactive use (see README)"
	@echo "make bench  - benchmarks (counts and ratios)"
	@echo "make chaos  - 200 DSRs through storage outages, host kills and Graph faults (~10 min)"
	@echo "make probes - the third review's probes against an offline host (~3 min)"

$(BIN)/.installed: requirements.txt requirements-dev.txt
	@command -v $(PY) >/dev/null || { echo "need $(PY) on PATH (Python 3.11)"; exit 1; }
	test -x $(PYTHON) || $(PY) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

venv: $(BIN)/.installed

# Checkov (infra/ security checks) lives in its own venv: its many pinned dependencies must not
# touch the app's. The requirements file is the whole, pinned environment (see its header).
CHECKOV_VENV := .venv-checkov

$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	@command -v $(PY) >/dev/null || { echo "need $(PY) on PATH (Python 3.11)"; exit 1; }
	test -x $(CHECKOV_VENV)/bin/python || $(PY) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-checkov.txt
	touch $@

# Every failed check must be fixed or listed with its reason in infra/checkov-skips.toml.
checkov: $(CHECKOV_VENV)/.installed
	$(CHECKOV_VENV)/bin/python infra/scripts/checkov.py

# Azure's REST models (azure-mgmt-* packages pinned at the releases that model infra/'s API
# versions) in their own venv, for tests/infra/test_rest_models.py: old pins that must not touch
# the app's .venv. A package needed in a second version is an overlay, installed beside it.
AZMODELS_VENV := .venv-azmodels

$(AZMODELS_VENV)/.installed: requirements-azmodels.txt requirements-azmodels-overlays.txt
	@command -v $(PY) >/dev/null || { echo "need $(PY) on PATH (Python 3.11)"; exit 1; }
	test -x $(AZMODELS_VENV)/bin/python || $(PY) -m venv $(AZMODELS_VENV)
	$(AZMODELS_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-azmodels.txt
	grep -Ev '^[[:space:]]*(#|$$)' requirements-azmodels-overlays.txt | while read -r req; do \
	  $(AZMODELS_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps \
	    --upgrade --target "$(AZMODELS_VENV)/overlays/$${req/==/-}" "$$req" || exit 1; \
	done
	touch $@

azmodels: $(AZMODELS_VENV)/.installed

# --prefer-offline: packages already in npm's cache are taken from it without asking the registry
# again (the lock file's integrity hashes still apply); the longest install on CI's machine.
node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error --prefer-offline
	touch $@

node: node_modules/.package-lock.json

# Everything `make test` needs. The four environments are independent (each its own folder,
# pip and npm each their own install): `make -j4 install` prepares them side by side (.ci/run).
install: venv node $(CHECKOV_VENV)/.installed azmodels

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	$(BIN)/lint-imports --no-cache
	$(PYTHON) tools/shape/check.py

fmt: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# pytest in PYTEST_WORKERS processes (pytest-xdist), a test module to a worker (loadscope: a
# module's fixtures are built once); each worker starts its own Azurite, simulators and hosts
# on free ports. Three on CI's two cores: the end-to-end tests mostly wait on the fast clock.
# PYTEST_WORKERS=0 runs it in one process. ARGS go to pytest.
PYTEST_WORKERS ?= 3

test: venv node lint checkov azmodels
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadscope $(ARGS)

test-fast: venv node
	$(BIN)/pytest -m "not e2e and not azurite"

demo: venv node
	$(PYTHON) -m devhost demo

.PHONY: demo-tenants
demo-tenants: venv node
	$(PYTHON) -m devhost demo --tenants

# make serve ARGS="--speed 1000": the README's curl lines use the key devkey; another key with
# DEVHOST_FUNCTION_KEY=... in the environment, or --function-key in ARGS.
serve: venv node
	$(PYTHON) -m devhost serve --function-key "$${DEVHOST_FUNCTION_KEY:-devkey}" $(ARGS)

bench: venv node
	$(PYTHON) -m bench

# Storage (Azurite) stopped for minutes to hours of the fast clock, several times, with host
# kills, packages built and data erased meanwhile: prints completed / lost / duplicated / chains
# verified / packages / erasures; exits 1 below 99.5 % completed or on any loss, duplicate,
# broken chain, unverified package or unreceipted erasure. make chaos ARGS="--dsrs 50 --seed 3"
chaos: venv node
	$(PYTHON) -m tests.e2e.storage_chaos $(ARGS)

# The third review's probes (issue 17) against an offline host: a table per family, exit 1 if
# any does not hold (docs/security.md). make probes ARGS="--family F-1 --family roles"
probes: venv node
	$(PYTHON) -m tests.e2e.review_probes $(ARGS)

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) $(AZMODELS_VENV) node_modules .mypy_cache .ruff_cache .pytest_cache .devhost
