# Cross-compiling for 64-bit ARM Linux (NVIDIA Grace, AWS Graviton, ...) with Debian's cross toolchain:
#   apt-get install g++-aarch64-linux-gnu      (gcc, libc6-dev-arm64-cross, libgomp1-arm64-cross, ...)
#   cmake -S . -B build/aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake -DFASTPRUNE_CUDA=OFF
# Libraries, headers and CMake packages are looked up under /usr/aarch64-linux-gnu only (never the host's
# x86-64 ones); programs (the build tools) on the host only. To find a package installed elsewhere (a
# cross-built fastprune, say) add its prefix to the roots: -DCMAKE_FIND_ROOT_PATH=<prefix>
# -DCMAKE_PREFIX_PATH=<prefix>. `make aarch64-check` (tools/aarch64_check.sh) builds with this file and
# runs the C ABI example under qemu-aarch64.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(FP_CROSS_TRIPLE aarch64-linux-gnu)
set(CMAKE_C_COMPILER ${FP_CROSS_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${FP_CROSS_TRIPLE}-g++)

# Appended, not set: roots given on the command line (-DCMAKE_FIND_ROOT_PATH=...) are kept.
list(APPEND CMAKE_FIND_ROOT_PATH /usr/${FP_CROSS_TRIPLE})
list(REMOVE_DUPLICATES CMAKE_FIND_ROOT_PATH)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# Test programs CMake itself might run go through qemu-user when it is installed.
find_program(FP_QEMU_AARCH64 qemu-aarch64)
if(FP_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${FP_QEMU_AARCH64} -L /usr/${FP_CROSS_TRIPLE})
endif()
