# Developer entry points. `make test` is what CI runs (.ci/run).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install dev test test-unit lint typecheck pytest format clean bench bench-quick chaos chaos-short

install: $(STAMP)

# Reinstall only when the project's dependencies change; otherwise this is a no-op.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The embedded stack with demo data: Temporal dev server + Web UI (http://localhost:8233), SQLite, a worker.
# DEV_ARGS passes more options, e.g. `make dev DEV_ARGS="--ui-port 9000"`.
DEV_ARGS ?=
dev: install
	$(BIN)/enrollments dev --demo $(DEV_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy .

pytest: install
	$(BIN)/pytest -q

test: lint typecheck pytest

# The pure tests only (tests/unit): no server, no database; seconds.
test-unit: install
	$(BIN)/pytest -q tests/unit

# Benchmarks (docs/BENCHMARKS.md): results in bench/results/<mode>.json, the headline figures as the last line.
bench: install
	$(BIN)/python -m bench --mode full

bench-quick: install
	$(BIN)/python -m bench --mode quick

# Fault suite (tests/chaos/): 200 + 20 metered enrollments, two workers killed with kill -9, PostgreSQL outage,
# Temporal restart, crashes after commit, a command driver throughout; ends with one JSON line {"enrollments",
# "periods", "orders", "lost", "duplicated", "events", …, "commands", "disagreements", "wedged"}. 8-12 minutes.
# CHAOS_ARGS passes options, e.g. `make chaos CHAOS_ARGS="--keep --enrollments 300"`.
CHAOS_ARGS ?=
chaos: install
	$(BIN)/python -m tests.chaos.run $(CHAOS_ARGS)

# Its short form (also part of `make pytest`).
chaos-short: install
	$(BIN)/pytest -q tests/chaos

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
