# The usual targets. `make install` once, then `make check` before every commit.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install install-train test test-fast lint format typecheck check schema bench clean

install:  ## the daemon, the CLI and the dev tools
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'

install-train: install  ## plus the training pipeline (torch from local disk, trimesh, pyrender, ...) and the fine-tuned classifier
	$(BIN)/pip install -q -e '.[dev,train,classifier]'

test:  ## the whole suite, as CI runs it
	$(BIN)/python -m pytest -q

test-fast:  ## skip the slow process-level tests
	$(BIN)/python -m pytest -q -m "not slow and not training"

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check daemon agents schemas

format:
	$(BIN)/ruff format daemon agents schemas
	$(BIN)/ruff check --fix .

typecheck:
	$(BIN)/mypy daemon agents schemas training

check: lint typecheck test

schema:  ## regenerate the checked-in JSON Schemas
	$(BIN)/aced schema export --out schemas/json

bench:
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/tagging_speed.py
	$(BIN)/python bench/tagging_eval.py

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info
