// fp_gm_scores on CUDA: g_j = sum over kept j' != j of d(F_j, F_j'), without forming N x N.
//
// Determinism: no floating-point atomics. Each tile block writes its row sums and column sums to fixed
// slots partials[layer.partial_offset + row * T_l + other_tile], every slot by exactly one block, and a
// second kernel adds each row's T_l slots in ascending tile order. Sums are in double.
#include <cuda_runtime.h>
#include <math.h>

#include <string>
#include <vector>

#include "common.cuh"
#include "cuda_ops.h"
#include "tile.cuh"

namespace fp {
namespace cuda {
namespace {

// Rows past N_l count as pruned, so they add nothing to any sum.
__device__ __forceinline__ bool is_kept(const uint8_t* keep_mask, const detail::LayerSpan& span,
                                        int64_t row) {
  return row < span.rows && (keep_mask == nullptr || keep_mask[span.row_offset + row] != 0);
}

// Slot (row i, tile t) receives sum_{j in tile t, j kept} d(i, j). A block (ti, tj) fills (i, tj) for
// its rows i and, off the diagonal, (j, ti) for its columns j; the diagonal block fills (i, ti).
template <class K>
__global__ void __launch_bounds__(kTileThreads)
    gm_tiles_kernel(const TileEntry* tiles, const LayerInfo* layers, const float* data, const double* scales,
                    const uint8_t* keep_mask, int metric, double* partials) {
  __shared__ TileShared sh;
  __shared__ bool keep_i[kTile];
  __shared__ bool keep_j[kTile];
  const TileEntry tile = tiles[blockIdx.x];
  const LayerInfo layer = layers[tile.layer];
  const int64_t n = layer.span.rows;
  const int64_t i0 = static_cast<int64_t>(tile.ti) * kTile;
  const int64_t j0 = static_cast<int64_t>(tile.tj) * kTile;
  const int t = threadIdx.x;
  if (t < kTile) {
    keep_i[t] = is_kept(keep_mask, layer.span, i0 + t);
  } else if (t < 2 * kTile) {
    keep_j[t - kTile] = is_kept(keep_mask, layer.span, j0 + t - kTile);
  }
  // Ends with __syncthreads(), which also publishes keep_i and keep_j.
  compute_tile<K>(tile, layer.span, data, scales, metric, sh);

  // One thread per row (then per column) adding in ascending index: a fixed order, so bitwise
  // reproducible. The diagonal entry is 0, which leaves j' = j out of the row's own sum.
  double* slots = partials + layer.partial_offset;
  if (t < kTile) {
    if (i0 + t < n) {
      double sum = 0.0;
      for (int c = 0; c < kTile; ++c) sum += keep_j[c] ? static_cast<double>(sh.dist[t][c]) : 0.0;
      slots[(i0 + t) * layer.num_tiles + tile.tj] = sum;
    }
  } else if (t < 2 * kTile && tile.ti != tile.tj) {
    const int c = t - kTile;
    if (j0 + c < n) {
      double sum = 0.0;
      for (int r = 0; r < kTile; ++r) sum += keep_i[r] ? static_cast<double>(sh.dist[r][c]) : 0.0;
      slots[(j0 + c) * layer.num_tiles + tile.ti] = sum;
    }
  }
}

// One thread per global row: adds the row's T_l partials in ascending tile order.
__global__ void gm_reduce_kernel(const LayerInfo* layers, int num_layers, int64_t total_rows,
                                 const double* partials, const uint8_t* keep_mask, float* out) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (row >= total_rows) return;
  if (keep_mask != nullptr && keep_mask[row] == 0) {
    out[row] = INFINITY;  // pruned filters must never be picked as closest to the median again
    return;
  }
  const LayerInfo layer = layers[layer_of_row(layers, num_layers, row)];
  const double* slots = partials + layer.partial_offset + (row - layer.span.row_offset) * layer.num_tiles;
  double sum = 0.0;
  for (int64_t t = 0; t < layer.num_tiles; ++t) sum += slots[t];
  out[row] = static_cast<float>(sum);
}

constexpr int kReduceThreads = 256;

}  // namespace

fp_status gm_scores(const std::vector<detail::LayerSpan>& layers, const float* data, int metric,
                    const uint8_t* keep_mask, void* stream_handle, float* out, std::string& error) {
  const cudaStream_t stream = static_cast<cudaStream_t>(stream_handle);
  Prepass prepass(stream);
  fp_status status = run_prepass(layers, data, metric, stream, prepass, error);
  if (status != FP_OK) return status;

  const DeviceLayout& layout = prepass.layout;
  DeviceBuffer<double> partials(stream);
  status = partials.allocate(static_cast<size_t>(layout.total_partials), error);
  if (status != FP_OK) return status;

  dispatch_metric(metric, [&](auto kind) {
    gm_tiles_kernel<decltype(kind)><<<layout.num_tiles, kTileThreads, 0, stream>>>(
        layout.tiles.get(), layout.layers.get(), data, prepass.scales.get(), keep_mask, metric,
        partials.get());
  });
  FP_CUDA_TRY(cudaGetLastError());
  const int64_t reduce_blocks = (layout.total_rows + kReduceThreads - 1) / kReduceThreads;
  gm_reduce_kernel<<<static_cast<unsigned>(reduce_blocks), kReduceThreads, 0, stream>>>(
      layout.layers.get(), layout.num_layers, layout.total_rows, partials.get(), keep_mask, out);
  FP_CUDA_TRY(cudaGetLastError());
  return finish_nonfinite_check(prepass, stream, error);
}

}  // namespace cuda
}  // namespace fp
