// Entry points of the CPU implementation, called by csrc/capi.cpp after it has validated every
// argument. layer_rows[l] points at layer l's N_l x D_l row-major filters. Each returns FP_OK or a status
// with `error` set to a message for fp_last_error().
#ifndef FASTPRUNE_CPU_CPU_OPS_H
#define FASTPRUNE_CPU_CPU_OPS_H

#include <string>
#include <vector>

#include "cpu/kernels/capability.h"
#include "fastprune/detail/ragged.h"
#include "fastprune/fastprune.h"

namespace fp {
namespace cpu {
inline namespace FP_CAP {

fp_status pairwise_distances(const std::vector<detail::LayerSpan>& layers,
                             const std::vector<const float*>& layer_rows, int metric, float* out,
                             std::string& error);

fp_status gm_scores(const std::vector<detail::LayerSpan>& layers, const std::vector<const float*>& layer_rows,
                    int metric, const uint8_t* keep_mask, float* out, std::string& error);

// Small-matrix ops over `count` contiguous n x n matrices (arguments validated by the C ABI).
void small_eigvals(const float* matrices, int64_t count, int n, float* out);
void small_svdvals(const float* matrices, int64_t count, int n, float* out);
void small_det(const float* matrices, int64_t count, int n, float* out);

// kernel_sizes[l] = k_l, the side of layer l's kernels (row_dims[l] = k_l^2).
void kernel_scores(const std::vector<detail::LayerSpan>& layers, const std::vector<const float*>& layer_rows,
                   const std::vector<int>& kernel_sizes, int criterion, float* out);

}  // namespace FP_CAP
}  // namespace cpu
}  // namespace fp

#endif  // FASTPRUNE_CPU_CPU_OPS_H
