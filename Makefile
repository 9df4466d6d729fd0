# seatcast: `make demo` runs the service with the 2024 night replaying; `make test` runs
# every test. Both set up .venv first (Python 3.11+ needed; nothing else).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
REDIS_URL_FOR_TESTS ?= redis://127.0.0.1:6379/0

.PHONY: setup demo test test-embedded test-redis lint bench clean

$(BIN)/seatcast: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

setup: $(BIN)/seatcast

demo: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start --port 8000

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The whole suite on the embedded redis-server (nothing installed); then its Redis-facing half
# again against a real Redis at REDIS_URL_FOR_TESTS (the core is pure, and the browser tests
# check the page, whichever Redis feeds it).
test: lint test-embedded test-redis

test-embedded: setup
	env -u REDIS_URL $(BIN)/pytest

test-redis: setup
	REDIS_URL=$(REDIS_URL_FOR_TESTS) $(BIN)/pytest tests/service tests/clients

bench: setup
	$(BIN)/python -m clients.bench_core

clean:
	rm -rf $(VENV) .seatcast .pytest_cache .mypy_cache .ruff_cache
