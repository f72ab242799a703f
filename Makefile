# Slipway: `make dev` runs the product, `make test` runs the checks (what CI runs).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: dev test lint install clean bench browser

# Reinstall when the dependency lists change; otherwise reuse what is there.
$(BIN)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) not found (Slipway needs Python 3.11)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The Azure Functions Python worker's own library (pinned and hash-checked in
# src/slipway/local/worker.py): `slipway dev` and the tests index and invoke functions with it.
WORKER_LIB := .worker/lib
$(WORKER_LIB)/azure_functions_runtime/handle_event.py: $(BIN)/.installed src/slipway/local/worker.py
	rm -rf $(WORKER_LIB)
	$(BIN)/slipway fetch-worker $(WORKER_LIB)

install: $(BIN)/.installed node_modules/.installed $(WORKER_LIB)/azure_functions_runtime/handle_event.py

# The web UI (web/, a Vite project) built into web/dist, which `slipway dev` serves at /.
web/dist/index.html: web/package.json web/package-lock.json $(shell find web/src web/public -type f) web/index.html web/vite.config.* web/staticwebapp.config.json
	npm ci --prefix web --no-audit --no-fund --loglevel=error && npm run build --prefix web

# The browser of the end-to-end tests: Debian's chromium, installed only when missing.
browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "make: the end-to-end tests need Chromium; install the Debian package 'chromium'"; exit 1; fi; }

dev: install web/dist/index.html
	$(BIN)/slipway dev --host 127.0.0.1 --port 7071 --workspace ./workspace --data ./.dev

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Azurite is started on free ports for the run and stopped whatever the outcome.
test: install lint web/dist/index.html browser
	$(BIN)/slipway with-azurite -- $(BIN)/python -m pytest

# Benchmarks print their figures; they are not part of `make test`.
bench: install
	@command -v rsync >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rsync strace; \
	  else echo "make: the sync benchmark compares with rsync; install the Debian package 'rsync'"; exit 1; fi; }
	$(BIN)/python tests/benchmarks/workspace.py
	$(BIN)/python tests/benchmarks/sync.py
	$(BIN)/python tests/benchmarks/webhook_burst.py
	$(BIN)/python tests/benchmarks/engine.py
	$(BIN)/python tests/benchmarks/deploy.py

clean:
	rm -rf $(VENV) node_modules .pytest_cache .ruff_cache .worker
