# Two commands for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed
# torch is pinned on the same command line so pip never pulls a CUDA build.
TORCH  := torch==2.13.0

.PHONY: demo test bench bench-gpu install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet $(TORCH) -e '.[test]'
	# a real Triton Inference Server (2.51, Python backend) for tests/serving/test_real_triton.py:
	# the tritonserver binary bundled in nvidia-pytriton; --no-deps: only the binary is used
	$(PIP) install --quiet --no-deps nvidia-pytriton==0.7.0
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/caloreco demo --out runs/demo

test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadgroup -q tests

bench: $(STAMP)
	$(PY) benchmarks/bench_simulation.py
	$(PY) benchmarks/bench_geometry.py
	OMP_NUM_THREADS=1 $(PY) benchmarks/bench_spvcnn.py
	OMP_NUM_THREADS=1 $(PY) benchmarks/bench_clue.py

# On a CUDA machine whose python has torch (CUDA build) and caloreco's dependencies, e.g.
# `make bench-gpu PY=python3` with PYTHONPATH=src: the CUDA tests, then SPVCNN throughput
# and the per-stage profile of the shipped model (docs/benchmarks.md, the H100 section).
bench-gpu:
	$(PY) -m pytest -m gpu -q tests
	$(PY) benchmarks/bench_spvcnn.py --device cuda --model src/caloreco/pretrained/spvcnn_dtau.pt \
		--sizes 20000 --batch-sizes 64,256 --amp --train-sizes 20000
	$(PY) benchmarks/profile_spvcnn.py --device cuda --model src/caloreco/pretrained/spvcnn_dtau.pt \
		--batch 256 --amp

clean:
	rm -rf $(VENV) runs .pytest_cache
