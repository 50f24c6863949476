// The CPU distance engine shared by pairwise_distances and gm_scores.
//
// prepare() checks the filters (NaN/Inf), compacts kept rows when a mask is given and scales rows to
// unit length for cosine. for_each_tile() then walks every (I, J >= I) pair of row tiles of every
// layer of the network in one OpenMP loop, computes that tile's distances and hands it to a consumer.
// Each tile is computed by one thread with single-threaded arithmetic, so results are bitwise the same
// for every thread count.
#ifndef FASTPRUNE_CPU_DISTANCE_TILES_H
#define FASTPRUNE_CPU_DISTANCE_TILES_H

#include <functional>
#include <string>
#include <vector>

#include "cpu/kernels/capability.h"
#include "fastprune/detail/ragged.h"
#include "fastprune/fastprune.h"

namespace fp {
namespace cpu {
inline namespace FP_CAP {

// Rows per tile side: large enough to amortise packing, small enough that a ResNet-50 layer
// (N = 2048) splits into dozens of tasks for load balancing.
constexpr int64_t kTileRows = 256;

struct Tile {
  int64_t layer;      // layer index in the batch
  int64_t i0, ni;     // rows [i0, i0 + ni) of the (compacted) layer
  int64_t j0, nj;     // columns [j0, j0 + nj)
  const float* dist;  // ni x nj row-major distances; a diagonal tile (i0 == j0) is full and symmetric
};

class DistanceTiles {
 public:
  // keep_mask: nullptr or one byte per row of the batch (nonzero = kept); dropped rows are removed.
  fp_status prepare(const std::vector<detail::LayerSpan>& layers, const std::vector<const float*>& layer_rows,
                    int metric, const uint8_t* keep_mask, std::string& error);

  // Calls consume(tile) for every tile, from several threads at once (tiles never overlap).
  void for_each_tile(const std::function<void(const Tile&)>& consume) const;

  // Rows of layer l that take part (original row indices within the layer), in order.
  const std::vector<int64_t>& kept_rows(int64_t layer) const { return layers_[layer].kept; }

 private:
  struct Layer {
    const float* rows;       // n x d rows the distances are taken between (compacted / unit-scaled)
    const float* originals;  // the same rows unscaled (differs from rows only for cosine)
    int64_t n, d;
    int64_t first;  // index of row 0 in sq_norms_ and scales_
    std::vector<int64_t> kept;
  };
  void compute_tile(const Layer& layer, int64_t i0, int64_t ni, int64_t j0, int64_t nj, float* out) const;
  float direct_distance(const Layer& layer, int64_t i, int64_t j) const;

  int metric_ = 0;
  std::vector<Layer> layers_;
  std::vector<float> compacted_;  // kept rows, when a mask drops some
  std::vector<float> unit_rows_;  // cosine: rows scaled to unit length
  std::vector<float> sq_norms_;   // |rows_i|^2 per prepared row, for the Gram form
  std::vector<double> scales_;    // cosine: 1 / |original row| (0 for a zero row)
};

}  // namespace FP_CAP
}  // namespace cpu
}  // namespace fp

#endif  // FASTPRUNE_CPU_DISTANCE_TILES_H
