// The per-kernel criteria of eigenvalue-based pruning (Cugu & Akbas), shared by the CPU and CUDA
// kernels: c(K) for one k x k kernel K; a kernel is kept iff c(K) >= t^p with p from criterion_power().
// Criterion ids equal the fp_kernel_criterion values of the C ABI.
#ifndef FASTPRUNE_DETAIL_KERNEL_CRITERIA_H
#define FASTPRUNE_DETAIL_KERNEL_CRITERIA_H

#include <math.h>

#include "fastprune/detail/distance.h"
#include "fastprune/detail/host_device.h"
#include "fastprune/detail/small_matrix.h"

FP_DETAIL_BEGIN

constexpr int kCriterionWeight = 0;
constexpr int kCriterionDet = 1;
constexpr int kCriterionDetGram = 2;
constexpr int kCriterionMinEig = 3;
constexpr int kCriterionMinEigReal = 4;
constexpr int kCriterionSpectralRadius = 5;
constexpr int kCriterionSpectralRadiusReal = 6;
constexpr int kCriterionSpectralNorm = 7;

FP_HOST_DEVICE bool criterion_is_valid(int criterion) {
  return criterion >= 0 && criterion <= 7;
}

// Exponent of the threshold: |det K| >= t^k and |det K^T K| >= t^(2k) make one global t comparable
// across kernel sizes; every other criterion is in units of the weights (p = 1). -1: bad criterion.
FP_HOST_DEVICE int criterion_power(int criterion, int k) {
  if (!criterion_is_valid(criterion)) return -1;
  if (criterion == kCriterionDet) return k;
  if (criterion == kCriterionDetGram) return 2 * k;
  return 1;
}

// c(K) for a 3x3 row-major kernel k, the criterion a compile-time constant: straight-line code (no
// branch depends on the data), so the CPU evaluates it on a block of kernels, one per SIMD lane. Each
// criterion computes only what it needs: a sum, a determinant, K^T K's top eigenvalue, or the
// eigenvalues (never ordered: the extremes do not depend on the order).
template <int Criterion>
FP_LANE float kernel_criterion3(const float* k) {
  if (Criterion == kCriterionWeight) {
    double sum = 0.0;
    for (int e = 0; e < 9; ++e) sum += fabs((double)k[e]);
    return (float)(sum / 9.0);
  }
  if (Criterion == kCriterionDet) return fabsf((float)sm3_det(k));
  if (Criterion == kCriterionDetGram) {
    const double det = (float)sm3_det(k);  // rounded to float first, as small_det returns it
    return (float)(det * det);
  }
  if (Criterion == kCriterionSpectralNorm) return sm3_spectral_norm(k);
  // The eigenvalue criteria: the extreme of |lambda| (modulus of float re, im in double, as eig_extremes
  // takes it) or |Re lambda| over the three, written out (eig_extremes' NaN flag, a mask combined
  // with the selects, defeats GCC 12's vectoriser); every value is NaN for a non-finite kernel.
  float re[3], im[3];
  const bool finite = sm3_eig_unordered(k, re, im);
  const bool modulus = Criterion == kCriterionMinEig || Criterion == kCriterionSpectralRadius;
  const bool least = Criterion == kCriterionMinEig || Criterion == kCriterionMinEigReal;
  float best = least ? INFINITY : 0.0f;
  for (int i = 0; i < 3; ++i) {
    const double r = re[i], m = im[i];
    const float v = modulus ? static_cast<float>(fm_sqrt(r * r + m * m)) : fabsf(re[i]);
    best = least ? (v < best ? v : best) : (v > best ? v : best);
  }
  return finite ? best : NAN;
}

// c(K) for the n x n row-major kernel k (1 <= n <= kSmallMaxN). Eigenvalue criteria never keep the
// eigenvalues beyond this function: one fused pass per kernel.
FP_HOST_DEVICE float kernel_criterion(int criterion, const float* k, int n) {
  if (n == 1) {
    // A 1x1 kernel is its own eigenvalue, singular value and determinant: every criterion is |w|
    // (det_gram w^2). Half the kernels of a ResNet-50 are 1x1, so this path matters.
    const float a = fabsf(k[0]);
    return criterion == kCriterionDetGram ? a * a : a;
  }
  if (n == 3) {
    switch (criterion) {
      case kCriterionWeight:
        return kernel_criterion3<kCriterionWeight>(k);
      case kCriterionDet:
        return kernel_criterion3<kCriterionDet>(k);
      case kCriterionDetGram:
        return kernel_criterion3<kCriterionDetGram>(k);
      case kCriterionMinEig:
        return kernel_criterion3<kCriterionMinEig>(k);
      case kCriterionMinEigReal:
        return kernel_criterion3<kCriterionMinEigReal>(k);
      case kCriterionSpectralRadius:
        return kernel_criterion3<kCriterionSpectralRadius>(k);
      case kCriterionSpectralRadiusReal:
        return kernel_criterion3<kCriterionSpectralRadiusReal>(k);
      default:
        return kernel_criterion3<kCriterionSpectralNorm>(k);
    }
  }
  switch (criterion) {
    case kCriterionWeight: {
      double sum = 0.0;
      for (int e = 0; e < n * n; ++e) sum += fabs((double)k[e]);
      return (float)(sum / (n * n));
    }
    case kCriterionDet:
      return fabsf(small_det(k, n));
    case kCriterionDetGram: {
      const double det = small_det(k, n);
      return (float)(det * det);  // det(K^T K) = det(K)^2: the same pruned set as det at t^(2k)
    }
    case kCriterionSpectralNorm:
      return spectral_norm(k, n);
    default:
      break;
  }
  float re[kSmallMaxN], im[kSmallMaxN];
  small_eigvals(k, n, re, im);
  // A complex eigenvalue is never dropped from the set: modulus, or |Re| in the _real variants.
  const EigExtremes x = eig_extremes(re, im, n);
  switch (criterion) {
    case kCriterionMinEig:
      return x.min_abs;
    case kCriterionMinEigReal:
      return x.min_abs_re;
    case kCriterionSpectralRadius:
      return x.max_abs;
    default:
      return x.max_abs_re;
  }
}

FP_DETAIL_END

#endif  // FASTPRUNE_DETAIL_KERNEL_CRITERIA_H
