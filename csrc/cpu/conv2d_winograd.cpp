// Winograd F(2x2, 3x3) (Lavin & Gray, 2016) for dense blocks of stride-1, undilated 3x3 convolutions: the
// forward pass, and through it the input gradient of such layers (a stride-1 convolution too, see
// masked_conv2d_backward.cpp). Each 2x2 output tile costs 16 multiply-adds per (filter, channel) instead of
// 36: with U = G g G^T (4x4, per filter and channel) and V = B^T d B (4x4, per channel and tile, d the
// tile's 4x4 input patch),
//     Y = A^T [ sum_j U[f][j] (.) V[j] ] A        (2x2 outputs of filter f, (.) elementwise)
//     B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1],
//     A^T = [1 1 1 0; 0 1 -1 -1].
// Per image: the input transform writes V[c][j][t] (component c = 4 i + k of the 4x4, channel j, tile t =
// ty * TW + tx, all tiles of the image in a row), the sum over channels is 16 small GEMMs
//     M[c][f][t] = sum_j U[c][f][j] V[c][j][t]
// run by the blocked convolution's microkernel (conv2d_blocked_plan.h: offsets j * Tr into V[c]), and the
// output transform writes y. Every output is summed in a fixed order by one thread: results do not depend
// on the thread count. Measured on ResNet-56 shapes (see conv2d_blocked.h for the figures).
#include <algorithm>
#include <cstdint>
#include <vector>

#include "cpu/conv2d_blocked.h"
#include "cpu/conv2d_blocked_plan.h"
#include "cpu/vector_gather.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace fp {
namespace cpu {
namespace blocked {
namespace {

constexpr int64_t kTile = 16;  // floats of the 4x4 transformed tile: GEMMs per image

struct Winograd {
  const ConvGeometry& g;
  const DenseBlock& block;
  int64_t TH, TW, T, Tv;  // tile rows, tile columns, tiles (T = TH TW), T rounded up to whole vectors
  // Floats per channel row of V: Tv and one vector, so that the input transform stores whole vectors (a
  // tile row's tail spills into the next row, written after it, or into this padding): masked partial
  // stores made the transform ~2x slower (8 tiles a row on a 16 x 16 map).
  int64_t Tr;
  // Floats from one component of V (M) to the next: C Tv (F Tv) and a cache line, so that the 16
  // components' rows do not all fall into one L1 set (C Tv floats are often a multiple of 4 KB: the
  // transforms, which touch all 16 at once, ran 3-5x slower).
  int64_t v_stride, m_stride;
  int64_t rows;   // rows of the padded input the tiles read: 2 TH + 2
  int64_t half;   // floats per staged half-row (even or odd columns): TW + 1 rounded up to a vector
  Split split;    // filter blocks of the GEMMs
  int64_t width;  // tile vectors per GEMM call
  std::vector<int64_t> offsets;  // channel j of V[c] at j * Tr
  std::vector<float> U;          // [c][f][j]
  VectorGather stage;            // one channel's padded rows, split into even and odd columns

  Winograd(const ConvGeometry& geometry, const DenseBlock& b)
      : g(geometry),
        block(b),
        TH((g.Ho + 1) / 2),
        TW((g.Wo + 1) / 2),
        T(TH * TW),
        Tv((T + kLanes - 1) / kLanes * kLanes),
        Tr(Tv + kLanes),
        v_stride(b.n_channels * Tr + kLanes),
        m_stride(b.n_filters * Tv + kLanes),
        rows(2 * TH + 2),
        half((TW + 1 + kLanes - 1) / kLanes * kLanes),
        split(b.n_filters, kVectors),
        width(std::min<int64_t>(split.width, Tv / kLanes)),
        offsets(static_cast<size_t>(b.n_channels)),
        U(static_cast<size_t>(kTile * b.n_filters * b.n_channels)),
        // Staged channel: [parity][r][k] = x_pad[r][2 k + parity], zero outside the input.
        stage(2 * rows * half, [&](int64_t p) -> int64_t {
          const int64_t parity = p / (rows * half), r = p / half % rows, k = p % half;
          const int64_t yi = r - geometry.ph, xi = 2 * k + parity - geometry.pw;
          return yi >= 0 && yi < geometry.H && xi >= 0 && xi < geometry.W ? yi * geometry.W + xi : -1;
        }) {
    for (int64_t j = 0; j < b.n_channels; ++j) offsets[static_cast<size_t>(j)] = j * Tr;
    const int64_t F = b.n_filters, C = b.n_channels;
    for (int64_t f = 0; f < F; ++f)
      for (int64_t j = 0; j < C; ++j) {
        const float* w = b.weights + (f * C + j) * 9;
        float gg[4][3];  // G g
        for (int64_t col = 0; col < 3; ++col) {
          const float a = w[col], m = w[3 + col], c = w[6 + col];
          gg[0][col] = a;
          gg[1][col] = 0.5f * (a + m + c);
          gg[2][col] = 0.5f * (a - m + c);
          gg[3][col] = c;
        }
        for (int64_t i = 0; i < 4; ++i) {  // (G g) G^T
          const float a = gg[i][0], m = gg[i][1], c = gg[i][2];
          const float u[4] = {a, 0.5f * (a + m + c), 0.5f * (a - m + c), c};
          for (int64_t k = 0; k < 4; ++k) U[static_cast<size_t>(((i * 4 + k) * F + f) * C + j)] = u[k];
        }
      }
  }

  size_t v_floats() const { return static_cast<size_t>(kTile * v_stride); }
  size_t m_floats() const { return static_cast<size_t>(kTile * m_stride); }
  size_t staged_floats() const { return static_cast<size_t>(2 * rows * half + kLanes); }

  // V[.][j][.] of one image from input channel xc (H x W), via the staged even/odd half-rows `s`.
  void transform_input(const float* xc, int64_t j, float* s, float* V) const {
    stage(xc, s);
    const float* even = s;
    const float* odd = s + rows * half;
    for (int64_t ty = 0; ty < TH; ++ty)
      for (int64_t k0 = 0; k0 < TW; k0 += kLanes) {
        // B^T d: rows 2 ty .. 2 ty + 3 combined, at columns 2 k (e), 2 k + 1 (o), 2 k + 2 (e1), 2 k + 3 (o1).
        vec e[4], o[4], e1[4], o1[4];
        for (int64_t r = 0; r < 4; ++r) {
          const int64_t at = (2 * ty + r) * half + k0;
          e[r] = load(even + at), o[r] = load(odd + at), e1[r] = load(even + at + 1),
          o1[r] = load(odd + at + 1);
        }
        const auto rows_bt = [](const vec* d, vec* out) {
          out[0] = d[0] - d[2], out[1] = d[1] + d[2], out[2] = d[2] - d[1], out[3] = d[1] - d[3];
        };
        vec we[4], wo[4], we1[4], wo1[4];
        rows_bt(e, we), rows_bt(o, wo), rows_bt(e1, we1), rows_bt(o1, wo1);
        const int64_t t = ty * TW + k0;
        for (int64_t i = 0; i < 4; ++i) {  // (B^T d) B: the columns combined
          const vec v[4] = {we[i] - we1[i], wo[i] + we1[i], we1[i] - wo[i], wo[i] - wo1[i]};
          for (int64_t k = 0; k < 4; ++k)
            std::memcpy(V + (i * 4 + k) * v_stride + j * Tr + t, &v[k], sizeof v[k]);
        }
      }
  }

  // Component c of M = U V.
  void multiply(int64_t c, const float* V, float* M) const {
    const int64_t F = block.n_filters, C = block.n_channels;
    for (int64_t t0 = 0; t0 < Tv; t0 += width * kLanes)
      for (int64_t b = 0; b < split.blocks; ++b) {
        const int64_t f0 = b * split.size, fb = std::min<int64_t>(F - f0, split.size);
        float* m[kFilters];
        for (int64_t f = 0; f < fb; ++f) m[f] = M + c * m_stride + (f0 + f) * Tv + t0;
        const int64_t lanes = std::min<int64_t>(Tv - t0, width * kLanes);
        with_block(fb, lanes / kLanes, [&](auto nf, auto nv) {
          microkernel<decltype(nf)::value, decltype(nv)::value>(V + c * v_stride + t0, offsets.data(),
                                                                U.data() + (c * F + f0) * C, C, nullptr,
                                                                false, false, m, lanes);
        });
      }
  }

  // row[0, cols) = the columns 2 l (col0[l]) and 2 l + 1 (col1[l]) interleaved, plus bias (+ the residual
  // already in row), then ReLU if the block asks.
  void store_row(float* row, vec col0, vec col1, float bias, int64_t cols) const {
#ifdef __AVX512F__
    __m512 c0, c1;
    std::memcpy(&c0, &col0, sizeof c0);
    std::memcpy(&c1, &col1, sizeof c1);
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    for (int64_t h = 0; h < 2 && h * kLanes < cols; ++h) {
      const __mmask16 keep = lane_mask(0, cols - h * kLanes);
      __m512 v = _mm512_add_ps(_mm512_permutex2var_ps(c0, h ? hi : lo, c1), _mm512_set1_ps(bias));
      if (block.accumulate) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(keep, row + h * kLanes));
      if (block.relu) v = _mm512_max_ps(v, _mm512_setzero_ps());
      _mm512_mask_storeu_ps(row + h * kLanes, keep, v);
    }
#else
    for (int64_t col = 0; col < cols; ++col) {
      float v = (col & 1 ? col1 : col0)[col >> 1] + bias;
      if (block.accumulate) v += row[col];
      row[col] = block.relu ? std::max(v, 0.0f) : v;
    }
#endif
  }

  // The y plane of the block's filter f from M: A^T M A, plus bias, (+ the residual in y), ReLU.
  void transform_output(int64_t f, const float* M, float* y_n) const {
    float* plane = y_n + block.filters[f] * g.Ho * g.Wo;
    const float bias = block.bias ? block.bias[f] : 0.0f;
    for (int64_t ty = 0; ty < TH; ++ty)
      for (int64_t k0 = 0; k0 < TW; k0 += kLanes) {
        const int64_t t = ty * TW + k0, lanes = std::min<int64_t>(kLanes, TW - k0);
        vec s[4][2];  // M A: per row i, the two output columns
        for (int64_t i = 0; i < 4; ++i) {
          vec m[4];
          for (int64_t k = 0; k < 4; ++k) m[k] = load(M + (i * 4 + k) * m_stride + f * Tv + t);
          s[i][0] = m[0] + m[1] + m[2];
          s[i][1] = m[1] - m[2] - m[3];
        }
        for (int64_t a = 0; a < 2 && 2 * ty + a < g.Ho; ++a) {  // A^T (M A): output row 2 ty + a
          const vec col0 = a == 0 ? s[0][0] + s[1][0] + s[2][0] : s[1][0] - s[2][0] - s[3][0];
          const vec col1 = a == 0 ? s[0][1] + s[1][1] + s[2][1] : s[1][1] - s[2][1] - s[3][1];
          store_row(plane + (2 * ty + a) * g.Wo + 2 * k0, col0, col1, bias,
                    std::min<int64_t>(2 * lanes, g.Wo - 2 * k0));
        }
      }
  }
};

}  // namespace

bool winograd_takes(const ConvGeometry& g, const DenseBlock& block) {
  if (g.kh != 3 || g.kw != 3 || g.sh != 1 || g.sw != 1 || g.dh != 1 || g.dw != 1) return false;
  // Transforms cost per channel and per filter, the GEMMs per pair: too few of either and the direct
  // kernel is faster. The transforms run on tile rows, 16 tiles a vector: with fewer than 8 tiles a row
  // most lanes idle (ResNet-56 stage 3, 8 x 8 maps: 0.79 ms against 0.75 direct). Per-image V and M must
  // stay in L2.
  if (block.n_channels < 8 || block.n_filters < 4 || g.Wo < 15) return false;
  const int64_t Tv = ((g.Ho + 1) / 2 * ((g.Wo + 1) / 2) + kLanes - 1) / kLanes * kLanes;
  return kTile * (block.n_channels + block.n_filters) * (Tv + kLanes) <= (int64_t{1} << 17);  // 512 KB
}

void conv2d_winograd_forward(const ConvGeometry& g, const float* x, const DenseBlock& block,
                             const std::vector<PlaneFill>& fills, float* y) {
  const Winograd w(g, block);
  const int64_t image_in = g.C * g.H * g.W, image_out = g.O * g.Ho * g.Wo;
  int threads = 1;
#ifdef _OPENMP
  threads = omp_get_max_threads();
#endif
  if (g.N >= threads) {  // threads take whole images
#pragma omp parallel
    {
      AlignedFloats V(w.v_floats()), M(w.m_floats() + kLanes, false), s(w.staged_floats());
#pragma omp for schedule(dynamic, 1)
      for (int64_t n = 0; n < g.N; ++n) {
        float* y_n = y + n * image_out;
        fill_planes(fills, g.Ho * g.Wo, y_n);
        for (int64_t j = 0; j < block.n_channels; ++j)
          w.transform_input(x + n * image_in + block.channels[j] * g.H * g.W, j, s.data(), V.data());
        for (int64_t c = 0; c < kTile; ++c) w.multiply(c, V.data(), M.data());
        for (int64_t f = 0; f < block.n_filters; ++f) w.transform_output(f, M.data(), y_n);
      }
    }
    return;
  }
  // Fewer images than threads (batch 1): threads split each image's channels, components and filters
  // (the same operations per output as above, so the same bits). Small layers stay on one thread.
  AlignedFloats V(w.v_floats()), M(w.m_floats() + kLanes, false);
  const bool parallel = block.n_filters * block.n_channels * w.T * kTile >= (int64_t{1} << 18);
  for (int64_t n = 0; n < g.N; ++n) {
    float* y_n = y + n * image_out;
    fill_planes(fills, g.Ho * g.Wo, y_n);
#pragma omp parallel if (parallel)
    {
      AlignedFloats s(w.staged_floats());
#pragma omp for schedule(static)
      for (int64_t j = 0; j < block.n_channels; ++j)
        w.transform_input(x + n * image_in + block.channels[j] * g.H * g.W, j, s.data(), V.data());
#pragma omp for schedule(static)
      for (int64_t c = 0; c < kTile; ++c) w.multiply(c, V.data(), M.data());
#pragma omp for schedule(static)
      for (int64_t f = 0; f < block.n_filters; ++f) w.transform_output(f, M.data(), y_n);
    }
  }
}

}  // namespace blocked
}  // namespace cpu
}  // namespace fp
