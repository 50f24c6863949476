// small_svdvals on the CPU: one-sided Jacobi from detail/small_matrix.h, one matrix per iteration.
#include "cpu/batched.h"
#include "cpu/cpu_ops.h"
#include "fastprune/detail/small_matrix.h"

namespace fp {
namespace cpu {

void small_svdvals(const float* matrices, int64_t count, int n, float* out) {
  for_each_item(count, [&](int64_t m) { detail::small_svdvals(matrices + m * n * n, n, out + m * n); });
}

}  // namespace cpu
}  // namespace fp
