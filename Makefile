# Mekong IOC — `make demo` runs the pipeline, `make test` runs the whole suite.
# Both set up what they need: a .venv with the project, and Debian's mosquitto and influxdb;
# `make test` also Debian's chromium and the browser tests' npm packages (`make browser`).
# `make bench` (and `make bench-quick`) measure us against the peers; see docs/benchmarks.md.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
ARGS   ?=

.PHONY: demo test lint typecheck unit integration servers browser venv clean bench bench-quick

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

servers:
	@./scripts/ensure-servers.sh

# Debian's chromium and tests/browser/node_modules (npm ci of the committed lock file).
browser:
	@./scripts/ensure-browser.sh

demo: $(STAMP) servers
	$(BIN)/ioc demo $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -m "not integration"

integration: $(STAMP) servers browser
	$(BIN)/pytest -m integration

test: $(STAMP) servers browser lint typecheck
	$(BIN)/pytest

# Benchmarks against the peers (docs/benchmarks.md): about 70 minutes, or about 3½ for the quick version.
bench: $(STAMP) servers
	$(BIN)/python -m bench.run $(ARGS)

bench-quick: $(STAMP) servers
	$(BIN)/python -m bench.run --quick $(ARGS)

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache tests/browser/node_modules
