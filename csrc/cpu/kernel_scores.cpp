// kernel_scores on the CPU: c(K) for every k x k kernel of every layer, fused (no eigenvalues stored).
#include "cpu/batched.h"
#include "cpu/cpu_ops.h"
#include "fastprune/detail/kernel_criteria.h"

namespace fp {
namespace cpu {

void kernel_scores(const std::vector<detail::LayerSpan>& layers, const std::vector<const float*>& layer_rows,
                   const std::vector<int>& kernel_sizes, int criterion, float* out) {
  for (size_t l = 0; l < layers.size(); ++l) {
    const float* kernels = layer_rows[l];
    const int k = kernel_sizes[l];
    float* scores = out + layers[l].row_offset;
    for_each_item(layers[l].rows, [&](int64_t kernel) {
      scores[kernel] = detail::kernel_criterion(criterion, kernels + kernel * k * k, k);
    });
  }
}

}  // namespace cpu
}  // namespace fp
