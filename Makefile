# Two commands (see README): `make demo` sets up .venv and starts the demo; `make test` runs
# the whole test suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint clean lock

# constraints.txt pins every package to the versions the suite last passed with (pyproject.toml
# keeps the ranges): a new release on PyPI cannot break a fresh setup or CI. `make lock` re-pins.
$(BIN)/.installed: pyproject.toml constraints.txt blade_pipeline/_item_json.c
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

setup: $(BIN)/.installed

demo: setup
	$(BIN)/blade demo

lint: setup
	$(BIN)/ruff check .

# Validation runs on a throwaway SQLite instance: the repo's dagster.yaml is the PostgreSQL one.
test: lint
	mkdir -p .blade/validate_home
	DAGSTER_HOME=$(CURDIR)/.blade/validate_home $(BIN)/dagster definitions validate -w workspace.yaml
	$(BIN)/pytest

clean:
	rm -rf .blade .pytest_cache

# Newest versions within pyproject.toml's ranges, resolved in a throwaway venv; then run
# `make test` and commit constraints.txt if it passes.
lock:
	rm -rf .blade/lock-venv
	$(PYTHON) -m venv .blade/lock-venv
	.blade/lock-venv/bin/python -m pip install --quiet --upgrade pip
	.blade/lock-venv/bin/python -m pip install --quiet -e '.[dev]'
	{ echo "# pins for make setup / CI; regenerate with make lock"; \
	  .blade/lock-venv/bin/python -m pip freeze --exclude-editable; } > constraints.txt
	rm -rf .blade/lock-venv
	$(MAKE) setup
