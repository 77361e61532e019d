# Skileez — the two set-up commands are `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 5000
FLASK  := SKILEEZ_ENV=$${SKILEEZ_ENV:-development} $(BIN)/flask --app wsgi

.PHONY: run test bench worker lint migrate clean

# Installs use uv (from PyPI, into the venv) when it can be had, and plain pip when
# not; both keep their caches inside .venv, so nothing is left outside the project.
UV_CACHE_DIR  := $(CURDIR)/$(VENV)/uv-cache
PIP_CACHE_DIR := $(CURDIR)/$(VENV)/pip-cache
export UV_CACHE_DIR PIP_CACHE_DIR
INSTALL = if [ -x $(BIN)/uv ] && $(BIN)/uv pip install --quiet --python $(BIN)/python $(1); \
	then :; else $(BIN)/python -m pip install --quiet $(1); fi

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Skileez needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet uv || echo "uv is not available; installing with pip"

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(call INSTALL,-e .)
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(call INSTALL,-e '.[test]')
	touch $(VENV)/.installed $@

## Serve the portal at http://127.0.0.1:5000 (PORT=… to change) with demo data and
## in-process jobs.
run: $(VENV)/.installed
	$(FLASK) db upgrade
	$(FLASK) skileez seed --refresh-demo
	$(FLASK) skileez serve --host 127.0.0.1 --port $(PORT)

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
