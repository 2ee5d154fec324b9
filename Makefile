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
	@echo "make bench            time the workflows against a loopback stub server (in units of its latency L)"
	@echo "make test-compat      run the tests with openai 2.54.0 and 3.x on Python 3.10 and 3.13 (throwaway venvs)"
	@echo "make seed-recordings  rebuild the shipped recordings from the lesson brief"
	@echo "make record           re-record every reply live (needs OPENAI_API_KEY), then refresh the notebook's outputs"
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
	env -u OPENAI_API_KEY -u LLM_WORKFLOWS_MODEL -u LLM_WORKFLOWS_RECORDINGS LLM_WORKFLOWS_MODE=replay \
		$(BIN)/python -m pytest --nbval --nbval-current-env notebooks/

# Not part of make test: about 1.5 minutes for run.py, then about 16 for bulk.py (rate
# limits, crash and resume, memory at 100,000 queries); exits non-zero if a target is missed.
.PHONY: bench test-compat
bench: $(RUNTIME)
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/bulk.py

# Throwaway environments in a temporary directory; needs only $(PYTHON), not .venv.
test-compat:
	$(PYTHON) scripts/test_compat.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

seed-recordings: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,seed]'
	$(BIN)/python scripts/seed_recordings.py

# Record mode with a live key: the notebook's replies replace the shipped recordings, then
# the notebook is re-executed in replay mode so its stored outputs are what replay prints.
.PHONY: record
record: $(STAMP)
	$(BIN)/python scripts/execute_notebook.py --record

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build dist *.egg-info
