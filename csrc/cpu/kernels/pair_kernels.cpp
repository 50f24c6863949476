// Pair reductions over rows, the CPU's inner loops, written with GCC vector extensions so that AVX-512,
// AVX2 or SSE code comes from one source.
//
// Wide tiles (more than 64 columns) are laid out like a GEMM micro-kernel: the b rows are packed into
// panels of kPanel columns stored k-major, so one k step broadcasts a_ik for kRows rows and updates kRows x
// kPanel outputs with whole-vector operations, and no horizontal sums are needed; each output is a
// sequential sum over k in one vector lane. Narrow tiles take dot products along k (dot_tile: no packing),
// each pair exactly as pair_reduce computes it. Either way a pair's operations do not depend on where it
// sits in the tile or on the thread computing the tile, so results depend on the layer's shape alone.
#include "cpu/kernels/pair_kernels.h"

#include <string.h>

#include <algorithm>
#include <type_traits>
#include <utility>
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

// Calls f(integral_constant R, integral_constant C) for runtime 1 <= r <= MaxR, 1 <= c <= MaxC.
template <int MaxR, int MaxC, class F>
inline void with_shape(int64_t r, int64_t c, F&& f) {
  if constexpr (MaxR > 1) {
    if (r < MaxR) return with_shape<MaxR - 1, MaxC>(r, c, std::forward<F>(f));
  }
  if constexpr (MaxC > 1) {
    if (c < MaxC) return with_shape<MaxR, MaxC - 1>(r, c, std::forward<F>(f));
  }
  f(std::integral_constant<int, MaxR>{}, std::integral_constant<int, MaxC>{});
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

// micro_kernel for a runtime row count 1 <= rows <= R (R = kRows at the top).
template <PairOp op, int kVecs, int R = kRows>
void rows_against_panel(const float* a, int64_t rows, int64_t d, const float* panel, int64_t cols, float* out,
                        int64_t ld) {
  if constexpr (R > 1) {
    if (rows < R) return rows_against_panel<op, kVecs, R - 1>(a, rows, d, panel, cols, out, ld);
  }
  micro_kernel<op, kVecs, R>(a, d, panel, cols, out, ld);
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

// The lane sums of one pair's vector accumulator in a fixed tree, plus the scalar tail over k >= vector_end.
template <PairOp op>
inline float finish_pair(Vec acc, const float* a, const float* b, int64_t vector_end, int64_t d) {
  float lanes[kLanes];
  memcpy(lanes, &acc, sizeof(acc));
  for (int width = kLanes / 2; width > 0; width /= 2)
    for (int l = 0; l < width; ++l) lanes[l] += lanes[l + width];
  float tail = 0.0f;
  for (int64_t k = vector_end; k < d; ++k) tail = step<op>(tail, a[k], b[k]);
  return lanes[0] + tail;
}

// One pair: kLanes partial sums over k, a fixed tree over the lanes, then the scalar tail.
template <PairOp op>
float pair_reduce_impl(const float* a, const float* b, int64_t d) {
  Vec acc = Vec{};
  const int64_t vector_end = d - d % kLanes;
  for (int64_t k = 0; k < vector_end; k += kLanes) acc = step<op>(acc, load(a + k), load(b + k));
  return finish_pair<op>(acc, a, b, vector_end, d);
}

// Narrow tiles (the layers of a CIFAR ResNet: 16-64 filters) by dot products along k instead of packed
// panels: packing transposes d x nj floats for every panel, about as many operations as the FMAs of a
// 64-filter layer. R rows x C columns of vector accumulators, each loaded row vector reused C (R) times;
// every pair then takes pair_reduce_impl's arithmetic exactly (same lanes, tree and tail), wherever it
// lies. Tile: 4 x 5 of 32 zmm registers (20 accumulators + 9 loads), 3 x 4 of 16 (12 + 7).
constexpr int kDotRows = kVectorRegisters >= 32 ? 4 : 3;
constexpr int kDotCols = kVectorRegisters >= 32 ? 5 : 4;

template <PairOp op, int R, int C>
void dot_block(const float* a, const float* b, int64_t d, float* out, int64_t ld) {
  Vec acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) acc[r][c] = Vec{};
  const int64_t vector_end = d - d % kLanes;
  for (int64_t k = 0; k < vector_end; k += kLanes) {
    Vec av[R], bv[C];
    for (int r = 0; r < R; ++r) av[r] = load(a + r * d + k);
    for (int c = 0; c < C; ++c) bv[c] = load(b + c * d + k);
    for (int r = 0; r < R; ++r)
      for (int c = 0; c < C; ++c) acc[r][c] = step<op>(acc[r][c], av[r], bv[c]);
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c)
      out[r * ld + c] = finish_pair<op>(acc[r][c], a + r * d, b + c * d, vector_end, d);
}

template <PairOp op>
void dot_tile(const float* a, int64_t ni, const float* b, int64_t nj, int64_t d, bool symmetric, float* out) {
  for (int64_t i0 = 0; i0 < ni; i0 += kDotRows) {
    const int64_t rows = std::min<int64_t>(kDotRows, ni - i0);
    // Symmetric tiles need j >= i only: column blocks wholly left of the row block are skipped.
    for (int64_t j0 = symmetric ? i0 / kDotCols * kDotCols : 0; j0 < nj; j0 += kDotCols) {
      const int64_t cols = std::min<int64_t>(kDotCols, nj - j0);
      with_shape<kDotRows, kDotCols>(rows, cols, [&](auto r, auto c) {
        dot_block<op, decltype(r)::value, decltype(c)::value>(a + i0 * d, b + j0 * d, d, out + i0 * nj + j0,
                                                              nj);
      });
    }
  }
}

}  // namespace

// Panel width of wide tiles in vectors, on every capability: kRows x 2 accumulators, 2 panel loads and a
// broadcast are 15 registers, within the 16 of AVX2 and SSE2 (32 floats a panel with AVX-512, 16 with AVX2).
constexpr int kWideVecs = 2;

template <PairOp op>
void pair_tile_dispatch(const float* a, int64_t ni, const float* b, int64_t nj, int64_t d, bool symmetric,
                        float* out) {
  // Narrow tiles by dot products (no packing); wide ones by panels, which reuse each broadcast more.
  if (nj <= 64) return dot_tile<op>(a, ni, b, nj, d, symmetric, out);
  pair_tile_impl<op, kWideVecs>(a, ni, b, nj, d, symmetric, out);
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
  // double lanes: the cosine scales 1 / |x| must be exact to ~1e-16 for near-parallel rows. Four
  // accumulators of one register each: with one, every step waited for the previous add (on AVX2 the
  // 8-double vector of earlier versions took 30% of ResNet-56's gm_scores).
  constexpr int kDoubles = kVectorBytes / static_cast<int>(sizeof(double));
  typedef double DVec __attribute__((vector_size(kDoubles * sizeof(double))));
  typedef float FVec __attribute__((vector_size(kDoubles * sizeof(float))));
  constexpr int kAcc = 4;
  DVec acc[kAcc] = {};
  int64_t k = 0;
  for (; k + kAcc * kDoubles <= d; k += kAcc * kDoubles)
    for (int u = 0; u < kAcc; ++u) {
      FVec f;
      memcpy(&f, x + k + u * kDoubles, sizeof(f));
      const DVec v = __builtin_convertvector(f, DVec);
      acc[u] += v * v;
    }
  const DVec total = (acc[0] + acc[1]) + (acc[2] + acc[3]);
  double lanes[kDoubles];
  memcpy(lanes, &total, sizeof(total));
  for (int width = kDoubles / 2; width > 0; width /= 2)
    for (int l = 0; l < width; ++l) lanes[l] += lanes[l + width];
  double sum = lanes[0];
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
