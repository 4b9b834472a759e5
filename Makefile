# Two commands do all set-up on a fresh machine:
#   make demo   -> creates .venv, installs the pinned dependencies, runs a short real evaluation
#   make test   -> same set-up, then the test suite
# TORCH_INDEX=URL installs requirements.txt's torch from that index first, e.g. the CPU-only build:
#   make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu
PYTHON ?= python3
VENV ?= .venv
TORCH_INDEX ?=
PY := $(VENV)/bin/python
STAMP := $(VENV)/.anyshot-installed

.PHONY: demo test lint install clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(if $(TORCH_INDEX),$(PY) -m pip install --quiet --index-url $(TORCH_INDEX) "$$(grep '^torch==' requirements.txt)")
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/anyshot demo

# One torch thread per process: the suite is many small ops (and a 2-process DDP test), where
# thread hand-offs cost more than they give.
test: export OMP_NUM_THREADS = 1
test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
