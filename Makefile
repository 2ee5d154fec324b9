# Everything runs in a local virtual environment (.venv), made on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
RUNTIME := $(VENV)/.installed-runtime

.DEFAULT_GOAL := help
.PHONY: help install demo test lint format seed-recordings notebook dist facts clean

NOTEBOOK := notebooks/llm_workflows.ipynb
# Unsets every LLM_WORKFLOWS_*, OPENAI_* and GEMINI_* variable: the notebook runs as a student's
# keyless run does ("Mode: replay because no OpenAI API key was found.").
KEYLESS := env $(foreach name,$(filter LLM_WORKFLOWS_% OPENAI_% GEMINI_%,$(.VARIABLES)),-u $(name))

help:
	@echo "make demo             run the three workflows on the lesson's inputs (offline without a key)"
	@echo "make test             run the test suite and the notebook (offline)"
	@echo "make lint             ruff check and format check"
	@echo "make bench            time the workflows, then bulk runs at 12,000/6,000/600 a minute beside a plain"
	@echo "                      asyncio.gather, the ceiling of one process on openai 3.x and 2.x (about 9 min)"
	@echo "make test-compat      run the tests with openai 2.54.0 and 3.x on Python 3.10 and 3.13 (nox sessions)"
	@echo "make dist             build the sdist and the wheel into dist/ and check them (twine, package data)"
	@echo "make facts            list the facts in docs/facts.md checked more than 6 months ago (no network)"
	@echo "make seed-recordings  rebuild the shipped recordings from the lesson brief"
	@echo "make notebook         sync the lesson's .md and .ipynb, then re-execute it offline [REPO_URL=...]"
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
	@# A copy in a temporary folder, so that no .env of this clone is found either.
	tmp=$$(mktemp -d) && cp $(NOTEBOOK) $$tmp/ && cd $$tmp && \
		$(KEYLESS) $(abspath $(BIN))/python -m pytest -p no:cacheprovider --rootdir=. \
		--nbval --nbval-current-env llm_workflows.ipynb; status=$$?; rm -rf $$tmp; exit $$status

# Not part of make test: about 1.5 minutes for run.py, then about 7 for bulk.py (budgets beside
# a plain asyncio.gather, the ceiling of one process on openai 3.x and, in .venv-openai2, on
# openai 2.54.0, two processes, crash and resume, memory); exits non-zero if a target is missed.
.PHONY: bench test-compat
VENV2 := .venv-openai2
OPENAI2 := $(VENV2)/.installed
$(OPENAI2): pyproject.toml
	$(PYTHON) -m venv $(VENV2)
	$(VENV2)/bin/python -m pip install --quiet --disable-pip-version-check -e . 'openai==2.54.0'
	@touch $@

bench: $(RUNTIME) $(OPENAI2)
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/bulk.py --openai2 $(VENV2)/bin/python

# nox sessions in throwaway environments under .nox/ (noxfile.py); nox goes into .venv.
NOX := $(VENV)/.installed-nox
$(NOX): | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check 'nox>=2026.10.20'
	@touch $@

test-compat: $(NOX)
	$(BIN)/python noxfile.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/ci.yml

# A reminder, never a network call: the rows of docs/facts.md checked more than 6 months ago.
facts: $(RUNTIME)
	$(BIN)/python scripts/facts.py

# Build in an isolated environment (python -m build), then check what PyPI would get.
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --outdir dist .
	$(BIN)/python -m twine check --strict dist/*
	$(BIN)/python scripts/check_dist.py dist

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
	$(BIN)/jupytext --sync $(NOTEBOOK)  # bring ruff's changes to the notebook into its twin

# The lesson: edit notebooks/llm_workflows.md (or the .ipynb in Jupyter), then run this.
# Sync first (edits made in Jupyter reach the twin), write the repository URL into the twin
# (REPO_URL=..., else git's origin), sync it into the .ipynb, and re-execute it offline.
notebook: $(STAMP)
	$(BIN)/jupytext --sync $(NOTEBOOK)
	$(BIN)/python scripts/lesson_url.py set $(REPO_URL)
	$(BIN)/jupytext --sync $(NOTEBOOK)
	$(BIN)/python scripts/execute_notebook.py

seed-recordings: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,seed]'
	$(BIN)/python scripts/seed_recordings.py

# Record mode with a live key: the notebook's replies replace the shipped recordings, then
# the notebook is re-executed in replay mode so its stored outputs are what replay prints.
.PHONY: record
record: $(STAMP)
	$(BIN)/jupytext --sync $(NOTEBOOK)
	$(BIN)/python scripts/execute_notebook.py --record

clean:
	rm -rf $(VENV) $(VENV2) .nox .pytest_cache .ruff_cache build dist *.egg-info
