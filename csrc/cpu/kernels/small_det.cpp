// small_det on the CPU: closed form (n <= 3) or pivoted elimination in double, one matrix per iteration.
#include "cpu/kernels/batched.h"
#include "cpu/kernels/capability.h"
#include "cpu/kernels/cpu_ops.h"
#include "fastprune/detail/small_matrix.h"

namespace fp {
namespace cpu {
inline namespace FP_CAP {

void small_det(const float* matrices, int64_t count, int n, float* out) {
  for_each_item(count, [&](int64_t m) { out[m] = detail::small_det(matrices + m * n * n, n); });
}

}  // namespace FP_CAP
}  // namespace cpu
}  // namespace fp
