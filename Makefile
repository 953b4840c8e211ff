# Everything a newcomer needs: `make demo` and `make test`. Each target installs what it uses.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Azurite, the Azure Blob emulator the tests start, from npm into a local prefix; 3.37 needs node >= 22.
NPM_TOOLS := .npm-tools
AZURITE_VERSION := 3.35.0
AZURITE_STAMP := $(NPM_TOOLS)/.azurite-$(AZURITE_VERSION)
DEMO_DATA := $(CURDIR)/data
export DAGSTER_HOME := $(CURDIR)/.dagster_home
export PENDO_EXPORTS ?= $(DEMO_DATA)/exports
export PENDO_WAREHOUSE ?= $(DEMO_DATA)/pendo.duckdb

.PHONY: install demo ui test test-fast test-snowflake-all crash-test bench lock clean

install: $(STAMP) $(AZURITE_STAMP)

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet setuptools==80.9.0 wheel==0.45.1
	$(BIN)/pip install --quiet --no-deps -r requirements.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/pip check
	touch $(STAMP)

$(AZURITE_STAMP):
	npm install --prefix $(NPM_TOOLS) --no-audit --no-fund --loglevel=error --save-exact azurite@$(AZURITE_VERSION)
	touch $@

$(DAGSTER_HOME)/dagster.yaml: pendo_assets/dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp pendo_assets/dagster.yaml $@

# The demo always starts afresh in ./data, whatever PENDO_EXPORTS says, so it never touches real exports.
demo: install
	rm -rf $(DEMO_DATA) $(DAGSTER_HOME)
	$(MAKE) --no-print-directory $(DAGSTER_HOME)/dagster.yaml
	PENDO_EXPORTS=$(DEMO_DATA)/exports PENDO_WAREHOUSE=$(DEMO_DATA)/pendo.duckdb $(BIN)/python -m pendo_assets.demo

ui: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -w workspace.yaml

test: install
	$(BIN)/python -m pytest -q -n auto --dist loadscope

# Everything but the tests marked slow, in under 2 minutes: the loop to run while editing.
test-fast: install
	$(BIN)/python -m pytest -q -n auto --dist loadscope -m "not slow"

# Every loadable scenario into Snowflake (a fakesnow server) through the staged path; about 40 minutes.
test-snowflake-all: install
	PENDO_SNOWFLAKE_SCENARIOS=all $(BIN)/python -m pytest -q pendo_assets_tests/test_scenarios_end_to_end.py -k snowflake

# SIGKILL a real sync at every named point of a load (make test kills at a few); about 6 minutes.
crash-test: install
	PENDO_CRASH_TEST=all $(BIN)/python -m pytest -q pendo_assets_tests/test_crash_safety.py pendo_assets_tests/test_metadata_dagster.py -k killed

# Speed and memory against the machine's floors (minutes; inputs are generated once into benchmarks/.data).
bench: install
	$(BIN)/python -m benchmarks.load --rows 2000000 --rows 8000000 --repeat 3
	$(BIN)/python -m benchmarks.sensor
	$(BIN)/python -m benchmarks.idle_sync
	$(BIN)/python -m benchmarks.buckets --rows 2000000 --repeat 3
	$(BIN)/python -m benchmarks.snowflake --rows 2000000 --repeat 3
	$(BIN)/python -m benchmarks.wide_day --matchables 2000
	$(BIN)/python -m benchmarks.backfill

# Re-resolve the pinned environment from pyproject.toml (needs the package registries).
lock:
	rm -rf .lockenv && $(PYTHON) -m venv .lockenv
	.lockenv/bin/pip install --quiet -e ".[test]"
	{ head -n 2 requirements.lock; .lockenv/bin/pip freeze --exclude-editable | grep -v '^pendo-datasync'; } > requirements.lock.new
	mv requirements.lock.new requirements.lock && rm -rf .lockenv

clean:
	rm -rf $(VENV) $(NPM_TOOLS) data .dagster_home
