// gm_scores on the CPU: g_j = sum_{j' kept} d(F_j, F_j') without forming N x N.
//
// Each tile (I, J) contributes its row sums to the rows of I and, when J != I, its column sums to the
// rows of J. To stay deterministic without atomics, a tile writes those sums into fixed slots
// partial[row][other tile] and each score adds its slots in ascending tile order afterwards.
#include <limits>

#include "cpu/kernels/capability.h"
#include "cpu/kernels/cpu_ops.h"
#include "cpu/kernels/distance_tiles.h"

namespace fp {
namespace cpu {
inline namespace FP_CAP {

namespace {

// sum_j x_j in double over kSumLanes interleaved partial sums, added in a fixed order at the end: the
// latency of one dependent add per element was a fifth of gm_scores on MobileNetV2's layers.
double row_sum(const float* x, int64_t n) {
  constexpr int kSumLanes = 8;
  double lanes[kSumLanes] = {};
  int64_t j = 0;
  for (; j + kSumLanes <= n; j += kSumLanes)
    for (int l = 0; l < kSumLanes; ++l) lanes[l] += x[j + l];
  for (int l = 0; j < n; ++j, ++l) lanes[l] += x[j];
  double sum = 0.0;
  for (int l = 0; l < kSumLanes; ++l) sum += lanes[l];
  return sum;
}

}  // namespace

fp_status gm_scores(const std::vector<detail::LayerSpan>& layers, const std::vector<const float*>& layer_rows,
                    int metric, const uint8_t* keep_mask, float* out, std::string& error) {
  DistanceTiles tiles;
  fp_status status = tiles.prepare(layers, layer_rows, metric, keep_mask, error);
  if (status != FP_OK) return status;

  // partial[first[l] + p * tiles_in(l) + t]: sum of distances of kept row p of layer l to tile t.
  std::vector<int64_t> first(layers.size()), tiles_in(layers.size());
  int64_t total = 0;
  for (size_t l = 0; l < layers.size(); ++l) {
    const int64_t n = static_cast<int64_t>(tiles.kept_rows(l).size());
    tiles_in[l] = (n + kTileRows - 1) / kTileRows;
    first[l] = total;
    total += n * tiles_in[l];
  }
  std::vector<double> partial(static_cast<size_t>(total), 0.0);

  tiles.for_each_tile([&](const Tile& tile) {
    double* p = partial.data() + first[tile.layer];
    const int64_t stride = tiles_in[tile.layer];
    const int64_t ti = tile.i0 / kTileRows, tj = tile.j0 / kTileRows;
    for (int64_t i = 0; i < tile.ni; ++i)
      p[(tile.i0 + i) * stride + tj] = row_sum(tile.dist + i * tile.nj, tile.nj);
    if (ti == tj) return;
    // Column sums row by row, every column in its own lane: the same order as one column at a time, without
    // its strided walk and one dependent add per element.
    thread_local std::vector<double> column_sums;
    column_sums.assign(static_cast<size_t>(tile.nj), 0.0);
    double* c = column_sums.data();
    for (int64_t i = 0; i < tile.ni; ++i) {
      const float* row = tile.dist + i * tile.nj;
      for (int64_t j = 0; j < tile.nj; ++j) c[j] += row[j];
    }
    for (int64_t j = 0; j < tile.nj; ++j) p[(tile.j0 + j) * stride + ti] = c[j];
  });

  for (size_t l = 0; l < layers.size(); ++l) {
    float* scores = out + layers[l].row_offset;
    for (int64_t r = 0; r < layers[l].rows; ++r) scores[r] = std::numeric_limits<float>::infinity();
    const std::vector<int64_t>& kept = tiles.kept_rows(l);
    for (size_t p = 0; p < kept.size(); ++p) {
      double sum = 0.0;
      for (int64_t t = 0; t < tiles_in[l]; ++t) sum += partial[first[l] + p * tiles_in[l] + t];
      scores[kept[p]] = static_cast<float>(sum);
    }
  }
  return FP_OK;
}

}  // namespace FP_CAP
}  // namespace cpu
}  // namespace fp
