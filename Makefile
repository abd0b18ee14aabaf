# The two commands: `make run` (the service on 127.0.0.1:8080) and `make test` (lint + tests).
# Both create .venv on first use: `make run` installs the service's own dependencies only,
# `make test` adds the dev tools (pytest, ruff, mypy, Playwright, …), both pinned by
# requirements.lock. Each has its own stamp, so neither reinstalls what the other installed.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements.lock
RUNTIME := $(VENV)/.runtime-stamp
DEV := $(VENV)/.dev-stamp

.DEFAULT_GOAL := help
.PHONY: help run test lint pytest format migrate lock clean bench config-docs

help:
	@echo "make run          start the service on 127.0.0.1:8080 (embedded Postgres unless DATABASE_URL)"
	@echo "make test         lint (ruff, ruff format --check, mypy) and run the test suite"
	@echo "make migrate      apply database migrations and exit"
	@echo "make bench        run the benchmark suite (~8 minutes) and draw its figures"
	@echo "make format       apply ruff's fixes and formatting"
	@echo "make config-docs  rewrite docs/configuration.md from the Settings class"
	@echo "make lock         re-pin requirements.lock from a fresh resolution of pyproject.toml"
	@echo "make clean        remove .venv and .data"

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "agent-notify needs Python 3.11 or newer (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)

$(RUNTIME): pyproject.toml requirements.lock | $(BIN)/python
	$(PIP) -e .
	@touch $@

# The dev extras include the runtime dependencies: the runtime stamp is then current too.
$(DEV): pyproject.toml requirements.lock | $(BIN)/python
	$(PIP) -e '.[dev]'
	@touch $(RUNTIME) $@

run: $(RUNTIME)
	$(BIN)/agent-notify serve

migrate: $(RUNTIME)
	$(BIN)/agent-notify migrate

test: lint pytest

lint: $(DEV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# On every core (pytest-xdist): each worker has its own database (and its own embedded
# Postgres when TEST_DATABASE_URL is unset). PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= auto
pytest: $(DEV)
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist worksteal

# Postgres is DATABASE_URL's server when set (a fresh database is made on it), else embedded.
# litellm_cost: the four configurations that matter (all eight: another two minutes).
bench: $(DEV)
	$(PIP) -e '.[dev,bench]'
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.floor
	$(BIN)/python -m bench.litellm_cost default lean service aiohttp_openai
	$(BIN)/python -m bench.plot

format: $(DEV)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --disable-pip-version-check '.[dev]'
	( echo "# Exact versions of every dependency, used as pip constraints by the Makefile."; \
	  echo "# Regenerate with \`make lock\` after changing pyproject.toml."; \
	  .lock-venv/bin/python -m pip freeze --disable-pip-version-check | grep -iv '^agent-notify' ) > requirements.lock
	rm -rf .lock-venv

config-docs: $(RUNTIME)
	$(BIN)/python -m scripts.config_docs

clean:
	rm -rf $(VENV) .data
