# Two commands: `make up` runs the whole system, `make test` runs lint, types and tests.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
PYTEST_ARGS ?= -n 4

.PHONY: install up test lint typecheck pytest bench clean browser

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

up: install
	$(BIN)/maintd up

lint: install
	$(BIN)/ruff check workers tasks tests bench beat_schedule.py
	$(BIN)/python -m tests.import_graph

typecheck: install
	$(BIN)/mypy

pytest: install
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck pytest

# The Flower browser test (tests/test_flower_verdict.py) drives the Debian Chromium through its
# chromedriver; without them it is skipped and says so. Nothing is downloaded by the test.
browser:
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		(apt-get update -qq && apt-get install -y -qq chromium chromium-driver)

bench: install
	$(BIN)/python bench/dispatch.py

clean:
	rm -rf $(VENV) .maintd .pytest_cache .mypy_cache .ruff_cache
