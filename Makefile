# Everything runs in a local virtual environment (.venv), made on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
RUNTIME := $(VENV)/.installed-runtime

.DEFAULT_GOAL := help
.PHONY: help install demo test lint format seed-recordings clean

help:
	@echo "make demo             run the three workflows on the lesson's inputs (offline without a key)"
	@echo "make test             run the test suite and the notebook (offline)"
	@echo "make lint             ruff check and format check"
	@echo "make seed-recordings  rebuild the shipped recordings from the lesson brief"
	@echo "make clean            remove the virtual environment and caches"

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit("llm-workflows needs Python 3.10 or newer, found " + sys.version.split()[0]) if sys.version_info < (3, 10) else None'
	$(PYTHON) -m venv $(VENV)

# The demo needs only the runtime dependencies; the tests also need the dev extra.
$(RUNTIME): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	@touch $@

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@ $(RUNTIME)

install: $(STAMP)

demo: $(RUNTIME)
	$(BIN)/python -m llm_workflows demo

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

seed-recordings: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,seed]'
	$(BIN)/python scripts/seed_recordings.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build dist *.egg-info
