#!/usr/bin/env bash
# Cross-compiles libfastprune and the C ABI example (examples/c_abi) for aarch64 with Debian's
# g++-aarch64-linux-gnu and runs the example under qemu-aarch64 (qemu-user); `make aarch64-check` runs this.
# Installs the Debian packages it needs when they are missing. No Python environment is used.
#   AARCH64_BUILD  build folder (default build/aarch64); the library is installed in $AARCH64_BUILD/install
#   JOBS           parallel build jobs (default 2)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD=${AARCH64_BUILD:-build/aarch64}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
PREFIX=$BUILD/install
JOBS=${JOBS:-2}
TRIPLE=aarch64-linux-gnu
SYSROOT=/usr/$TRIPLE
TOOLCHAIN=$ROOT/cmake/$TRIPLE.cmake

step() { printf '\n== [%3ds] %s\n' "$SECONDS" "$*"; }
fail() {
  printf 'aarch64-check: FAILED: %s\n' "$*" >&2
  exit 1
}

# --- packages ----------------------------------------------------------------------------------------
missing=()
command -v $TRIPLE-gcc >/dev/null || missing+=(gcc-$TRIPLE)
command -v $TRIPLE-g++ >/dev/null || missing+=(g++-$TRIPLE)
dpkg -s libgomp1-arm64-cross >/dev/null 2>&1 || missing+=(libgomp1-arm64-cross)
command -v qemu-aarch64 >/dev/null || missing+=(qemu-user)
command -v cmake >/dev/null || missing+=(cmake)
command -v make >/dev/null || missing+=(make)
command -v file >/dev/null || missing+=(file)
if ((${#missing[@]})); then
  step "installing ${missing[*]}"
  SUDO=
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || fail "not root and no sudo: install ${missing[*]} by hand"
    SUDO=sudo
  fi
  $SUDO apt-get update
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi
step "toolchain"
$TRIPLE-g++ --version | head -n 1
qemu-aarch64 --version | head -n 1
cmake --version | head -n 1

# --- libfastprune ------------------------------------------------------------------------------------
# env -u: the environment variables FASTPRUNE_CUDA(_ARCHS) would override -DFASTPRUNE_CUDA=OFF.
step "configuring $BUILD"
env -u FASTPRUNE_CUDA -u FASTPRUNE_CUDA_ARCHS cmake -S "$ROOT" -B "$BUILD" \
  -DCMAKE_TOOLCHAIN_FILE="$TOOLCHAIN" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$PREFIX" \
  -DFASTPRUNE_CUDA=OFF -DFASTPRUNE_PYTHON=OFF -DFASTPRUNE_NATIVE=OFF
step "building libfastprune (-j$JOBS)"
cmake --build "$BUILD" --target fastprune -j "$JOBS"
step "installing into $PREFIX"
cmake --install "$BUILD"
LIBDIR=$(dirname "$(find "$PREFIX" -name libfastprune.so -print -quit)")
[ -f "$LIBDIR/libfastprune.so" ] || fail "no libfastprune.so under $PREFIX"

# --- the C ABI example, found through the installed CMake package (as tests/test_c_abi.py does) -----------
# The install prefix is added to the find roots: the toolchain file confines find_package to them.
cross_build() { # source folder, build folder
  cmake -S "$1" -B "$2" -DCMAKE_TOOLCHAIN_FILE="$TOOLCHAIN" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_FIND_ROOT_PATH="$PREFIX" -DCMAKE_PREFIX_PATH="$PREFIX"
  cmake --build "$2" -j "$JOBS"
}
step "building examples/c_abi against $PREFIX"
cross_build "$ROOT/examples/c_abi" "$BUILD/c_abi"

# --- architecture -------------------------------------------------------------------------------------
step "file"
EXAMPLE=$BUILD/c_abi/fastprune_c_abi_example
for binary in "$LIBDIR/libfastprune.so" "$EXAMPLE"; do
  description=$(file -L "$binary")
  echo "$description"
  case $description in *"ARM aarch64"*) ;; *) fail "$binary is not an ARM aarch64 binary" ;; esac
done

# --- run under qemu-user ------------------------------------------------------------------------------
# -E sets LD_LIBRARY_PATH for the emulated program only (qemu-aarch64 itself is an x86-64 program).
run_aarch64() {
  qemu-aarch64 -L "$SYSROOT" -E LD_LIBRARY_PATH="$LIBDIR" "$@"
}
step "qemu-aarch64 $(basename "$EXAMPLE")"
status=0
output=$(run_aarch64 "$EXAMPLE" 2>&1) || status=$?
printf '%s\n' "$output"
[ "$status" = 0 ] || fail "the C ABI example exited with status $status"
# The lines tests/test_c_abi.py checks natively.
for expected in \
  "all checks passed" \
  "CPU kernels default (built: default): aarch64: NEON kernels" \
  "null batch -> FP_ERR_INVALID_ARGUMENT: filters: expected a fp_ragged_batch pointer" \
  "negative rows -> FP_ERR_INVALID_ARGUMENT: filters->num_rows[1]: expected 1 <=" \
  "NaN weight -> FP_ERR_NONFINITE: filters: layer 0, filter 1 contains NaN or Inf" \
  "n = 8 -> FP_ERR_INVALID_ARGUMENT: n: expected 1 <= n <= 7, got 8" \
  "kernel of 5 weights -> FP_ERR_INVALID_ARGUMENT: kernels->row_dims[0]: expected k * k"; do
  grep -qF -- "$expected" <<<"$output" || fail "the C ABI example's output lacks: $expected"
done
step "aarch64-check passed: libfastprune and the C ABI example cross-compiled for aarch64, example passes under qemu-aarch64"
