// Register-blocked reductions over pairs of rows, the CPU's inner loop for every metric.
#ifndef FASTPRUNE_CPU_PAIR_KERNELS_H
#define FASTPRUNE_CPU_PAIR_KERNELS_H

#include <stdint.h>

#include "cpu/kernels/capability.h"

namespace fp {
namespace cpu {
inline namespace FP_CAP {

enum class PairOp {
  kDot,                // sum_k a_k b_k            (Gram form of l2 / sqeuclidean / cosine)
  kAbsDifference,      // sum_k |a_k - b_k|        (l1)
  kSquaredDifference,  // sum_k (a_k - b_k)^2      (direct squared distance)
};

// out (ni x nj, row-major) [i][j] = op over rows a_i (of a, ni x d) and b_j (of b, nj x d).
// symmetric (a == b, ni == nj): only entries with j >= i are guaranteed (others may be written too).
// Bitwise the same value for a pair wherever it lies in the tile (tiles of up to 64 columns: the value
// pair_reduce gives).
void pair_tile(PairOp op, const float* a, int64_t ni, const float* b, int64_t nj, int64_t d, bool symmetric,
               float* out);

// sum_k x_k^2 in double. NaN or Inf in x makes it NaN or Inf (float squares cannot overflow a
// double), so std::isfinite(result) is also the finiteness check of the row.
double row_sq_norm(const float* x, int64_t d);

// The same reduction for one pair (used where a handful of pairs need recomputing).
float pair_reduce(PairOp op, const float* a, const float* b, int64_t d);

}  // namespace FP_CAP
}  // namespace cpu
}  // namespace fp

#endif  // FASTPRUNE_CPU_PAIR_KERNELS_H
