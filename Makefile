# Jiceng Lakehouse — the commands a newcomer needs (see README.md).
SHELL := bash
RESIDENTS ?= 20000
PYTEST_ARGS ?=
# two pytest-xdist workers, each with its own local Spark session (tests/conftest.py groups the tests)
PYTEST_WORKERS ?= 2

.PHONY: help setup demo test test-unit up down bench clean

help:
	@echo "make demo   set up everything and run the platform on a simulated city of $(RESIDENTS) residents"
	@echo "make test   the test suite (what CI runs)"
	@echo "make up     start Airflow (:8080) and Superset (:8088) on the demo's data; make down stops them"
	@echo "make bench  benchmarks"

setup:
	@bash infra/setup.sh

demo: setup
	.venv/bin/lakehouse demo --residents $(RESIDENTS)

test: setup
	.venv/bin/pytest -n $(PYTEST_WORKERS) --no-loadscope-reorder $(PYTEST_ARGS)

test-unit: setup
	.venv/bin/pytest tests/unit $(PYTEST_ARGS)

up: setup
	@bash infra/up.sh

down:
	@bash infra/down.sh

bench: setup
	@for b in benchmarks/bench_*.py; do echo "== $$b"; .venv/bin/python "$$b" || exit 1; done

clean:
	rm -rf var
