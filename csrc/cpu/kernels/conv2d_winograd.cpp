// Winograd F(2x2, 3x3) (Lavin & Gray, 2016) for dense blocks of stride-1, undilated 3x3 convolutions: the
// forward pass, and through it the input gradient of such layers (a stride-1 convolution too, see
// masked_conv2d_backward.cpp). Each 2x2 output tile costs 16 multiply-adds per (filter, channel) instead of
// 36: with U = G g G^T (4x4, per filter and channel) and V = B^T d B (4x4, per channel and tile, d the
// tile's 4x4 input patch),
//     Y = A^T [ sum_j U[f][j] (.) V[j] ] A        (2x2 outputs of filter f, (.) elementwise;
//                                                  B, G, A: winograd_transforms.h)
// Per image: the input transform writes V[c][j][t] (component c = 4 i + k of the 4x4, channel j, tile t =
// ty * TWp + tx, all tiles of the image in a row), the sum over channels is 16 small GEMMs
//     M[c][f][t] = sum_j U[c][f][j] V[c][j][t]
// run by the blocked convolution's microkernel (conv2d_blocked_plan.h: offsets j * Tr into V[c]), and the
// output transform writes y. Every output is summed in a fixed order by one thread: results do not depend
// on the thread count or the batch. Measured (2-core Zen 4, batch 64, 32 -> 16 filters at 16 x 16 and
// 16 -> 32 for its input gradient, tight loop): 0.82 -> 0.65 ms and 0.79 -> 0.64 ms against the direct
// kernel; the GEMMs run at ~86% of one core's FMA peak, the transforms take about a third of the time.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "cpu/kernels/conv2d_blocked.h"
#include "cpu/kernels/conv2d_blocked_plan.h"
#include "cpu/kernels/vector_gather.h"
#include "cpu/kernels/winograd_transforms.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#include "cpu/kernels/capability.h"

namespace fp {
namespace cpu {
inline namespace FP_CAP {
namespace blocked {
namespace {

constexpr int64_t kTile = 16;  // floats of the 4x4 transformed tile: GEMMs per image

// Tiles per tile row in V's layout: TW rounded up to a power of two (a vector holds whole tile rows, whose
// inputs then lie within 64 floats when the map is narrow: one VectorGather window) or, past 16, to whole
// vectors.
inline int64_t tile_pitch(int64_t TW) {
  if (TW > kLanes) return (TW + kLanes - 1) / kLanes * kLanes;
  int64_t p = 1;
  while (p < TW) p *= 2;
  return p;
}

inline int64_t tile_floats(const ConvGeometry& g) {  // Tv below
  const int64_t T = (g.Ho + 1) / 2 * tile_pitch((g.Wo + 1) / 2);
  return (T + kLanes - 1) / kLanes * kLanes;
}

struct Winograd {
  const ConvGeometry& g;
  const DenseBlock& block;
  int64_t TH, TW, TWp;  // tile rows and columns (2x2 outputs each), tile columns in the layout
  int64_t Tv;           // tiles of the layout, TH TWp, rounded up to whole vectors
  // Images whose tiles share a row of V and M (G Tv tiles): on small maps (8x8: 16 tiles) one image's
  // tiles make a GEMM of one vector per call, whose set-up the few channels do not amortise; four make
  // whole register blocks. 1 where an image has 64 tiles or more, and for fewer images than threads.
  int64_t G;
  // Floats per channel row of V: G Tv and one vector, so that the row-wise input transform stores whole
  // vectors (a tile row's tail spills into the next row, written after it, or into this padding): masked
  // partial stores made the transform ~2x slower.
  int64_t Tr;
  // Floats from one component of V (M) to the next: C Tr (F G Tv) and a cache line, so that the 16
  // components' rows do not all fall into one L1 set (C Tv floats are often a multiple of 4 KB: the
  // transforms, which touch all 16 at once, ran 3-5x slower).
  int64_t v_stride, m_stride;
  // Input staging. Tile rows of 8 or more tiles: the padded rows split into even and odd columns,
  // [parity][r][k] = x_pad[r][2 k + parity] (`half` floats a row), and the transform runs along tile rows.
  // Narrower maps (8 x 8: 4 tiles a row): each tile's 4x4 patch, D[r][c][t] = x_pad[2 ty + r][2 tx + c],
  // 16 tiles of several rows a vector (ResNet-56 stage 3 forward 0.84 -> 0.69 ms; on wider maps the rows
  // are faster, 0.77 vs 0.95 ms on 32 x 32).
  bool by_rows;
  int64_t rows, half;
  Split split;                   // filter blocks of the GEMMs
  int64_t width;                 // tile vectors per GEMM call
  std::vector<int64_t> offsets;  // channel j of V[c] at j * Tr
  std::vector<float> U;          // [c][f][j], by transform_weights
  VectorGather stage;            // one input channel's staging

  Winograd(const ConvGeometry& geometry, const DenseBlock& b, int64_t images)
      : g(geometry),
        block(b),
        TH((g.Ho + 1) / 2),
        TW((g.Wo + 1) / 2),
        TWp(tile_pitch(TW)),
        Tv(tile_floats(g)),
        G(images),
        Tr(G * Tv + kLanes),
        v_stride(b.n_channels * Tr + kLanes),
        m_stride(b.n_filters * G * Tv + kLanes),
        by_rows(TWp >= 8),
        rows(2 * TH + 2),
        half((TW + 1 + kLanes - 1) / kLanes * kLanes),
        split(b.n_filters, kVectors),
        width(std::min<int64_t>(split.width, G * Tv / kLanes)),
        offsets(static_cast<size_t>(b.n_channels)),
        U(static_cast<size_t>(kTile * b.n_filters * b.n_channels)),
        stage(by_rows ? 2 * rows * half : kTile * Tv, [&](int64_t p) { return staged_source(p); }) {
    for (int64_t j = 0; j < b.n_channels; ++j) offsets[static_cast<size_t>(j)] = j * Tr;
  }

  // U[.][f][.] of filter f of the block: G g G^T of each of its kernels. Threads split the filters at the
  // start of the pass (done serially, the transforms took ~12% of the GEMMs' time on ResNet-56 stage 3).
  void transform_weights(int64_t f) {
    const int64_t F = block.n_filters, C = block.n_channels;
    for (int64_t j = 0; j < C; ++j) {
      float u[16];
      weight_transform(block.weights + (f * C + j) * 9, u);
      for (int64_t c = 0; c < 16; ++c) U[static_cast<size_t>((c * F + f) * C + j)] = u[c];
    }
  }

  // Where staged float p comes from in the channel's H x W input (-1: padding or past the tiles).
  int64_t staged_source(int64_t p) const {
    int64_t yi, xi;
    if (by_rows) {
      const int64_t parity = p / (rows * half), r = p / half % rows, k = p % half;
      yi = r - g.ph, xi = 2 * k + parity - g.pw;
    } else {
      const int64_t rc = p / Tv, t = p % Tv, ty = t / TWp, tx = t % TWp;
      if (ty >= TH || tx >= TW) return -1;
      yi = 2 * ty + rc / 4 - g.ph, xi = 2 * tx + rc % 4 - g.pw;
    }
    return yi >= 0 && yi < g.H && xi >= 0 && xi < g.W ? yi * g.W + xi : -1;
  }

  size_t v_floats() const { return static_cast<size_t>(kTile * v_stride); }
  size_t m_floats() const { return static_cast<size_t>(kTile * m_stride); }
  size_t staged_floats() const {
    return static_cast<size_t>((by_rows ? 2 * rows * half : kTile * Tv) + kLanes);
  }

  // V[.][j][.] of image i of the group from input channel xc (H x W), via its staging `s`.
  void transform_input(const float* xc, int64_t j, int64_t i, float* s, float* V) const {
    stage(xc, s);
    float* row = V + j * Tr + i * Tv;
    const auto at = [&](int64_t t) {
      return [row, t, this](int64_t c, vec v) { std::memcpy(row + c * v_stride + t, &v, sizeof v); };
    };
    if (!by_rows) {
      for (int64_t t = 0; t < Tv; t += kLanes) {
        vec d[4][4];
        for (int64_t r = 0; r < 4; ++r)
          for (int64_t c = 0; c < 4; ++c) d[r][c] = load(s + (r * 4 + c) * Tv + t);
        input_transform(d, at(t));
      }
      return;
    }
    const float* even = s;
    const float* odd = s + rows * half;
    for (int64_t ty = 0; ty < TH; ++ty)
      for (int64_t k0 = 0; k0 < TW; k0 += kLanes) {
        // the patches' columns 2 k, 2 k + 1, 2 k + 2, 2 k + 3: even and odd halves at k and k + 1
        vec d[4][4];
        for (int64_t r = 0; r < 4; ++r) {
          const int64_t row = (2 * ty + r) * half + k0;
          d[r][0] = load(even + row), d[r][1] = load(odd + row), d[r][2] = load(even + row + 1),
          d[r][3] = load(odd + row + 1);
        }
        input_transform(d, at(ty * TWp + k0));
      }
  }

  // Component c of M = U V, for the first `count` images of the group.
  void multiply(int64_t c, int64_t count, const float* V, float* M) const {
    const int64_t F = block.n_filters, C = block.n_channels, T = count * Tv;
    for (int64_t t0 = 0; t0 < T; t0 += width * kLanes)
      for (int64_t b = 0; b < split.blocks; ++b) {
        const int64_t f0 = b * split.size, fb = std::min<int64_t>(F - f0, split.size);
        float* m[kFilters];
        for (int64_t f = 0; f < fb; ++f) m[f] = M + c * m_stride + (f0 + f) * G * Tv + t0;
        const int64_t lanes = std::min<int64_t>(T - t0, width * kLanes);
        with_block(fb, lanes / kLanes, [&](auto nf, auto nv) {
          microkernel<decltype(nf)::value, decltype(nv)::value>(V + c * v_stride + t0, offsets.data(),
                                                                U.data() + (c * F + f0) * C, C, nullptr,
                                                                false, false, m, lanes);
        });
      }
  }

  // The output rows 2 ty + a of the tiles t0 .. t0 + 15 (several tile rows when TWp < 16): the columns
  // 2 tx (col0) and 2 tx + 1 (col1) interleaved, plus bias (+ the residual already in y), then ReLU.
  void store_rows(float* plane, int64_t t0, int64_t a, vec col0, vec col1, float bias) const {
    alignas(64) float out[2 * kLanes];  // out[2 l + b]: lane l's column b
#ifdef __AVX512F__
    __m512 c0, c1;
    std::memcpy(&c0, &col0, sizeof c0);
    std::memcpy(&c1, &col1, sizeof c1);
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    _mm512_store_ps(out, _mm512_permutex2var_ps(c0, lo, c1));
    _mm512_store_ps(out + kLanes, _mm512_permutex2var_ps(c0, hi, c1));
#else
    for (int64_t l = 0; l < kLanes; ++l) out[2 * l] = col0[l], out[2 * l + 1] = col1[l];
#endif
    const int64_t per_row = std::min<int64_t>(TWp, kLanes);  // tiles of one tile row in the vector
    for (int64_t q = 0; q * per_row < kLanes; ++q) {
      const int64_t t = t0 + q * per_row, ty = t / TWp, tx = t % TWp, y_row = 2 * ty + a;
      if (ty >= TH || y_row >= g.Ho) break;
      const int64_t cols = std::min<int64_t>(2 * per_row, g.Wo - 2 * tx);
      float* row = plane + y_row * g.Wo + 2 * tx;
      const float* src = out + 2 * q * per_row;
      for (int64_t c0 = 0; c0 < cols; c0 += kLanes) {
        const int64_t n = std::min<int64_t>(kLanes, cols - c0);
        vec v = load_lanes(src + c0, n) + bias;
        if (block.accumulate) v += load_lanes(row + c0, n);
        if (block.relu) v = v > 0.0f ? v : vec{};
        store_lanes(row + c0, v, n);
      }
    }
  }

  // The y plane of the block's filter f of image i of the group from M: A^T M A, plus bias, (+ the
  // residual in y), ReLU.
  void transform_output(int64_t f, int64_t i, const float* M, float* y_n) const {
    float* plane = y_n + block.filters[f] * g.Ho * g.Wo;
    const float bias = block.bias ? block.bias[f] : 0.0f;
    for (int64_t t0 = 0; t0 < Tv && t0 / TWp < TH; t0 += kLanes) {
      vec s[4][2];  // M A: per row r, the two output columns
      for (int64_t r = 0; r < 4; ++r) {
        vec m[4];
        for (int64_t k = 0; k < 4; ++k) m[k] = load(M + (r * 4 + k) * m_stride + (f * G + i) * Tv + t0);
        s[r][0] = m[0] + m[1] + m[2];
        s[r][1] = m[1] - m[2] - m[3];
      }
      // A^T (M A): output rows 2 ty and 2 ty + 1
      store_rows(plane, t0, 0, s[0][0] + s[1][0] + s[2][0], s[0][1] + s[1][1] + s[2][1], bias);
      store_rows(plane, t0, 1, s[1][0] - s[2][0] - s[3][0], s[1][1] - s[2][1] - s[3][1], bias);
    }
  }
};

}  // namespace

bool winograd_takes(const ConvGeometry& g, const DenseBlock& block) {
  if (g.kh != 3 || g.kw != 3 || g.sh != 1 || g.sw != 1 || g.dh != 1 || g.dw != 1) return false;
  // Transforms cost per channel and per filter, the GEMMs per pair: with too few of either the direct
  // kernel is faster. Per-image V and M must stay in L2: ResNet-50's 3x3 layers (64-256 channels at
  // 56x56 .. 14x14) stay direct.
  if (block.n_channels < 8 || block.n_filters < 4) return false;
  return kTile * (block.n_channels + block.n_filters) * tile_floats(g) <= (int64_t{1} << 17);  // 512 KB
}

void conv2d_winograd_forward(const ConvGeometry& g, const float* x, const DenseBlock& block,
                             const std::vector<PlaneFill>& fills, float* y) {
  const int64_t image_in = g.C * g.H * g.W, image_out = g.O * g.Ho * g.Wo;
  int threads = 1;
#ifdef _OPENMP
  threads = omp_get_max_threads();
#endif
  if (g.N >= threads) {  // threads take groups of whole images
    const int64_t group = std::max<int64_t>(1, std::min<int64_t>(4 * kLanes / tile_floats(g), g.N / threads));
    Winograd w(g, block, group);
#pragma omp parallel
    {
#pragma omp for schedule(static)
      for (int64_t f = 0; f < block.n_filters; ++f) w.transform_weights(f);
      AlignedFloats V(w.v_floats()), M(w.m_floats() + kLanes, false), s(w.staged_floats());
#pragma omp for schedule(dynamic, 1)
      for (int64_t n0 = 0; n0 < g.N; n0 += group) {
        const int64_t count = std::min(group, g.N - n0);
        for (int64_t i = 0; i < count; ++i) {
          fill_planes(fills, g.Ho * g.Wo, y + (n0 + i) * image_out);
          for (int64_t j = 0; j < block.n_channels; ++j)
            w.transform_input(x + (n0 + i) * image_in + block.channels[j] * g.H * g.W, j, i, s.data(),
                              V.data());
        }
        for (int64_t c = 0; c < kTile; ++c) w.multiply(c, count, V.data(), M.data());
        for (int64_t i = 0; i < count; ++i)
          for (int64_t f = 0; f < block.n_filters; ++f)
            w.transform_output(f, i, M.data(), y + (n0 + i) * image_out);
      }
    }
    return;
  }
  // Fewer images than threads (batch 1): threads split each image's channels, components and filters
  // (the same operations per output as above, so the same bits). Small layers stay on one thread.
  Winograd w(g, block, 1);
  AlignedFloats V(w.v_floats()), M(w.m_floats() + kLanes, false);
  const bool parallel = block.n_filters * block.n_channels * w.Tv * kTile >= (int64_t{1} << 18);
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t f = 0; f < block.n_filters; ++f) w.transform_weights(f);
  for (int64_t n = 0; n < g.N; ++n) {
    float* y_n = y + n * image_out;
    fill_planes(fills, g.Ho * g.Wo, y_n);
#pragma omp parallel if (parallel)
    {
      AlignedFloats s(w.staged_floats());
#pragma omp for schedule(static)
      for (int64_t j = 0; j < block.n_channels; ++j)
        w.transform_input(x + n * image_in + block.channels[j] * g.H * g.W, j, 0, s.data(), V.data());
#pragma omp for schedule(static)
      for (int64_t c = 0; c < kTile; ++c) w.multiply(c, 1, V.data(), M.data());
#pragma omp for schedule(static)
      for (int64_t f = 0; f < block.n_filters; ++f) w.transform_output(f, 0, M.data(), y_n);
    }
  }
}

}  // namespace blocked
}  // namespace FP_CAP
}  // namespace cpu
}  // namespace fp
