# Two commands do all set-up on a fresh machine:
#   make demo   -> creates .venv, installs the pinned dependencies, runs a short real evaluation
#   make test   -> same set-up, then the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.anyshot-installed

.PHONY: demo test lint install clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/anyshot demo

# One torch thread per process: the suite is many small ops (and a 2-process DDP test), where
# thread hand-offs cost more than they give; measured 35 s for the whole suite on 2 cores.
test: export OMP_NUM_THREADS = 1
test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
