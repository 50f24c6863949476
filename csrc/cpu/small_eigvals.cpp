// small_eigvals on the CPU: closed forms / in-register QR from detail/small_matrix.h, one matrix per
// iteration, complex results written as (re, im) pairs.
#include "cpu/batched.h"
#include "cpu/cpu_ops.h"
#include "fastprune/detail/small_matrix.h"

namespace fp {
namespace cpu {

void small_eigvals(const float* matrices, int64_t count, int n, float* out) {
  for_each_item(count, [&](int64_t m) {
    float re[detail::kSmallMaxN], im[detail::kSmallMaxN];
    detail::small_eigvals(matrices + m * n * n, n, re, im);
    for (int e = 0; e < n; ++e) {
      out[(m * n + e) * 2] = re[e];
      out[(m * n + e) * 2 + 1] = im[e];
    }
  });
}

}  // namespace cpu
}  // namespace fp
