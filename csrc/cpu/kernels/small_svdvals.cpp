// small_svdvals on the CPU: one-sided Jacobi from detail/small_matrix.h, one matrix per iteration.
#include "cpu/kernels/batched.h"
#include "cpu/kernels/capability.h"
#include "cpu/kernels/cpu_ops.h"
#include "fastprune/detail/small_matrix.h"

namespace fp {
namespace cpu {
inline namespace FP_CAP {

void small_svdvals(const float* matrices, int64_t count, int n, float* out) {
  for_each_item(count, [&](int64_t m) { detail::small_svdvals(matrices + m * n * n, n, out + m * n); });
}

}  // namespace FP_CAP
}  // namespace cpu
}  // namespace fp
