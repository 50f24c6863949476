// pairwise_distances on the CPU: every tile of the distance engine is copied into its layer's
// N x N block and mirrored, so each unordered pair is computed once.
#include "cpu/kernels/capability.h"
#include "cpu/kernels/cpu_ops.h"
#include "cpu/kernels/distance_tiles.h"

namespace fp {
namespace cpu {
inline namespace FP_CAP {

fp_status pairwise_distances(const std::vector<detail::LayerSpan>& layers,
                             const std::vector<const float*>& layer_rows, int metric, float* out,
                             std::string& error) {
  DistanceTiles tiles;
  fp_status status = tiles.prepare(layers, layer_rows, metric, nullptr, error);
  if (status != FP_OK) return status;
  tiles.for_each_tile([&](const Tile& tile) {
    const int64_t n = layers[tile.layer].rows;
    float* matrix = out + layers[tile.layer].matrix_offset;
    for (int64_t i = 0; i < tile.ni; ++i) {
      for (int64_t j = 0; j < tile.nj; ++j) {
        const float value = tile.dist[i * tile.nj + j];
        matrix[(tile.i0 + i) * n + tile.j0 + j] = value;
        matrix[(tile.j0 + j) * n + tile.i0 + i] = value;
      }
    }
  });
  // A one-filter layer has no tiles with pairs; its 1 x 1 matrix is the zero diagonal.
  for (const detail::LayerSpan& layer : layers)
    if (layer.rows == 1) out[layer.matrix_offset] = 0.0f;
  return FP_OK;
}

}  // namespace FP_CAP
}  // namespace cpu
}  // namespace fp
