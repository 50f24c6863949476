// small_eigvals on the CPU. n = 3 (every 3x3 conv kernel: the case that matters) runs the branch-free
// closed form of detail/small_closed_forms.h on blocks of matrices, one per SIMD lane
// (cpu/small_blocks.h); other n run detail::small_eigvals one matrix per iteration. Complex results are
// written as (re, im) pairs.
// No trapping math: lets GCC if-convert the selects of the branch-free closed forms (computing both
// sides), which vectorises them; it changes no result, only which FP exception flags may be raised.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif
#include "cpu/kernels/batched.h"
#include "cpu/kernels/capability.h"
#include "cpu/kernels/cpu_ops.h"
#include "cpu/kernels/small_blocks.h"
#include "fastprune/detail/small_matrix.h"

namespace fp {
namespace cpu {
inline namespace FP_CAP {

void small_eigvals(const float* matrices, int64_t count, int n, float* out) {
  if (n == 3) {
#pragma omp parallel
    for_blocks3_nowait<6>(matrices, count, out, [](const float* k, float* r) FP_LANE_LAMBDA {
      float re[3], im[3];
      detail::sm3_eig_unordered(k, re, im);
      detail::sm3_eig_order(re, im);
      for (int e = 0; e < 3; ++e) r[2 * e] = re[e], r[2 * e + 1] = im[e];
    });
    return;
  }
  for_each_item(count, [&](int64_t m) {
    float re[detail::kSmallMaxN], im[detail::kSmallMaxN];
    detail::small_eigvals(matrices + m * n * n, n, re, im);
    for (int e = 0; e < n; ++e) {
      out[(m * n + e) * 2] = re[e];
      out[(m * n + e) * 2 + 1] = im[e];
    }
  });
}

}  // namespace FP_CAP
}  // namespace cpu
}  // namespace fp
