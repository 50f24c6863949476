// Entry points of the CUDA implementation, called by csrc/capi.cpp after it has validated every
// argument. Pointers are device pointers; `layers` is host metadata. Each function returns FP_OK or
// a status with `error` set to a message for fp_last_error().
#ifndef FASTPRUNE_CUDA_CUDA_OPS_H
#define FASTPRUNE_CUDA_CUDA_OPS_H

#include <string>
#include <vector>

#include "cpu/kernel_table.h"  // ConvGeometry
#include "fastprune/detail/ragged.h"
#include "fastprune/fastprune.h"

namespace fp {
namespace cuda {

fp_status device_check(std::string& error);

fp_status pairwise_distances(const std::vector<detail::LayerSpan>& layers, const float* data, int metric,
                             void* stream, float* out, std::string& error);

fp_status gm_scores(const std::vector<detail::LayerSpan>& layers, const float* data, int metric,
                    const uint8_t* keep_mask, void* stream, float* out, std::string& error);

// Small-matrix ops over `count` contiguous row-major n x n matrices (1 <= n <= 7), outputs laid out as
// fp_small_eigvals / fp_small_svdvals / fp_small_det say. Queued on the stream, not synchronised.
constexpr int kOpEigvals = 0;
constexpr int kOpSvdvals = 1;
constexpr int kOpDet = 2;
fp_status small_matrix_op(int op, const float* matrices, int64_t count, int n, void* stream, float* out,
                          std::string& error);

// c(K) of every kernel of the packed ragged batch `data` in one launch; kernel_sizes[l] = k_l (row_dims[l]
// = k_l^2). Queued on the stream, not synchronised.
fp_status kernel_scores(const std::vector<detail::LayerSpan>& layers, const float* data,
                        const std::vector<int>& kernel_sizes, int criterion, void* stream, float* out,
                        std::string& error);

// Masked convolution passes (fp_masked_conv2d_*): tensors are device pointers, row_ptr and col the
// validated host lists (uploaded here). Queued on the stream, not synchronised.
fp_status masked_conv2d_forward(const cpu::ConvGeometry& g, const float* x, const int32_t* row_ptr,
                                const int32_t* col, const float* kernels, const float* bias, void* stream,
                                float* y, std::string& error);
fp_status masked_conv2d_backward_input(const cpu::ConvGeometry& g, const float* grad_y,
                                       const int32_t* row_ptr, const int32_t* col, const float* kernels,
                                       void* stream, float* grad_x, std::string& error);
fp_status masked_conv2d_backward_weight(const cpu::ConvGeometry& g, const float* x, const float* grad_y,
                                        const int32_t* row_ptr, const int32_t* col, void* stream,
                                        float* grad_kernels, std::string& error);

}  // namespace cuda
}  // namespace fp

#endif  // FASTPRUNE_CUDA_CUDA_OPS_H
