// Register-blocked direct convolution for a dense block of filters (Winograd F(2x2, 3x3) for 3x3 stride-1
// blocks that fit L2): the CPU forward kernel behind fp_conv2d_forward and behind fp_masked_conv2d_forward
// when every kept filter reads the same input channels (filter and channel masks, dense layers).
#ifndef FASTPRUNE_CPU_CONV2D_BLOCKED_H
#define FASTPRUNE_CPU_CONV2D_BLOCKED_H

#include <cstdint>
#include <vector>

#include "cpu/kernels/capability.h"
#include "cpu/kernels/masked_conv2d.h"

namespace fp {
namespace cpu {
inline namespace FP_CAP {

void conv2d_blocked_forward(const ConvGeometry& g, const float* x, const DenseBlock& block, float* y);

// Kernel-level masks: filter o reads its own channels col[row_ptr[o] .. row_ptr[o + 1]) with the packed
// kernels of those pairs (the fp_masked_conv2d_* lists); `channels` lists every channel some pair reads.
// The same staging and microkernel, one filter at a time (no input reuse across filters: their lists
// differ). Pruned filters output their bias.
void conv2d_sparse_forward(const ConvGeometry& g, const float* x, const int32_t* row_ptr, const int32_t* col,
                           const std::vector<int64_t>& channels, const float* kernels, const float* bias,
                           float* y);

// The weight gradient of the same block (weights, bias and relu unused):
//     grad_weights[f][j][ky][kx] = sum_n sum_{oy,ox} grad_y[n][filters[f]][oy][ox] *
//     x_pad[n][channels[j]][...]
// (n_filters, n_channels, kh, kw) floats, overwritten. 3x3 stride-1 blocks of small maps by Winograd
// F(2x2, 3x3) (conv2d_winograd_backward.cpp).
void conv2d_blocked_backward_weight(const ConvGeometry& g, const float* x, const float* grad_y,
                                    const DenseBlock& block, float* grad_weights);

}  // namespace FP_CAP
}  // namespace cpu
}  // namespace fp

#endif  // FASTPRUNE_CPU_CONV2D_BLOCKED_H
