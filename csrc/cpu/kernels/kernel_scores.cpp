// kernel_scores on the CPU: c(K) for every k x k kernel of every layer, fused (no eigenvalues stored).
// 3x3 layers run detail::kernel_criterion3<criterion> on blocks of kernels, one per SIMD lane
// (cpu/small_blocks.h); 1x1 layers are a vector loop over |w|; other sizes call detail::kernel_criterion
// per kernel. Every kernel of a given size takes the same code path wherever it lies, so scores do not
// depend on the thread count or on how layers are split. Loops are scheduled dynamically (see
// cpu/small_blocks.h): a preempted thread on a shared machine does not hold up the others.
// No trapping math: lets GCC if-convert the selects of the branch-free closed forms (computing both
// sides), which vectorises them; it changes no result, only which FP exception flags may be raised.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif
#include "cpu/kernels/capability.h"
#include "cpu/kernels/cpu_ops.h"
#include "cpu/kernels/small_blocks.h"
#include "fastprune/detail/kernel_criteria.h"

namespace fp {
namespace cpu {
inline namespace FP_CAP {
namespace {

template <int Criterion>
void scores3_nowait(const float* kernels, int64_t rows, float* scores) {
  for_blocks3_nowait<1>(kernels, rows, scores, [](const float* k, float* r) FP_LANE_LAMBDA {
    r[0] = detail::kernel_criterion3<Criterion>(k);
  });
}

void scores3_nowait(int criterion, const float* kernels, int64_t rows, float* scores) {
  switch (criterion) {
    case detail::kCriterionWeight:
      return scores3_nowait<detail::kCriterionWeight>(kernels, rows, scores);
    case detail::kCriterionDet:
      return scores3_nowait<detail::kCriterionDet>(kernels, rows, scores);
    case detail::kCriterionDetGram:
      return scores3_nowait<detail::kCriterionDetGram>(kernels, rows, scores);
    case detail::kCriterionMinEig:
      return scores3_nowait<detail::kCriterionMinEig>(kernels, rows, scores);
    case detail::kCriterionMinEigReal:
      return scores3_nowait<detail::kCriterionMinEigReal>(kernels, rows, scores);
    case detail::kCriterionSpectralRadius:
      return scores3_nowait<detail::kCriterionSpectralRadius>(kernels, rows, scores);
    case detail::kCriterionSpectralRadiusReal:
      return scores3_nowait<detail::kCriterionSpectralRadiusReal>(kernels, rows, scores);
    default:
      return scores3_nowait<detail::kCriterionSpectralNorm>(kernels, rows, scores);
  }
}

}  // namespace

void kernel_scores(const std::vector<detail::LayerSpan>& layers, const std::vector<const float*>& layer_rows,
                   const std::vector<int>& kernel_sizes, int criterion, float* out) {
  // One parallel region for the whole network, layers' loops without barriers in between: a region per
  // layer would pay a fork/join 50+ times per call (and a scheduler quantum each when a core is busy).
#pragma omp parallel
  for (size_t l = 0; l < layers.size(); ++l) {
    const float* kernels = layer_rows[l];
    const int k = kernel_sizes[l];
    const int64_t rows = layers[l].rows;
    float* scores = out + layers[l].row_offset;
    if (k == 3) {
      scores3_nowait(criterion, kernels, rows, scores);
    } else if (k == 1) {
      // A 1x1 kernel is its own eigenvalue, singular value and determinant (detail::kernel_criterion).
      const bool square = criterion == detail::kCriterionDetGram;
#pragma omp for simd schedule(dynamic, 16384) nowait
      for (int64_t kernel = 0; kernel < rows; ++kernel) {
        const float a = fabsf(kernels[kernel]);
        scores[kernel] = square ? a * a : a;
      }
    } else {
#pragma omp for schedule(dynamic, 256) nowait
      for (int64_t kernel = 0; kernel < rows; ++kernel)
        scores[kernel] = detail::kernel_criterion(criterion, kernels + kernel * k * k, k);
    }
  }
}

}  // namespace FP_CAP
}  // namespace cpu
}  // namespace fp
