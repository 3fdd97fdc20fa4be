# Two commands (see README): `make demo` sets up .venv and starts the demo; `make test` runs
# the whole test suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# pytest-xdist workers of make test / test-extended (one a core; 0 runs the tests in one process)
TEST_WORKERS ?= 2

.PHONY: setup demo test test-fast test-extended lint check-defs docs-images clean lock

# constraints.txt pins every package to the versions the suite last passed with (pyproject.toml
# keeps the ranges): a new release on PyPI cannot break a fresh setup or CI. `make lock` re-pins.
$(BIN)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,devservices,celery]'
	touch $@

setup: $(BIN)/.installed

demo: setup
	$(BIN)/blade demo

lint: setup
	$(BIN)/ruff check .

# `dg check defs` loads the definitions as the code server does, on a throwaway SQLite instance
# (the repo's dagster.yaml is the PostgreSQL one).
check-defs: setup
	mkdir -p .blade/validate_home && touch .blade/validate_home/dagster.yaml
	VIRTUAL_ENV=$(CURDIR)/$(VENV) PATH=$(CURDIR)/$(BIN):$$PATH \
	  DAGSTER_HOME=$(CURDIR)/.blade/validate_home $(BIN)/dg check defs

test: lint check-defs
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile -m "not extended"

# The tests marked `extended` (~8–12 min; CI runs them after `make test`): the fault cases that
# kill -9 and restart processes (3, 3r, 3s, 6b-6c, 10, 13g, 14f), the live stack's terminate +
# re-execute of each kind, two browser tests (range backfill, schema change), steps on two Celery workers (RabbitMQ
# on 127.0.0.1:5672, S3 lake, PostgreSQL instance) and the bench smoke run.
test-extended: setup
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile -m extended -q

# The inner loop (~30 s): the unit tests and the in-process tier (every asset, check, job and
# sensor on the in-process warehouse and catalog; no server, no PostgreSQL).
test-fast: setup
	$(BIN)/pytest blade_pipeline_tests/unit blade_pipeline_tests/fast -q

# The README's pictures: the browser tests, with their screenshots written to docs/images
# (`make test` writes them to a temp dir and leaves the work tree clean).
docs-images: setup
	BLADE_SCREENSHOT_DIR=$(CURDIR)/docs/images $(BIN)/pytest blade_pipeline_tests/ui -q

clean:
	rm -rf .blade .pytest_cache

# Newest versions within pyproject.toml's ranges, resolved in a throwaway venv; then run
# `make test` and commit constraints.txt if it passes.
lock:
	rm -rf .blade/lock-venv
	$(PYTHON) -m venv .blade/lock-venv
	.blade/lock-venv/bin/python -m pip install --quiet --upgrade pip
	.blade/lock-venv/bin/python -m pip install --quiet -e '.[dev,devservices,celery]'
	{ echo "# pins for make setup / CI; regenerate with make lock"; \
	  .blade/lock-venv/bin/python -m pip freeze --exclude-editable; } > constraints.txt
	rm -rf .blade/lock-venv
	$(MAKE) setup
