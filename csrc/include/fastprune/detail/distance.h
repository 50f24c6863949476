// Distance arithmetic shared by the CPU and CUDA kernels (and mirrored by the Triton kernels).
//
// All metrics reduce to one of two accumulations over the D weights of a pair of rows a, b:
//   kAbs:    sum |a_k - b_k|                       (l1)
//   kSquare: sum (a_k - b_k)^2                     (l2, sqeuclidean, and cosine on normalised rows)
// followed by finish_distance(), which maps the accumulated value to the metric.
//
// Cancellation. The CPU backend may obtain the squared distance from a Gram product,
//   d^2 = |a|^2 + |b|^2 - 2 a.b,
// whose float32 rounding error scales with |a|^2 + |b|^2, not with d^2. When d^2 is small against
// |a|^2 + |b|^2 (near-duplicate filters, exactly the ones FPGM must rank) gram_needs_direct() says so
// and the pair is recomputed from the differences a_k - b_k in double precision, which has no
// cancellation. Direct kernels (CUDA, Triton) always use differences.
#ifndef FASTPRUNE_DETAIL_DISTANCE_H
#define FASTPRUNE_DETAIL_DISTANCE_H

#include <math.h>
#include <stdint.h>

#include "fastprune/detail/host_device.h"

FP_DETAIL_BEGIN

enum class Accumulation { kAbs, kSquare };

// Metric ids equal the fp_metric enum values of the C ABI.
constexpr int kMetricL2 = 0;
constexpr int kMetricL1 = 1;
constexpr int kMetricCosine = 2;
constexpr int kMetricSqeuclidean = 3;

FP_HOST_DEVICE bool metric_is_valid(int metric) {
  return metric >= 0 && metric <= 3;
}

FP_HOST_DEVICE Accumulation accumulation_of(int metric) {
  return metric == kMetricL1 ? Accumulation::kAbs : Accumulation::kSquare;
}

// Cosine works on rows scaled to unit length: 1 - cos(a, b) = |a/|a| - b/|b||^2 / 2.
// A zero row is left at zero, which puts it at cosine distance 1 from every other row.
FP_HOST_DEVICE bool metric_normalises_rows(int metric) {
  return metric == kMetricCosine;
}

template <typename T>
FP_HOST_DEVICE T accumulate_term(Accumulation acc, T a, T b) {
  T diff = a - b;
  return acc == Accumulation::kAbs ? (diff < T(0) ? -diff : diff) : diff * diff;
}

// Maps the accumulated value (sum of |diff| or of diff^2) to the metric's distance.
template <typename T>
FP_HOST_DEVICE T finish_distance(int metric, T accumulated) {
  switch (metric) {
    case kMetricL2:
      return sqrt(accumulated);
    case kMetricCosine:
      return accumulated * T(0.5);
    default:  // l1, sqeuclidean
      return accumulated;
  }
}

// Distance of one off-diagonal pair from its accumulated value. Cosine with a zero row is defined as
// 1 (the row is taken as orthogonal to everything, as torch.nn.functional.cosine_similarity does).
template <typename T>
FP_HOST_DEVICE T finish_pair_distance(int metric, T accumulated, bool either_row_zero) {
  return (metric == kMetricCosine && either_row_zero) ? T(1) : finish_distance(metric, accumulated);
}

// Scale that turns a row of squared norm `sq_norm` into a unit row for cosine (0 for a zero row).
FP_HOST_DEVICE double unit_scale(double sq_norm) {
  return sq_norm > 0.0 ? 1.0 / sqrt(sq_norm) : 0.0;
}

// A Gram-derived squared distance is trusted only when it is at least this fraction of
// |a|^2 + |b|^2. The CPU sums each float32 Gram entry over k with FMAs in one vector lane; the rounding
// errors add like a random walk, ~sqrt(D) * 2^-24 * |a||b| (the worst case D * 2^-24 is not reached by
// real weights). At D = 4608 that is ~4e-6 (|a|^2 + |b|^2) / 2, so a 1/16 floor keeps the relative
// error of d under 1e-4 with a wide margin (measured: <= 1.2e-7 on ResNet-50 shapes and the tests'
// near-duplicate families). Pairs under the floor are recomputed from differences.
constexpr float kGramTrustFraction = 1.0f / 16.0f;

// The Gram form is also left to the direct one outside float's comfortable range: squared norms above
// kGramMaxSqNorm (products near float's overflow; an overflowed norm is inf) or, for a pair not both zero,
// below kGramMinSqNorm (products in the subnormals). Found by the C ABI fuzz harness: rows of 1e20 gave
// inf, rows of 1e-25 gave 0.
constexpr float kGramMaxSqNorm = 0x1p100f;
constexpr float kGramMinSqNorm = 0x1p-60f;

FP_HOST_DEVICE bool gram_needs_direct(float gram_sq_distance, float sq_norm_a, float sq_norm_b) {
  const float norms = sq_norm_a + sq_norm_b;
  return !(gram_sq_distance >= kGramTrustFraction * norms) || !(norms <= kGramMaxSqNorm) ||
         (norms > 0.0f && norms < kGramMinSqNorm);
}

FP_DETAIL_END

#endif  // FASTPRUNE_DETAIL_DISTANCE_H
