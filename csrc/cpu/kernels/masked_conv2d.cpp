// Masked 2-D convolution on the CPU, forward pass: work proportional to the kept kernels.
//
// Filter and channel masks (every kept filter reads the same input channels) leave a dense block of kept
// filters x shared channels: the register-blocked kernel of conv2d_blocked.cpp runs it. Kernel-level masks
// (each filter its own channel list) run on the same staging and microkernel one filter at a time,
// through the filter's own list of tap offsets (conv2d_sparse_forward). The backward passes are in
// masked_conv2d_backward.cpp. Every output element is summed by one thread in a fixed order: results are
// bitwise the same for every thread count.
#include "cpu/kernels/masked_conv2d.h"

#include <algorithm>
#include <vector>

#include "cpu/kernels/capability.h"
#include "cpu/kernels/conv2d_blocked.h"
#include "cpu/kernels/masked_conv2d_staging.h"

namespace fp {
namespace cpu {
inline namespace FP_CAP {

using staging::kept_filters;
using staging::uniform_channels;
using staging::used_channels;

void masked_conv2d_forward(const ConvGeometry& g, const float* x, const int32_t* row_ptr, const int32_t* col,
                           const float* kernels, const float* bias, float* y) {
  std::vector<int64_t> shared;
  if (uniform_channels(g, row_ptr, col, shared)) {
    // Filter and channel masks: the kept filters form one dense block (register-blocked over filters);
    // the pruned ones output their bias.
    const std::vector<int64_t> filters = kept_filters(g, row_ptr);
    std::vector<float> kept_bias, pruned_bias(static_cast<size_t>(g.O), 0.0f);
    if (bias) {
      for (int64_t o : filters) kept_bias.push_back(bias[o]);
      pruned_bias.assign(bias, bias + g.O);
    }
    const DenseBlock block{static_cast<int64_t>(filters.size()),
                           static_cast<int64_t>(shared.size()),
                           filters.data(),
                           shared.data(),
                           kernels,
                           bias ? kept_bias.data() : nullptr,
                           false,
                           false,
                           pruned_bias.data()};
    conv2d_blocked_forward(g, x, block, y);
    return;
  }
  conv2d_sparse_forward(g, x, row_ptr, col, used_channels(g, row_ptr, col), kernels, bias, y);
}

}  // namespace FP_CAP
}  // namespace cpu
}  // namespace fp
