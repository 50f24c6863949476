// Distances of one kTile x kTile tile pair, shared by the pairwise and gm kernels. Distances come
// directly from the differences a_k - b_k (no Gram product), so near-duplicate filters keep full
// relative precision.
#ifndef FASTPRUNE_CUDA_TILE_CUH
#define FASTPRUNE_CUDA_TILE_CUH

#include <stdint.h>

#include "common.cuh"
#include "fastprune/detail/distance.h"

namespace fp {
namespace cuda {

constexpr int kChunk = 32;           // columns of D staged in shared memory at a time
constexpr int kThreadsPerSide = 16;  // threads form a 16 x 16 grid over the tile
constexpr int kTileThreads = kThreadsPerSide * kThreadsPerSide;
constexpr int kMicro = kTile / kThreadsPerSide;  // each thread owns kMicro x kMicro pairs
static_assert(kTile % kThreadsPerSide == 0, "tile must split evenly over the thread grid");

// Compile-time form of a metric's arithmetic: accumulator type, term kind, whether rows are scaled to
// unit length first. l1/l2/sqeuclidean accumulate in float (a difference of near-equal floats is exact
// by Sterbenz); cosine accumulates in double because its scaled terms are not exact in float.
template <typename Acc, detail::Accumulation kAcc, bool kUnit>
struct MetricKind {
  using T = Acc;
  static constexpr detail::Accumulation kAccumulation = kAcc;
  static constexpr bool kUnitRows = kUnit;
};
using SquareKind = MetricKind<float, detail::Accumulation::kSquare, false>;
using AbsKind = MetricKind<float, detail::Accumulation::kAbs, false>;
using CosineKind = MetricKind<double, detail::Accumulation::kSquare, true>;

// Calls launch(Kind{}) with the kind of `metric` (already validated by the C API).
template <class Launch>
void dispatch_metric(int metric, Launch&& launch) {
  if (detail::metric_normalises_rows(metric)) {
    launch(CosineKind{});
  } else if (detail::accumulation_of(metric) == detail::Accumulation::kAbs) {
    launch(AbsKind{});
  } else {
    launch(SquareKind{});
  }
}

struct TileShared {
  // Staged chunks, stored [k][row] so the inner loop reads a row's weight at fixed k; the +1 pad keeps
  // the transposing store (one warp = one row, 32 consecutive k) free of bank conflicts.
  float a[kChunk][kTile + 1];  // rows i of tile ti
  float b[kChunk][kTile + 1];  // rows j of tile tj
  // Result: dist[li][lj] = d(i0 + li, j0 + lj); 0 outside the layer and on the diagonal.
  float dist[kTile][kTile + 1];
};

// Stages columns [k0, k0 + kChunk) of up to kTile rows. Missing rows/columns read as 0: a zero pair
// contributes 0 to every accumulation (also after cosine scaling), so no special cases downstream.
__device__ __forceinline__ void stage_chunk(float (&dst)[kChunk][kTile + 1], const float* rows,
                                            int64_t valid_rows, int64_t dims, int64_t k0) {
  for (int e = threadIdx.x; e < kTile * kChunk; e += kTileThreads) {
    const int r = e / kChunk;  // consecutive threads read consecutive weights of one row: coalesced
    const int k = e % kChunk;
    dst[k][r] = (r < valid_rows && k0 + k < dims) ? rows[r * dims + k0 + k] : 0.0f;
  }
}

template <class K>
__device__ __forceinline__ typename K::T scaled(float x, typename K::T scale) {
  if constexpr (K::kUnitRows) {
    return static_cast<typename K::T>(x) * scale;
  } else {
    return x;
  }
}

// Fills sh.dist for `tile` of layer `span` and ends with __syncthreads(). Must be called by all
// kTileThreads threads of the block. `scales` (cosine only) holds the per-row unit scales.
template <class K>
__device__ void compute_tile(const TileEntry& tile, const detail::LayerSpan& span, const float* data,
                             const double* scales, int metric, TileShared& sh) {
  using T = typename K::T;
  const int tx = threadIdx.x % kThreadsPerSide;
  const int ty = threadIdx.x / kThreadsPerSide;
  const int64_t i0 = static_cast<int64_t>(tile.ti) * kTile;
  const int64_t j0 = static_cast<int64_t>(tile.tj) * kTile;

  // Thread (ty, tx) owns local rows ty + m * 16 and columns tx + m * 16: strided so that a warp reads
  // 16 consecutive shared-memory words of `b` and a broadcast of `a`.
  T scale_i[kMicro], scale_j[kMicro];
#pragma unroll
  for (int m = 0; m < kMicro; ++m) {
    if constexpr (K::kUnitRows) {
      const int64_t i = i0 + ty + m * kThreadsPerSide;
      const int64_t j = j0 + tx + m * kThreadsPerSide;
      scale_i[m] = i < span.rows ? scales[span.row_offset + i] : 0.0;
      scale_j[m] = j < span.rows ? scales[span.row_offset + j] : 0.0;
    } else {
      scale_i[m] = scale_j[m] = T(1);
    }
  }

  const float* rows_i = data + span.data_offset + i0 * span.dims;
  const float* rows_j = data + span.data_offset + j0 * span.dims;
  T acc[kMicro][kMicro] = {};
  for (int64_t k0 = 0; k0 < span.dims; k0 += kChunk) {
    stage_chunk(sh.a, rows_i, span.rows - i0, span.dims, k0);
    stage_chunk(sh.b, rows_j, span.rows - j0, span.dims, k0);
    __syncthreads();
    // Two-level sum (per chunk, then across chunks): float rounding grows like (kChunk + D / kChunk)
    // ulps instead of D ulps, which keeps D = 4608 well inside the 1e-4 tolerance.
    T part[kMicro][kMicro] = {};
#pragma unroll 8
    for (int k = 0; k < kChunk; ++k) {
      T a[kMicro], b[kMicro];
#pragma unroll
      for (int m = 0; m < kMicro; ++m) {
        a[m] = scaled<K>(sh.a[k][ty + m * kThreadsPerSide], scale_i[m]);
        b[m] = scaled<K>(sh.b[k][tx + m * kThreadsPerSide], scale_j[m]);
      }
#pragma unroll
      for (int r = 0; r < kMicro; ++r) {
#pragma unroll
        for (int c = 0; c < kMicro; ++c) {
          part[r][c] += detail::accumulate_term<T>(K::kAccumulation, a[r], b[c]);
        }
      }
    }
#pragma unroll
    for (int r = 0; r < kMicro; ++r) {
#pragma unroll
      for (int c = 0; c < kMicro; ++c) acc[r][c] += part[r][c];
    }
    __syncthreads();  // the next chunk overwrites sh.a and sh.b
  }

  // On a diagonal tile only pairs li < lj are kept and mirrored, so the tile is exactly symmetric (FMA
  // contraction could otherwise make d(i, j) and d(j, i) differ in the last bit) and each unordered
  // pair is computed once.
  const bool diagonal = tile.ti == tile.tj;
#pragma unroll
  for (int r = 0; r < kMicro; ++r) {
#pragma unroll
    for (int c = 0; c < kMicro; ++c) {
      const int li = ty + r * kThreadsPerSide;
      const int lj = tx + c * kThreadsPerSide;
      const bool inside = i0 + li < span.rows && j0 + lj < span.rows;
      // Cosine of a zero row is defined as distance 1 (its scale is 0, which alone would give 0.5).
      const bool zero_row = K::kUnitRows && (scale_i[r] == T(0) || scale_j[c] == T(0));
      const float d =
          inside ? static_cast<float>(detail::finish_pair_distance<T>(metric, acc[r][c], zero_row)) : 0.0f;
      if (!diagonal) {
        sh.dist[li][lj] = d;
      } else if (li < lj) {
        sh.dist[li][lj] = d;
        sh.dist[lj][li] = d;
      } else if (li == lj) {
        sh.dist[li][li] = 0.0f;
      }
    }
  }
  __syncthreads();
}

}  // namespace cuda
}  // namespace fp

#endif  // FASTPRUNE_CUDA_TILE_CUH
