// small_det on the CPU: closed form (n <= 3) or pivoted elimination in double, one matrix per iteration.
#include "cpu/batched.h"
#include "cpu/cpu_ops.h"
#include "fastprune/detail/small_matrix.h"

namespace fp {
namespace cpu {

void small_det(const float* matrices, int64_t count, int n, float* out) {
  for_each_item(count, [&](int64_t m) { out[m] = detail::small_det(matrices + m * n * n, n); });
}

}  // namespace cpu
}  // namespace fp
