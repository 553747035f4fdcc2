# Two commands do everything on a fresh machine:
#   make demo   set up, prepare model + data, run the rollout benchmark (Seer vs stock verl) on the default workload
#   make test   set up, run the test suite
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test test-fast

setup:
	bash scripts/setup.sh

demo: setup
	$(VENV)/bin/seer-verl prepare
	$(VENV)/bin/seer-verl bench $(ARGS)

test: setup
	$(PY) -m pytest -q -rs --durations=15 $(ARGS)

test-fast: setup
	$(PY) -m pytest -q -m "not engines and not trainer" $(ARGS)
