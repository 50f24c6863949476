// kernel_scores on the CPU: c(K) for every k x k kernel of every layer, fused (no eigenvalues stored).
#include "cpu/cpu_ops.h"
#include "fastprune/detail/kernel_criteria.h"

namespace fp {
namespace cpu {

void kernel_scores(const std::vector<detail::LayerSpan>& layers, const std::vector<const float*>& layer_rows,
                   const std::vector<int>& kernel_sizes, int criterion, float* out) {
  // One parallel region for the whole network, layers' loops without barriers in between: a region per
  // layer would pay a fork/join 50+ times per call (and a scheduler quantum each when a core is busy).
#pragma omp parallel
  for (size_t l = 0; l < layers.size(); ++l) {
    const float* kernels = layer_rows[l];
    const int k = kernel_sizes[l];
    float* scores = out + layers[l].row_offset;
#pragma omp for schedule(static) nowait
    for (int64_t kernel = 0; kernel < layers[l].rows; ++kernel)
      scores[kernel] = detail::kernel_criterion(criterion, kernels + kernel * k * k, k);
  }
}

}  // namespace cpu
}  // namespace fp
