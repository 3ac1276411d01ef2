# Two commands for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed
# torch is pinned on the same command line so pip never pulls a CUDA build.
TORCH  := torch==2.13.0

.PHONY: demo test bench install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet $(TORCH) -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/caloreco demo --out runs/demo

test: $(STAMP)
	$(PY) -m pytest -n 2 -q tests

bench: $(STAMP)
	$(PY) benchmarks/bench_simulation.py
	$(PY) benchmarks/bench_geometry.py
	OMP_NUM_THREADS=1 $(PY) benchmarks/bench_spvcnn.py
	OMP_NUM_THREADS=1 $(PY) benchmarks/bench_clue.py

clean:
	rm -rf $(VENV) runs .pytest_cache
