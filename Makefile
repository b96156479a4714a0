# Two commands matter: `make demo` (stock pool vs this engine, side by side)
# and `make test` (lint, types, the whole suite). Both set up what they need.

PYTHON ?= python3
VENV ?= .venv
# Django 6.x needs Python >= 3.12: a second environment runs the core suite on it.
PYTHON_DJ6 ?= $(firstword $(shell command -v python3.13 python3.12 2>/dev/null | xargs -r -n1 sh -c '"$$0" -c "import sys" 2>/dev/null && echo "$$0"') $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12 $(HOME)/.pyenv/versions/3.13*/bin/python3.13))
VENV_DJ6 ?= .venv-dj6
PIP_FLAGS ?= --disable-pip-version-check --quiet
PYTEST_FLAGS ?=

BIN := $(VENV)/bin
BIN_DJ6 := $(VENV_DJ6)/bin

.PHONY: help demo test lint types pytest pytest-dj6 django-suite-subset django-suite-gis-subset bench format clean postgis-deps

help:
	@echo "make demo   - stock native pool vs django_pg_real_pool under gunicorn, side by side"
	@echo "make test   - ruff, mypy (strict) and the whole test suite (Django 5.2 and 6.x)"
	@echo "make bench  - the benchmarks (micro, webload, paired, workers, tenants)"

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install $(PIP_FLAGS) --upgrade pip
	$(BIN)/python -m pip install $(PIP_FLAGS) -e '.[dev,tenants,django-prometheus]' 'Django>=5.2,<5.3'
	touch $@

$(BIN_DJ6)/.installed: pyproject.toml
	@test -n "$(PYTHON_DJ6)" || { echo "Django 6.x needs Python >= 3.12 and none was found; set PYTHON_DJ6=/path/to/python3.12"; exit 1; }
	$(PYTHON_DJ6) -m venv $(VENV_DJ6)
	$(BIN_DJ6)/python -m pip install $(PIP_FLAGS) --upgrade pip
	$(BIN_DJ6)/python -m pip install $(PIP_FLAGS) -e '.[dev]' 'Django>=6.0,<6.2'
	touch $@

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(BIN)/.installed
	$(BIN)/mypy

# Debian's PostGIS and GDAL/GEOS for the composed-engine tests (as root, as in
# CI); says what is missing otherwise, and those tests skip themselves.
postgis-deps:
	sh scripts/install_postgis.sh

pytest: $(BIN)/.installed postgis-deps
	$(BIN)/python -m pytest $(PYTEST_FLAGS)

# The core suite on Django 6.x (the e2e worker suites run once, above).
pytest-dj6: $(BIN_DJ6)/.installed
	$(BIN_DJ6)/python -m pytest tests $(PYTEST_FLAGS)

# Django's own test suite, bounded subset, on both engines and the stock pool,
# compared test by test (the whole suite: python scripts/django_suite.py).
django-suite-subset: $(BIN)/.installed
	$(BIN)/python scripts/django_suite.py --subset

# gis_tests' subset on the PostGIS engines vs stock PostGIS (skipped, saying
# why, where PostGIS cannot be installed).
django-suite-gis-subset: $(BIN)/.installed postgis-deps
	$(BIN)/python scripts/django_suite.py --gis --subset --skip-without-postgis

test: lint types pytest pytest-dj6 django-suite-subset django-suite-gis-subset

format: $(BIN)/.installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(BIN)/.installed
	$(BIN)/python -m benchmarks.micro
	$(BIN)/python -m benchmarks.webload
	$(BIN)/python -m benchmarks.paired
	$(BIN)/python -m benchmarks.workers
	$(BIN)/python -m benchmarks.tenants

demo: $(BIN)/.installed
	$(BIN)/python -m examples.demo.run

clean:
	rm -rf $(VENV) $(VENV_DJ6) build dist *.egg-info
