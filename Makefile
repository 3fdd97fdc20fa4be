# Two commands (see README): `make demo` sets up .venv and starts the demo; `make test` runs
# the whole test suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint clean

$(BIN)/.installed: pyproject.toml blade_pipeline/_item_json.c
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
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
