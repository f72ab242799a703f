# Slipway: `make dev` runs the product, `make test` runs the checks (what CI runs).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: dev test lint install clean bench

# Reinstall when the dependency lists change; otherwise reuse what is there.
$(BIN)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) not found (Slipway needs Python 3.11)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(BIN)/.installed node_modules/.installed

dev: install
	$(BIN)/slipway dev --host 127.0.0.1 --port 7071 --workspace ./workspace --data ./.dev

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Azurite is started on free ports for the run and stopped whatever the outcome.
test: install lint
	$(BIN)/slipway with-azurite -- $(BIN)/python -m pytest

# Benchmarks print their figures; they are not part of `make test`.
bench: install
	$(BIN)/python tests/benchmarks/workspace.py

clean:
	rm -rf $(VENV) node_modules .pytest_cache .ruff_cache
