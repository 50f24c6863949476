// CPU implementation of the masked convolution (fp_masked_conv2d_*), called by csrc/capi_masked_conv2d.cpp
// after every argument has been validated. The kept kernels arrive as compressed rows (row_ptr, col) and
// packed (nnz, kh, kw) weights; see fastprune.h.
#ifndef FASTPRUNE_CPU_MASKED_CONV2D_H
#define FASTPRUNE_CPU_MASKED_CONV2D_H

#include <cstdint>

#include "cpu/kernel_table.h"  // ConvGeometry
#include "cpu/kernels/capability.h"

namespace fp {
namespace cpu {
inline namespace FP_CAP {

void masked_conv2d_forward(const ConvGeometry& g, const float* x, const int32_t* row_ptr, const int32_t* col,
                           const float* kernels, const float* bias, float* y);
void masked_conv2d_backward_input(const ConvGeometry& g, const float* grad_y, const int32_t* row_ptr,
                                  const int32_t* col, const float* kernels, float* grad_x);
void masked_conv2d_backward_weight(const ConvGeometry& g, const float* x, const float* grad_y,
                                   const int32_t* row_ptr, const int32_t* col, float* grad_kernels);

}  // namespace FP_CAP
}  // namespace cpu
}  // namespace fp

#endif  // FASTPRUNE_CPU_MASKED_CONV2D_H
