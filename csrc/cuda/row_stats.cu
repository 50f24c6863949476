// Row-statistics pre-pass shared by every CUDA op: NaN/Inf detection for all metrics and the per-row
// unit scales that cosine needs.
#include <climits>
#include <string>
#include <vector>

#include "common.cuh"
#include "fastprune/detail/distance.h"

namespace fp {
namespace cuda {
namespace {

constexpr unsigned kFullMask = 0xffffffffu;

// One warp per global row. The sum of squares is accumulated in double so the cosine scale carries no
// float rounding; the butterfly reduction has a fixed order, so the scale is identical on every run.
__global__ void __launch_bounds__(kStatsRowsPerBlock * 32)
    row_stats_kernel(const LayerInfo* layers, int num_layers, int64_t total_rows, const float* data,
                     double* scales, int* bad_layer) {
  const int lane = threadIdx.x % 32;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kStatsRowsPerBlock + threadIdx.x / 32;
  if (row >= total_rows) return;  // uniform per warp, so the shuffles below see full warps
  const int layer = layer_of_row(layers, num_layers, row);
  const detail::LayerSpan span = layers[layer].span;
  const float* x = data + span.data_offset + (row - span.row_offset) * span.dims;

  double sq = 0.0;
  bool finite = true;
  for (int64_t k = lane; k < span.dims; k += 32) {
    const float v = x[k];
    finite = finite && isfinite(v);
    sq += static_cast<double>(v) * static_cast<double>(v);
  }
  for (int offset = 16; offset > 0; offset /= 2) sq += __shfl_xor_sync(kFullMask, sq, offset);
  const bool any_bad = __any_sync(kFullMask, !finite);
  if (lane != 0) return;
  // atomicMin keeps the lowest offending layer whatever order the warps run in: deterministic message.
  if (any_bad) atomicMin(bad_layer, layer);
  if (scales != nullptr) scales[row] = detail::unit_scale(sq);
}

}  // namespace

fp_status run_prepass(const std::vector<detail::LayerSpan>& spans, const float* data, int metric,
                      cudaStream_t stream, Prepass& prepass, std::string& error) {
  fp_status status = upload_layout(spans, stream, prepass.layout, error);
  if (status != FP_OK) return status;
  if (detail::metric_normalises_rows(metric)) {
    status = prepass.scales.allocate(static_cast<size_t>(prepass.layout.total_rows), error);
    if (status != FP_OK) return status;
  }
  status = prepass.bad_layer.allocate(1, error);
  if (status != FP_OK) return status;
  // Pageable source: cudaMemcpyAsync stages it before returning, so a stack variable is safe.
  const int none = INT_MAX;
  FP_CUDA_TRY(cudaMemcpyAsync(prepass.bad_layer.get(), &none, sizeof(int), cudaMemcpyHostToDevice, stream));
  const DeviceLayout& layout = prepass.layout;
  const int64_t blocks = (layout.total_rows + kStatsRowsPerBlock - 1) / kStatsRowsPerBlock;
  row_stats_kernel<<<static_cast<unsigned>(blocks), kStatsRowsPerBlock * 32, 0, stream>>>(
      layout.layers.get(), layout.num_layers, layout.total_rows, data, prepass.scales.get(),
      prepass.bad_layer.get());
  return check_cuda(cudaGetLastError(), "row_stats_kernel launch", error);
}

fp_status finish_nonfinite_check(const Prepass& prepass, cudaStream_t stream, std::string& error) {
  int bad = INT_MAX;
  FP_CUDA_TRY(cudaMemcpyAsync(&bad, prepass.bad_layer.get(), sizeof(int), cudaMemcpyDeviceToHost, stream));
  // Also surfaces any asynchronous kernel fault of the op as FP_ERR_DEVICE.
  FP_CUDA_TRY(cudaStreamSynchronize(stream));
  if (bad != INT_MAX) {
    error = "filters: contain NaN or Inf (layer " + std::to_string(bad) + ")";
    return FP_ERR_NONFINITE;
  }
  return FP_OK;
}

}  // namespace cuda
}  // namespace fp
