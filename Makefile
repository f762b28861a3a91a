# Usual targets. `make install` makes .venv; every other target uses it.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install test lint format demo bench docker docker-build docker-demo clean

install:
	$(PY) -m venv $(VENV) && $(BIN)/pip install -q -e '.[test]'

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check
	$(BIN)/ruff format --check
	$(BIN)/mypy
	$(BIN)/mcp-defense policy lint policies

format: install
	$(BIN)/ruff format
	$(BIN)/ruff check --fix

demo: install
	$(BIN)/mcp-defense demo

bench: install
	$(BIN)/python benchmarks/run_all.py

IMAGE ?= mcp-defense

docker: docker-build

docker-build:
	docker build -t $(IMAGE) .

docker-demo: docker-build
	docker run --rm $(IMAGE) demo

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache .hypothesis
