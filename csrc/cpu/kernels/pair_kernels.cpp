// Pair reductions over rows, the CPU's inner loops, written with GCC vector extensions so that AVX-512,
// AVX2 or SSE code comes from one source.
//
// pair_tile is laid out like a GEMM micro-kernel: the b rows are packed into panels of kPanel columns
// stored k-major, so one k step broadcasts a_ik for kRows rows and updates kRows x kPanel outputs with
// whole-vector operations, and no horizontal sums are needed. Each output is a sequential sum over k in
// one vector lane: the same operations wherever the pair sits in the tile, so results do not depend on
// the tiling or on the thread that computes the tile.
#include "cpu/kernels/pair_kernels.h"

#include <string.h>

#include <algorithm>
#include <vector>

#include "cpu/kernels/capability.h"

namespace fp {
namespace cpu {
inline namespace FP_CAP {

namespace {

constexpr int kLanes = kFloatLanes;  // one register of the capability
typedef float Vec __attribute__((vector_size(kLanes * sizeof(float))));
// a rows per micro-kernel: 6 x kVecs (<= 2) accumulators + kVecs panel loads + 1 broadcast fit 16 registers
// (BLIS: a 6 x 16 sgemm tile of 12 ymm accumulators on Haswell)
constexpr int kRows = 6;

inline Vec load(const float* p) {
  Vec v;
  memcpy(&v, p, sizeof(v));
  return v;
}

template <PairOp op, typename V, typename S>
inline V step(V acc, S a, V b) {
  if (op == PairOp::kDot) return acc + a * b;
  V diff = a - b;
  if (op == PairOp::kSquaredDifference) return acc + diff * diff;
  return acc + (diff < 0 ? -diff : diff);  // kAbsDifference
}

// panel[k * kPanel + c] = b[(j0 + c) * d + k] for c < cols, 0 beyond: k-major, zero-padded.
template <int kPanel>
void pack_panel(const float* b, int64_t j0, int64_t cols, int64_t d, float* panel) {
  // k outer: each k writes one contiguous panel row and reads one float from each of `cols` row
  // streams, which stays in cache; c outer would scatter writes over d cache lines per column.
  const float* rows = b + j0 * d;
  for (int64_t k = 0; k < d; ++k) {
    float* out = panel + k * kPanel;
    int64_t c = 0;
    for (; c < cols; ++c) out[c] = rows[c * d + k];
    for (; c < kPanel; ++c) out[c] = 0.0f;
  }
}

// out[r * ld + c] = op-sum over k of (a_r, panel column c) for r < R, c < cols.
template <PairOp op, int kVecs, int R>
void micro_kernel(const float* a, int64_t d, const float* panel, int64_t cols, float* out, int64_t ld) {
  constexpr int kPanel = kVecs * kLanes;
  Vec acc[R][kVecs];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < kVecs; ++v) acc[r][v] = Vec{};
  for (int64_t k = 0; k < d; ++k) {
    Vec b[kVecs];
    for (int v = 0; v < kVecs; ++v) b[v] = load(panel + k * kPanel + v * kLanes);
    for (int r = 0; r < R; ++r) {
      const float ar = a[r * d + k];
      for (int v = 0; v < kVecs; ++v) acc[r][v] = step<op>(acc[r][v], ar, b[v]);
    }
  }
  for (int r = 0; r < R; ++r) {
    float row[kPanel];
    memcpy(row, acc[r], sizeof(row));
    std::copy(row, row + cols, out + r * ld);
  }
}

template <PairOp op, int kVecs>
void rows_against_panel(const float* a, int64_t rows, int64_t d, const float* panel, int64_t cols, float* out,
                        int64_t ld) {
  switch (rows) {
    case 1:
      return micro_kernel<op, kVecs, 1>(a, d, panel, cols, out, ld);
    case 2:
      return micro_kernel<op, kVecs, 2>(a, d, panel, cols, out, ld);
    case 3:
      return micro_kernel<op, kVecs, 3>(a, d, panel, cols, out, ld);
    case 4:
      return micro_kernel<op, kVecs, 4>(a, d, panel, cols, out, ld);
    case 5:
      return micro_kernel<op, kVecs, 5>(a, d, panel, cols, out, ld);
    default:
      return micro_kernel<op, kVecs, kRows>(a, d, panel, cols, out, ld);
  }
}

template <PairOp op, int kVecs>
void pair_tile_impl(const float* a, int64_t ni, const float* b, int64_t nj, int64_t d, bool symmetric,
                    float* out) {
  constexpr int kPanel = kVecs * kLanes;
  thread_local std::vector<float> panel;
  panel.resize(static_cast<size_t>(d * kPanel));
  for (int64_t j0 = 0; j0 < nj; j0 += kPanel) {
    const int64_t cols = std::min<int64_t>(kPanel, nj - j0);
    pack_panel<kPanel>(b, j0, cols, d, panel.data());
    // Symmetric tiles need j >= i only: rows past the panel's last column have nothing to do.
    const int64_t row_end = symmetric ? std::min(ni, j0 + cols) : ni;
    for (int64_t i0 = 0; i0 < row_end; i0 += kRows) {
      rows_against_panel<op, kVecs>(a + i0 * d, std::min<int64_t>(kRows, row_end - i0), d, panel.data(), cols,
                                    out + i0 * nj + j0, nj);
    }
  }
}

// One pair: kLanes partial sums over k, a fixed tree over the lanes, then the scalar tail.
template <PairOp op>
float pair_reduce_impl(const float* a, const float* b, int64_t d) {
  Vec acc = Vec{};
  const int64_t vector_end = d - d % kLanes;
  for (int64_t k = 0; k < vector_end; k += kLanes) acc = step<op>(acc, load(a + k), load(b + k));
  float lanes[kLanes];
  memcpy(lanes, &acc, sizeof(acc));
  for (int width = kLanes / 2; width > 0; width /= 2)
    for (int l = 0; l < width; ++l) lanes[l] += lanes[l + width];
  float tail = 0.0f;
  for (int64_t k = vector_end; k < d; ++k) tail = step<op>(tail, a[k], b[k]);
  return lanes[0] + tail;
}

}  // namespace

template <PairOp op>
void pair_tile_dispatch(const float* a, int64_t ni, const float* b, int64_t nj, int64_t d, bool symmetric,
                        float* out) {
  // Narrow panels waste less on small and symmetric tiles; wide ones reuse each broadcast more.
  if (nj <= 64) return pair_tile_impl<op, 1>(a, ni, b, nj, d, symmetric, out);
  pair_tile_impl<op, 2>(a, ni, b, nj, d, symmetric, out);
}

void pair_tile(PairOp op, const float* a, int64_t ni, const float* b, int64_t nj, int64_t d, bool symmetric,
               float* out) {
  switch (op) {
    case PairOp::kDot:
      return pair_tile_dispatch<PairOp::kDot>(a, ni, b, nj, d, symmetric, out);
    case PairOp::kAbsDifference:
      return pair_tile_dispatch<PairOp::kAbsDifference>(a, ni, b, nj, d, symmetric, out);
    case PairOp::kSquaredDifference:
      return pair_tile_dispatch<PairOp::kSquaredDifference>(a, ni, b, nj, d, symmetric, out);
  }
}

double row_sq_norm(const float* x, int64_t d) {
  // double lanes: the cosine scales 1 / |x| must be exact to ~1e-16 for near-parallel rows.
  typedef double DVec __attribute__((vector_size(8 * sizeof(double))));
  typedef float FVec8 __attribute__((vector_size(8 * sizeof(float))));
  DVec acc = DVec{};
  int64_t k = 0;
  for (; k + 8 <= d; k += 8) {
    FVec8 f;
    memcpy(&f, x + k, sizeof(f));
    const DVec v = __builtin_convertvector(f, DVec);
    acc += v * v;
  }
  double lanes[8];
  memcpy(lanes, &acc, sizeof(acc));
  double sum =
      ((lanes[0] + lanes[4]) + (lanes[2] + lanes[6])) + ((lanes[1] + lanes[5]) + (lanes[3] + lanes[7]));
  for (; k < d; ++k) sum += (double)x[k] * x[k];
  return sum;
}

float pair_reduce(PairOp op, const float* a, const float* b, int64_t d) {
  switch (op) {
    case PairOp::kDot:
      return pair_reduce_impl<PairOp::kDot>(a, b, d);
    case PairOp::kAbsDifference:
      return pair_reduce_impl<PairOp::kAbsDifference>(a, b, d);
    case PairOp::kSquaredDifference:
      break;
  }
  return pair_reduce_impl<PairOp::kSquaredDifference>(a, b, d);
}

}  // namespace FP_CAP
}  // namespace cpu
}  // namespace fp
