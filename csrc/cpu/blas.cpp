#include "cpu/blas.h"

#include <mutex>

#if FP_HAVE_BLAS
#include <cblas.h>
#define FP_PASTE_(a, b) a##b
#define FP_PASTE(a, b) FP_PASTE_(a, b)
#define FP_BLAS(name) FP_PASTE(FP_BLAS_PREFIX, name)
#endif

namespace fp {
namespace cpu {

#if FP_HAVE_BLAS
void gram_tile(const float* a, int64_t ni, const float* b, int64_t nj, int64_t d, bool symmetric, float* out) {
  // Parallelism belongs to the caller (one tile per OpenMP thread); a BLAS thread pool on top would
  // oversubscribe the cores and make the summation order depend on the thread count.
  static std::once_flag single_threaded;
  std::call_once(single_threaded, [] { FP_BLAS(openblas_set_num_threads)(1); });
  if (symmetric) {
    FP_BLAS(cblas_ssyrk)(CblasRowMajor, CblasUpper, CblasNoTrans, (int)ni, (int)d, 1.0f, a, (int)d, 0.0f, out,
                         (int)nj);
  } else {
    FP_BLAS(cblas_sgemm)(CblasRowMajor, CblasNoTrans, CblasTrans, (int)ni, (int)nj, (int)d, 1.0f, a, (int)d, b,
                         (int)d, 0.0f, out, (int)nj);
  }
}
const char* blas_name() { return FP_BLAS_NAME; }
#else
void gram_tile(const float*, int64_t, const float*, int64_t, int64_t, bool, float*) {}
const char* blas_name() { return "none"; }
#endif

}  // namespace cpu
}  // namespace fp
