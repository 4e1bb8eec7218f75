# Two commands do all set-up on a fresh machine: `make run` and `make test`.
# Both create .venv on first use and reinstall when pyproject.toml changes.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/emcp serve $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest --cov=emcp --cov-report=term --cov-fail-under=85 $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check emcp tests benchmarks
	$(BIN)/ruff format --check emcp tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/sse_calls.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .coverage build *.egg-info
