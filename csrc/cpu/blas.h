// The CPU Gram step: a BLAS found by CMake (OpenBLAS, e.g. the scipy-openblas32 wheel whose symbols
// carry a "scipy_" prefix) when FP_HAVE_BLAS is set; otherwise kernels fall back to direct differences.
#ifndef FASTPRUNE_CPU_BLAS_H
#define FASTPRUNE_CPU_BLAS_H

#include <stdint.h>

namespace fp {
namespace cpu {

#if FP_HAVE_BLAS
constexpr bool kHaveBlas = true;
#else
constexpr bool kHaveBlas = false;
#endif

// out (ni x nj, row-major) = A (ni x d) * B (nj x d)^T. When `symmetric` (A == B, ni == nj) only the
// upper triangle (j >= i) is written. Single-threaded: callers parallelise over tiles, which keeps
// results independent of the thread count. Requires kHaveBlas.
void gram_tile(const float* a, int64_t ni, const float* b, int64_t nj, int64_t d, bool symmetric, float* out);

const char* blas_name();

}  // namespace cpu
}  // namespace fp

#endif  // FASTPRUNE_CPU_BLAS_H
