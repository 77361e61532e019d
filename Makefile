# Skileez — the two set-up commands are `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
FLASK  := SKILEEZ_ENV=$${SKILEEZ_ENV:-development} $(BIN)/flask --app wsgi

.PHONY: run test bench worker lint migrate clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Skileez needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(VENV)/.installed $@

## Serve the portal at http://127.0.0.1:5000 with demo data and in-process jobs.
run: $(VENV)/.installed
	$(FLASK) db upgrade
	$(FLASK) skileez seed --refresh-demo
	$(FLASK) skileez serve --host 127.0.0.1 --port 5000

## The whole suite (SQLite, or PostgreSQL with TEST_DATABASE_URL), ruff, and the import
## contracts (the package layers, in pyproject.toml).
test: $(VENV)/.installed-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

## Print benchmark figures (scripts in bench/).
bench: $(VENV)/.installed-test
	$(BIN)/python -m bench

## An RQ worker with scheduling and the periodic sweep (needs REDIS_URL).
worker: $(VENV)/.installed
	$(FLASK) skileez worker

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/lint-imports

## Write a new migration after changing models: make migrate m="what changed"
migrate: $(VENV)/.installed
	$(FLASK) db migrate -m "$(m)"

clean:
	rm -rf $(VENV) instance/*.sqlite3* build *.egg-info
