# make demo  - set up .venv, build, train + soft-FPGM-prune a ResNet-20 on the embedded digits; report in runs/demo
# make test  - set up .venv, build, run the test suite (C ABI example included), then `make sanitize`
# Set-up is idempotent: a venv, torch (CPU build when absent; an existing torch is never replaced),
# the dev requirements, and an editable build of fastprune.
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch on this project's machines; override to pick another.
TORCH_SPEC ?= torch==2.13.0
DEPS_STAMP := $(VENV)/.deps-stamp
BUILD_STAMP := $(VENV)/.build-stamp
NATIVE_SOURCES := $(shell find csrc cmake -type f) CMakeLists.txt setup.py pyproject.toml

.PHONY: demo test build lint format bench bench-pytest info clean aarch64-check gpu-check sanitize fuzz

demo: $(BUILD_STAMP)
	$(PY) -m fastprune demo --out runs/demo

test: $(BUILD_STAMP)
	$(PY) -m pytest -q tests
	$(MAKE) --no-print-directory sanitize

bench: $(BUILD_STAMP)
	$(PY) -m fastprune bench scoring --out bench/results
	$(PY) -m fastprune bench spectral --out bench/results

bench-pytest: $(BUILD_STAMP)
	$(PY) -m pytest bench -o python_files='bench_*.py' --benchmark-only --benchmark-columns=min,median,max

info: $(BUILD_STAMP)
	$(PY) -m fastprune info

build: $(BUILD_STAMP)

$(PY):
	python3 -m venv $(VENV)

$(DEPS_STAMP): $(PY) requirements-dev.txt
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

$(BUILD_STAMP): $(DEPS_STAMP) $(NATIVE_SOURCES)
	$(PY) -m pip install -q --no-build-isolation --no-deps -e .
	touch $@

lint: $(DEPS_STAMP)
	$(PY) -m ruff check fastprune triton_kernels tests bench examples setup.py
	$(PY) -m ruff format --check fastprune triton_kernels tests bench examples setup.py

format: $(DEPS_STAMP)
	$(PY) -m ruff format fastprune triton_kernels tests bench examples setup.py
	$(VENV)/bin/clang-format -i $$(find csrc examples -name '*.cpp' -o -name '*.cu' -o -name '*.cuh' -o -name '*.h' -o -name '*.c')

clean:
	rm -rf build fastprune/lib fastprune/include fastprune/_C*.so $(BUILD_STAMP)

# make aarch64-check - cross-compile libfastprune and the C ABI example for aarch64 (Debian's
# g++-aarch64-linux-gnu, cmake/aarch64-linux-gnu.cmake) and run the example under qemu-aarch64 (qemu-user);
# installs those Debian packages when missing. No venv. Build folder: AARCH64_BUILD (default build/aarch64).
AARCH64_BUILD ?= build/aarch64
aarch64-check:
	AARCH64_BUILD='$(AARCH64_BUILD)' JOBS=2 bash tools/aarch64_check.sh

# Every GPU check in one call, on a machine with an NVIDIA GPU and torch/triton/nvcc installed (no venv set-up:
# device time is short): build, CUDA and Triton tests, compute-sanitizer, GPU benchmarks; one folder of logs
# and CSVs. DRY_RUN=1 prints the plan and runs CPU stand-ins. GPU_PYTHON picks the interpreter.
BUDGET ?= 420
GPU_PYTHON ?= python3
gpu-check:
	bash tools/gpu_check.sh --budget $(BUDGET) --python $(GPU_PYTHON) $(if $(DRY_RUN),--dry-run,) $(if $(OUT),--out $(OUT),)

# make sanitize - libfastprune and fastprune._C built with ASan + UBSan (build/sanitize), then the C ABI example,
# the C test of every fp_* entry point, the C ABI fuzz harness and the native CPU op tests (Python, ASan runtime
# preloaded) under them; any report fails. Part of `make test` (the instrumented build adds ~4 min to a clean
# clone, seconds when incremental). SANITIZE_ARGS=--quick: a shorter Python subset.
SANITIZE_ARGS ?=
sanitize: $(DEPS_STAMP)
	PYTHON=$(abspath $(PY)) bash tools/sanitize.sh $(SANITIZE_ARGS)

# make fuzz - the property-based op tests with many more examples, and a long C ABI fuzz run under the sanitizers
# (both also run briefly, with fixed seeds, in `make test`). FUZZ_EXAMPLES / FUZZ_ITERATIONS / FUZZ_SEED to change.
FUZZ_EXAMPLES ?= 2000
FUZZ_ITERATIONS ?= 200000
FUZZ_SEED ?= $(shell date +%s)
fuzz: $(BUILD_STAMP)
	FASTPRUNE_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -q tests/test_fuzz_ops.py
	PYTHON=$(abspath $(PY)) bash tools/sanitize.sh --c-only --fuzz-iterations $(FUZZ_ITERATIONS) --fuzz-seed $(FUZZ_SEED)
