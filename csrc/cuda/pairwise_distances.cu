// fp_pairwise_distances on CUDA: one launch covers every tile pair of every layer of the network.
#include <cuda_runtime.h>

#include <string>
#include <vector>

#include "common.cuh"
#include "cuda_ops.h"
#include "tile.cuh"

namespace fp {
namespace cuda {
namespace {

// One block per tile pair (ti <= tj): writes the tile to rows i / columns j of the layer's matrix and,
// off the diagonal, its transpose to rows j / columns i. Both stores walk the output row-major through
// shared memory, so global writes are coalesced.
template <class K>
__global__ void __launch_bounds__(kTileThreads)
    pairwise_tiles_kernel(const TileEntry* tiles, const LayerInfo* layers, const float* data,
                          const double* scales, int metric, float* out) {
  __shared__ TileShared sh;
  const TileEntry tile = tiles[blockIdx.x];
  const detail::LayerSpan span = layers[tile.layer].span;
  compute_tile<K>(tile, span, data, scales, metric, sh);

  const int64_t n = span.rows;
  const int64_t i0 = static_cast<int64_t>(tile.ti) * kTile;
  const int64_t j0 = static_cast<int64_t>(tile.tj) * kTile;
  float* matrix = out + span.matrix_offset;
  for (int e = threadIdx.x; e < kTile * kTile; e += kTileThreads) {
    const int r = e / kTile;
    const int c = e % kTile;
    if (i0 + r < n && j0 + c < n) matrix[(i0 + r) * n + j0 + c] = sh.dist[r][c];
    // A diagonal tile is symmetric and was written in full just above.
    if (tile.ti != tile.tj && j0 + r < n && i0 + c < n) matrix[(j0 + r) * n + i0 + c] = sh.dist[c][r];
  }
}

}  // namespace

fp_status pairwise_distances(const std::vector<detail::LayerSpan>& layers, const float* data, int metric,
                             void* stream_handle, float* out, std::string& error) {
  const cudaStream_t stream = static_cast<cudaStream_t>(stream_handle);
  Prepass prepass(stream);
  const fp_status status = run_prepass(layers, data, metric, stream, prepass, error);
  if (status != FP_OK) return status;

  const DeviceLayout& layout = prepass.layout;
  dispatch_metric(metric, [&](auto kind) {
    pairwise_tiles_kernel<decltype(kind)><<<layout.num_tiles, kTileThreads, 0, stream>>>(
        layout.tiles.get(), layout.layers.get(), data, prepass.scales.get(), metric, out);
  });
  FP_CUDA_TRY(cudaGetLastError());
  return finish_nonfinite_check(prepass, stream, error);
}

}  // namespace cuda
}  // namespace fp
