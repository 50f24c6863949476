#!/usr/bin/env bash
# make sanitize: libfastprune and fastprune._C built with AddressSanitizer + UndefinedBehaviorSanitizer
# (-fno-sanitize-recover: the first report aborts), then under them:
#   1. the C ABI example (examples/c_abi),
#   2. the C test of every fp_* entry point and the C ABI fuzz harness (tests/c),
#   3. the native CPU op tests in Python, with the ASan runtime preloaded and fastprune imported from a
#      staging copy of the package that holds the sanitized _C and libfastprune.
# Any sanitizer report fails the run. Logs: $OUT/*.log. Usage:
#   tools/sanitize.sh [--python PY] [--out DIR] [--fuzz-iterations N] [--fuzz-seed S] [--quick | --c-only]
# --quick runs the C programs and a short subset of the Python tests (what `make test` runs); --c-only
# skips the Python tests (`make fuzz`: a long fuzz run).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
OUT=$ROOT/build/sanitize
FUZZ_ITERATIONS=20000
FUZZ_SEED=1
QUICK=0
C_ONLY=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --python) PY=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --fuzz-iterations) FUZZ_ITERATIONS=$2; shift 2 ;;
    --fuzz-seed) FUZZ_SEED=$2; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --c-only) C_ONLY=1; shift ;;
    *) echo "sanitize.sh: unknown argument $1 (expected --python, --out, --fuzz-iterations, --fuzz-seed," \
         "--quick or --c-only)" >&2; exit 2 ;;
  esac
done
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
JOBS=${JOBS:-$(nproc)}
FLAGS="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g"
# Leaks are not checked: CPython and PyTorch keep allocations alive until exit by design.
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
CC=${CC:-gcc}
CXX=${CXX:-g++}

step() { printf '\n== %s\n' "$*"; }

# --- 1. the sanitized library and Python module, installed into a staging copy of the package ---------
PKG=$OUT/pkg/fastprune
step "build (ASan + UBSan) into $OUT/cmake, staging package $PKG"
mkdir -p "$PKG"
for entry in "$ROOT"/fastprune/*; do  # the Python sources, linked; the native parts come from this build
  name=$(basename "$entry")
  case $name in _C*.so | lib | include | __pycache__) continue ;; esac
  ln -sfn "$entry" "$PKG/$name"
done
ln -sfn "$ROOT/triton_kernels" "$PKG/triton_kernels"  # setup.py ships it as fastprune.triton_kernels
PYBIND11_DIR=$("$PY" -c "import pybind11; print(pybind11.get_cmake_dir())")
cmake -S "$ROOT" -B "$OUT/cmake" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFASTPRUNE_CUDA=OFF -DFASTPRUNE_PYTHON=ON \
  -DCMAKE_C_COMPILER="$CC" -DCMAKE_CXX_COMPILER="$CXX" \
  -DCMAKE_C_FLAGS="$FLAGS" -DCMAKE_CXX_FLAGS="$FLAGS" -DCMAKE_SHARED_LINKER_FLAGS="$FLAGS" \
  -DCMAKE_MODULE_LINKER_FLAGS="$FLAGS" -DCMAKE_EXE_LINKER_FLAGS="$FLAGS" \
  -DCMAKE_INSTALL_PREFIX="$PKG" -DCMAKE_INSTALL_LIBDIR=lib -DCMAKE_INSTALL_INCLUDEDIR=include \
  -DPython_EXECUTABLE="$PY" -Dpybind11_DIR="$PYBIND11_DIR" >"$OUT/configure.log"
cmake --build "$OUT/cmake" -j "$JOBS" >"$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
cmake --install "$OUT/cmake" >/dev/null
# grep reads all of nm's output (grep -q would stop early, and pipefail would see nm's SIGPIPE)
nm -D "$PKG/lib/libfastprune.so" | grep __asan_init >/dev/null || { echo "libfastprune.so is not instrumented" >&2; exit 1; }

# --- 2. C programs: the example, the entry-point check, the fuzz harness --------------------------------
for project in examples/c_abi tests/c; do
  step "C: $project"
  cmake -S "$ROOT/$project" -B "$OUT/$(basename "$project")" -DCMAKE_PREFIX_PATH="$PKG" \
    -DCMAKE_C_COMPILER="$CC" -DCMAKE_C_FLAGS="$FLAGS" -DCMAKE_EXE_LINKER_FLAGS="$FLAGS" >/dev/null
  cmake --build "$OUT/$(basename "$project")" -j "$JOBS" >/dev/null
done
"$OUT/c_abi/fastprune_c_abi_example" >"$OUT/c_abi_example.log" 2>&1 || { cat "$OUT/c_abi_example.log"; exit 1; }
tail -1 "$OUT/c_abi_example.log"
"$OUT/c/fastprune_capi_check" >"$OUT/capi_check.log" 2>&1 || { cat "$OUT/capi_check.log"; exit 1; }
tail -1 "$OUT/capi_check.log"
"$OUT/c/fastprune_capi_fuzz" "$FUZZ_ITERATIONS" "$FUZZ_SEED" >"$OUT/capi_fuzz.log" 2>&1 || { tail -30 "$OUT/capi_fuzz.log"; exit 1; }
tail -1 "$OUT/capi_fuzz.log"

# --- 3. the native CPU op tests in Python, ASan runtime preloaded ---------------------------------------
if [[ $C_ONLY == 1 ]]; then
  step "sanitize: no reports (C programs only; logs in $OUT)"
  exit 0
fi
step "Python: native CPU op tests under ASan + UBSan"
PRELOAD=$("$CXX" -print-file-name=libasan.so):$("$CXX" -print-file-name=libubsan.so)
# Run from $OUT with the staging package first on the path, so `import fastprune` cannot find the
# source tree's unsanitized build; checked before the tests run.
run_python() { (cd "$OUT" && env LD_PRELOAD="$PRELOAD" PYTHONPATH="$OUT/pkg" TRITON_INTERPRET=1 "$PY" "$@"); }
loaded=$(run_python -c "import fastprune._C as c, fastprune._native as n; print(c.__file__)")
[[ $loaded == "$PKG"/* ]] || { echo "imported $loaded, not the sanitized build" >&2; exit 1; }
echo "fastprune._C from $loaded"
TESTS=(test_pairwise_distances.py test_gm_scores.py test_small_matrix_ops.py test_kernel_scores.py
       test_conv2d.py test_masked_conv2d.py test_compact.py test_float64.py test_dtypes_autocast.py
       test_fuzz_ops.py)
SELECT="not triton and not cuda"
if [[ $QUICK == 1 ]]; then
  TESTS=(test_pairwise_distances.py test_gm_scores.py test_small_matrix_ops.py test_kernel_scores.py)
fi
paths=()
for t in "${TESTS[@]}"; do [[ -f $ROOT/tests/$t ]] && paths+=("$ROOT/tests/$t"); done
run_python -m pytest -q -p no:cacheprovider --rootdir "$ROOT" -k "$SELECT" "${paths[@]}" 2>&1 \
  | tee "$OUT/python.log" | tail -3
status=${PIPESTATUS[0]}
if grep -q "ERROR: AddressSanitizer\|runtime error:" "$OUT/python.log"; then
  echo "sanitizer reports in $OUT/python.log" >&2
  exit 1
fi
[[ $status == 0 ]] || exit "$status"
step "sanitize: no reports (logs in $OUT)"
