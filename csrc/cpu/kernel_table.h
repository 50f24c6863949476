// The CPU kernels as the C ABI (csrc/capi*.cpp) sees them: the argument types they share and one table of
// entry points. Every kernel source under csrc/cpu/kernels/ is compiled once per capability (default,
// avx2, avx512) into its own namespace fp::cpu::cap_<name>, and each copy exports its table through
// kernel_table() (declared in dispatch.h); csrc/cpu/dispatch.cpp picks one table at run time (see
// dispatch.h). Types and function pointers only: nothing here is compiled with a capability's flags.
#ifndef FASTPRUNE_CPU_KERNEL_TABLE_H
#define FASTPRUNE_CPU_KERNEL_TABLE_H

#include <cstdint>
#include <string>
#include <vector>

#include "fastprune/detail/ragged.h"
#include "fastprune/fastprune.h"

namespace fp {
namespace cpu {

// x (N, C, H, W), weight (O, C, kh, kw), output (N, O, Ho, Wo); strides, padding, dilation per axis.
struct ConvGeometry {
  int64_t N, C, H, W, O, kh, kw, sh, sw, ph, pw, dh, dw, Ho, Wo;
};

// A dense sub-convolution: filters[f] (f < n_filters) of the output read channels[j] (j < n_channels) of
// the input, with weights (n_filters, n_channels, kh, kw) packed in that order:
//     y[n][filters[f]] = bias[f] + sum_j sum_{ky,kx} weights[f][j][ky][kx] * x_pad[n][channels[j]][...]
// then max(., 0) when relu. With accumulate, the planes' existing values are added first (a residual add in
// place: y[n][filters[f]] = relu(y[n][filters[f]] + conv + bias)). Output planes of filters not listed are
// not touched, or with `others` (O values) set to others[o] (a pruned filter's bias). bias may be NULL.
struct DenseBlock {
  int64_t n_filters, n_channels;
  const int64_t* filters;
  const int64_t* channels;
  const float* weights;
  const float* bias;
  bool relu;
  bool accumulate = false;
  const float* others = nullptr;
};

// One capability's kernels; the contracts are stated where each is declared (kernels/cpu_ops.h,
// kernels/masked_conv2d.h, kernels/conv2d_blocked.h). Arguments arrive validated by the C ABI.
struct KernelTable {
  fp_status (*pairwise_distances)(const std::vector<detail::LayerSpan>& layers,
                                  const std::vector<const float*>& layer_rows, int metric, float* out,
                                  std::string& error);
  fp_status (*gm_scores)(const std::vector<detail::LayerSpan>& layers,
                         const std::vector<const float*>& layer_rows, int metric, const uint8_t* keep_mask,
                         float* out, std::string& error);
  void (*small_eigvals)(const float* matrices, int64_t count, int n, float* out);
  void (*small_svdvals)(const float* matrices, int64_t count, int n, float* out);
  void (*small_det)(const float* matrices, int64_t count, int n, float* out);
  void (*kernel_scores)(const std::vector<detail::LayerSpan>& layers,
                        const std::vector<const float*>& layer_rows, const std::vector<int>& kernel_sizes,
                        int criterion, float* out);
  void (*conv2d_blocked_forward)(const ConvGeometry& g, const float* x, const DenseBlock& block, float* y);
  void (*masked_conv2d_forward)(const ConvGeometry& g, const float* x, const int32_t* row_ptr,
                                const int32_t* col, const float* kernels, const float* bias, float* y);
  void (*masked_conv2d_backward_input)(const ConvGeometry& g, const float* grad_y, const int32_t* row_ptr,
                                       const int32_t* col, const float* kernels, float* grad_x);
  void (*masked_conv2d_backward_weight)(const ConvGeometry& g, const float* x, const float* grad_y,
                                        const int32_t* row_ptr, const int32_t* col, float* grad_kernels);
};

}  // namespace cpu
}  // namespace fp

#endif  // FASTPRUNE_CPU_KERNEL_TABLE_H
