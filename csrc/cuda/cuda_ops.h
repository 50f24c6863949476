// Entry points of the CUDA implementation, called by csrc/capi.cpp after it has validated every
// argument. Pointers are device pointers; `layers` is host metadata. Each function returns FP_OK or
// a status with `error` set to a message for fp_last_error().
#ifndef FASTPRUNE_CUDA_CUDA_OPS_H
#define FASTPRUNE_CUDA_CUDA_OPS_H

#include <string>
#include <vector>

#include "fastprune/detail/ragged.h"
#include "fastprune/fastprune.h"

namespace fp {
namespace cuda {

fp_status device_check(std::string& error);

fp_status pairwise_distances(const std::vector<detail::LayerSpan>& layers, const float* data, int metric,
                             void* stream, float* out, std::string& error);

fp_status gm_scores(const std::vector<detail::LayerSpan>& layers, const float* data, int metric,
                    const uint8_t* keep_mask, void* stream, float* out, std::string& error);

}  // namespace cuda
}  // namespace fp

#endif  // FASTPRUNE_CUDA_CUDA_OPS_H
