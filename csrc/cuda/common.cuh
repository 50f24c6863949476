// Shared host-side plumbing of the CUDA ops: error conversion, stream-ordered device buffers, the
// network-wide tile table (one CUDA block per tile pair of every layer) and the row-statistics pre-pass.
#ifndef FASTPRUNE_CUDA_COMMON_CUH
#define FASTPRUNE_CUDA_COMMON_CUH

#include <cuda_runtime.h>
#include <stdint.h>

#include <climits>
#include <string>
#include <vector>

#include "cuda_ops.h"
#include "fastprune/detail/ragged.h"

namespace fp {
namespace cuda {

// Converts a CUDA result into an fp_status; on failure `error` becomes "cuda: <call>: <reason>".
inline fp_status check_cuda(cudaError_t result, const char* call, std::string& error) {
  if (result == cudaSuccess) return FP_OK;
  error = std::string("cuda: ") + call + ": " + cudaGetErrorString(result);
  return result == cudaErrorMemoryAllocation ? FP_ERR_OUT_OF_MEMORY : FP_ERR_DEVICE;
}

// Returns from the enclosing function (which must have a `std::string& error`) when `call` fails.
#define FP_CUDA_TRY(call)                                                               \
  do {                                                                                  \
    const fp_status fp_cuda_try_status_ = ::fp::cuda::check_cuda((call), #call, error); \
    if (fp_cuda_try_status_ != FP_OK) return fp_cuda_try_status_;                       \
  } while (0)

// Device array allocated and freed in stream order, so an early error return never frees memory that
// queued work on the stream may still touch.
template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(cudaStream_t stream) : stream_(stream) {}
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() {
    if (ptr_ != nullptr) cudaFreeAsync(ptr_, stream_);
  }

  fp_status allocate(size_t count, std::string& error) {
    // Never ask for 0 bytes: a null pointer would be indistinguishable from "not allocated".
    const size_t bytes = (count > 0 ? count : 1) * sizeof(T);
    return check_cuda(cudaMallocAsync(reinterpret_cast<void**>(&ptr_), bytes, stream_), "cudaMallocAsync",
                      error);
  }

  T* get() const { return ptr_; }

 private:
  cudaStream_t stream_;
  T* ptr_ = nullptr;
};

// Rows of a layer are split into tiles of kTile rows; every (I, J >= I) tile pair is one CUDA block.
constexpr int kTile = 64;
// The row-statistics pre-pass gives each row one warp, kStatsRowsPerBlock rows per block.
constexpr int kStatsRowsPerBlock = 8;

struct TileEntry {
  int layer;
  int ti;  // tile of the block's rows i
  int tj;  // tile of the block's columns j, tj >= ti
};

struct LayerInfo {
  detail::LayerSpan span;
  int64_t num_tiles;       // T_l = ceil(N_l / kTile)
  int64_t partial_offset;  // first slot of the layer's N_l x T_l gm partial sums
};

// Device copy of the layer metadata and of the tile table, plus the totals the launches need.
struct DeviceLayout {
  explicit DeviceLayout(cudaStream_t stream) : layers(stream), tiles(stream) {}
  DeviceBuffer<LayerInfo> layers;
  DeviceBuffer<TileEntry> tiles;
  int num_layers = 0;
  int num_tiles = 0;
  int64_t total_rows = 0;
  int64_t total_partials = 0;
};

// Builds the tile table on the host and uploads it with the layer metadata. The host vectors may be
// freed on return: cudaMemcpyAsync from pageable memory stages the source before returning.
inline fp_status upload_layout(const std::vector<detail::LayerSpan>& spans, cudaStream_t stream,
                               DeviceLayout& layout, std::string& error) {
  if (spans.empty() || spans.size() > static_cast<size_t>(INT_MAX)) {
    error = "filters: num_layers out of range for the CUDA backend";
    return FP_ERR_INVALID_ARGUMENT;
  }
  std::vector<LayerInfo> infos(spans.size());
  int64_t tile_count = 0;
  for (size_t l = 0; l < spans.size(); ++l) {
    // Tile indices are ints and a row index times N must fit int64: cap N_l at INT_MAX.
    if (spans[l].rows > INT_MAX) {
      error = "filters: num_rows[" + std::to_string(l) + "] too large for the CUDA backend";
      return FP_ERR_INVALID_ARGUMENT;
    }
    const int64_t t = (spans[l].rows + kTile - 1) / kTile;
    infos[l] = LayerInfo{spans[l], t, layout.total_partials};
    layout.total_partials += spans[l].rows * t;
    layout.total_rows += spans[l].rows;
    tile_count += t * (t + 1) / 2;
  }
  if (tile_count > INT_MAX || (layout.total_rows + kStatsRowsPerBlock - 1) / kStatsRowsPerBlock > INT_MAX) {
    error = "filters: too many rows for one CUDA launch";
    return FP_ERR_INVALID_ARGUMENT;
  }
  std::vector<TileEntry> tiles;
  tiles.reserve(static_cast<size_t>(tile_count));
  for (size_t l = 0; l < infos.size(); ++l) {
    const int t = static_cast<int>(infos[l].num_tiles);
    for (int i = 0; i < t; ++i) {
      for (int j = i; j < t; ++j) tiles.push_back(TileEntry{static_cast<int>(l), i, j});
    }
  }
  layout.num_layers = static_cast<int>(infos.size());
  layout.num_tiles = static_cast<int>(tiles.size());

  fp_status status = layout.layers.allocate(infos.size(), error);
  if (status != FP_OK) return status;
  status = layout.tiles.allocate(tiles.size(), error);
  if (status != FP_OK) return status;
  FP_CUDA_TRY(cudaMemcpyAsync(layout.layers.get(), infos.data(), infos.size() * sizeof(LayerInfo),
                              cudaMemcpyHostToDevice, stream));
  FP_CUDA_TRY(cudaMemcpyAsync(layout.tiles.get(), tiles.data(), tiles.size() * sizeof(TileEntry),
                              cudaMemcpyHostToDevice, stream));
  return FP_OK;
}

// Layer holding global row `row` (rows are packed layer after layer, so row_offset is ascending).
__device__ __forceinline__ int layer_of_row(const LayerInfo* layers, int num_layers, int64_t row) {
  int lo = 0, hi = num_layers - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (layers[mid].span.row_offset <= row) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

// What every op sets up before its tile launch: the layout, the cosine unit scales (null for other
// metrics) and the device flag holding the lowest layer with a NaN/Inf weight (INT_MAX when none).
struct Prepass {
  explicit Prepass(cudaStream_t stream) : layout(stream), scales(stream), bad_layer(stream) {}
  DeviceLayout layout;
  DeviceBuffer<double> scales;
  DeviceBuffer<int> bad_layer;
};

// Defined in row_stats.cu. Uploads the layout and queues the row-statistics kernel, which runs for
// every metric because it is also the NaN/Inf check.
fp_status run_prepass(const std::vector<detail::LayerSpan>& spans, const float* data, int metric,
                      cudaStream_t stream, Prepass& prepass, std::string& error);

// Defined in row_stats.cu. Copies the flag back, synchronises the stream and returns FP_ERR_NONFINITE
// ("filters: contain NaN or Inf (layer L)") when the pre-pass found a non-finite weight.
fp_status finish_nonfinite_check(const Prepass& prepass, cudaStream_t stream, std::string& error);

}  // namespace cuda
}  // namespace fp

#endif  // FASTPRUNE_CUDA_COMMON_CUH
