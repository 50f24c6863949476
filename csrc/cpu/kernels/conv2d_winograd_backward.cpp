// Winograd F(2x2, 3x3) weight gradient of a dense block (transforms: winograd_transforms.h): with V the
// input tiles' transforms and Z = A dY A^T the output gradient tiles' (0 past the map),
//     dU[c][f][j] = sum over images and tiles t of Z[c][t][f] V[c][t][j]     (16 GEMMs, K = tiles)
//     dg[f][j]    = G^T dU[.][f][j] G
// 16 multiply-adds per tile and (filter, channel) instead of the direct kernel's 36.
//
// Layout: tile-major, channels (filters) innermost. Per image, the input planes are transposed into a
// zero-padded position x channel buffer (and the output gradient planes into position x filter), so that a
// tile's 16 patch floats are 16 vector loads of 16 channels and its transform 16 vector stores:
//     V[c][t][j] (pitch Cp = C rounded up to whole vectors, zero past C), Z[c][t][f] (pitch Fp).
// The GEMM keeps a block of <= 6 filters x <= 4 channel vectors in registers and walks the tiles: per tile,
// JV vector loads of V and FB broadcasts of Z for FB * JV FMAs; the accumulators are dU itself, so a chunk
// of a few images (whose V and Z stay in L2) adds into it without sums across lanes.
//
// Threads take fixed groups of consecutive images (their count from the batch alone), each group summing
// its images in order into its own dU; the groups' dU are added in group order: the same bits whatever the
// thread count. Measured (2-core Zen 4, ResNet-56's layers at filter 50%, batch 64): the weight gradient
// alone in a loop 1.13 -> 0.69 ms on 8 x 8, 1.06 -> 0.71 ms on 16 x 16, even on 32 x 32 (1.16 / 1.13 ms:
// 16 channels and 8 filters leave the transforms as costly as the GEMMs); forward + backward as bench conv
// times it (in-process A/B) 1.64 -> 1.83x, 1.70 -> 1.83x and 1.73 -> 1.77x of dense. A first layout with
// the whole batch's transforms in memory (6-25 MB) ran slower than the direct kernel once caches were
// cold; chunks of a few images stay in L2.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "cpu/kernels/capability.h"
#include "cpu/kernels/conv2d_blocked.h"
#include "cpu/kernels/conv2d_blocked_plan.h"
#include "cpu/kernels/winograd_transforms.h"

namespace fp {
namespace cpu {
inline namespace FP_CAP {
namespace blocked {
namespace {

inline int64_t whole_vectors(int64_t n) {
  return (n + kLanes - 1) / kLanes * kLanes;
}

#ifdef __AVX512F__
// One round of transpose16: rows i and i + d (i without bit d) swap their off-diagonal d x d blocks; lo
// picks row i's lanes without bit d, then row i + d's; hi row i's lanes with bit d, then row i + d's.
template <int D>
inline void transpose_round(__m512 (&r)[kLanes], __m512i lo, __m512i hi) {
  for (int i = 0; i < kLanes; ++i)
    if (!(i & D)) {
      const __m512 a = r[i], b = r[i + D];
      r[i] = _mm512_permutex2var_ps(a, lo, b);
      r[i + D] = _mm512_permutex2var_ps(a, hi, b);
    }
}
#endif

// 16 x 16 transpose of r (row l in register l) in place: four rounds of two-source permutes.
inline void transpose16(vec (&v)[kLanes]) {
#ifdef __AVX512F__
  __m512 r[kLanes];
  std::memcpy(r, v, sizeof r);
  transpose_round<8>(r, _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23),
                     _mm512_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31));
  transpose_round<4>(r, _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27),
                     _mm512_setr_epi32(4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31));
  transpose_round<2>(r, _mm512_setr_epi32(0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29),
                     _mm512_setr_epi32(2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31));
  transpose_round<1>(r, _mm512_setr_epi32(0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30),
                     _mm512_setr_epi32(1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31));
  std::memcpy(v, r, sizeof r);
#else
  for (int i = 0; i < kLanes; ++i)
    for (int k = i + 1; k < kLanes; ++k) std::swap(v[i][k], v[k][i]);
#endif
}

// out[at[p] * pitch + j] = src[rows[j] * P + p] for j < count, p < P: planes (one per row listed) turned into
// positions of `pitch` floats, 16 planes x 16 positions a transpose. Floats past `count` are not written.
inline void transpose_planes(const float* src, const int64_t* rows, int64_t count, int64_t P,
                             const int64_t* at, float* out, int64_t pitch) {
  for (int64_t j0 = 0; j0 < count; j0 += kLanes) {
    const int64_t nj = std::min<int64_t>(kLanes, count - j0);
    for (int64_t p0 = 0; p0 < P; p0 += kLanes) {
      const int64_t np = std::min<int64_t>(kLanes, P - p0);
      vec r[kLanes];
      for (int64_t l = 0; l < kLanes; ++l)
        r[l] = l < nj ? load_lanes(src + rows[j0 + l] * P + p0, np) : vec{};
      transpose16(r);
      for (int64_t k = 0; k < np; ++k) store_lanes(out + at[p0 + k] * pitch + j0, r[k], nj);
    }
  }
}

struct WinogradBackward {
  const ConvGeometry& g;
  const DenseBlock& block;
  int64_t TH, TW, T;  // tile rows and columns (2x2 outputs each), tiles per image
  int64_t Cp, Fp;     // channels and filters rounded up to whole vectors
  int64_t PH, PW;     // padded input rows and columns, 2 TH + 2 and 2 TW + 2
  int64_t chunk;      // images transformed at once (about 64 tiles: V and Z of a chunk in L2)
  int64_t u_size;     // floats of one group's dU: 16 F Cp
  int64_t groups;     // fixed groups of consecutive images, each with its own dU (8, fewer past 16 MB)
  // Floats from one component of V (Z) to the next: chunk T Cp (Fp) and a cache line, so that the 16
  // components a tile's transform stores do not all fall into one L1 set.
  int64_t v_comp, z_comp;
  int64_t u_stride;  // from one group's dU to the next: u_size and a cache line (see the reduction)
  Split split;       // filter blocks of the GEMMs
  std::vector<int64_t> x_at, gy_at;  // where transpose_image puts each input and output position

  WinogradBackward(const ConvGeometry& geometry, const DenseBlock& b)
      : g(geometry),
        block(b),
        TH((g.Ho + 1) / 2),
        TW((g.Wo + 1) / 2),
        T(TH * TW),
        Cp(whole_vectors(b.n_channels)),
        Fp(whole_vectors(b.n_filters)),
        PH(2 * TH + 2),
        PW(2 * TW + 2),
        chunk(std::max<int64_t>(1, std::min<int64_t>(g.N, 64 / T))),
        u_size(16 * b.n_filters * Cp),
        groups(std::max<int64_t>(1, std::min<int64_t>({g.N, 8, (int64_t{1} << 22) / u_size}))),
        v_comp(chunk * T * Cp + kLanes),
        z_comp(chunk * T * Fp + kLanes),
        u_stride(u_size + kLanes),
        split(b.n_filters, kVectors) {
    for (int64_t p = 0; p < g.H * g.W; ++p) x_at.push_back((p / g.W + g.ph) * PW + p % g.W + g.pw);
    for (int64_t p = 0; p < g.Ho * g.Wo; ++p) gy_at.push_back(p / g.Wo * 2 * TW + p % g.Wo);
  }

  // The transposed planes of one image: xt[(y + ph) PW + x + pw][j] = x[channels[j]][y][x] (the borders and
  // channels past C stay zero), gt[oy (2 TW) + ox][f] = grad_y[filters[f]][oy][ox].
  void transpose_image(const float* x_n, const float* gy_n, float* xt, float* gt) const {
    transpose_planes(x_n, block.channels, block.n_channels, g.H * g.W, x_at.data(), xt, Cp);
    transpose_planes(gy_n, block.filters, block.n_filters, g.Ho * g.Wo, gy_at.data(), gt, Fp);
  }

  // V and Z of image i of the chunk from its transposed planes.
  void transform_image(const float* xt, const float* gt, int64_t i, float* V, float* Z) const {
    for (int64_t ty = 0; ty < TH; ++ty)
      for (int64_t tx = 0; tx < TW; ++tx) {
        const int64_t t = i * T + ty * TW + tx;
        for (int64_t j = 0; j < Cp; j += kLanes) {
          vec d[4][4];
          for (int64_t r = 0; r < 4; ++r)
            for (int64_t c = 0; c < 4; ++c) d[r][c] = load(xt + ((2 * ty + r) * PW + 2 * tx + c) * Cp + j);
          float* out = V + t * Cp + j;
          input_transform(d, [&](int64_t c, vec v) { std::memcpy(out + c * v_comp, &v, sizeof v); });
        }
        for (int64_t f = 0; f < Fp; f += kLanes) {
          vec dy[2][2];
          for (int64_t a = 0; a < 2; ++a)
            for (int64_t b = 0; b < 2; ++b)
              dy[a][b] = load(gt + ((2 * ty + a) * 2 * TW + 2 * tx + b) * Fp + f);
          float* out = Z + t * Fp + f;
          output_gradient_transform(dy,
                                    [&](int64_t c, vec v) { std::memcpy(out + c * z_comp, &v, sizeof v); });
        }
      }
  }
};

// u[f][q] (FB rows at pitch u_pitch, JV vectors) += sum_{t < K} z[t][f] * v[t][q]: z at pitch z_pitch, v at
// pitch v_pitch. Not inlined: the driver's register pressure must not spill the 24 accumulators.
template <int FB, int JV>
__attribute__((noinline)) void gemm_block(const float* z, int64_t z_pitch, const float* v, int64_t v_pitch,
                                          int64_t K, float* u, int64_t u_pitch) {
  vec acc[FB][JV];
  for (int f = 0; f < FB; ++f)
    for (int q = 0; q < JV; ++q) acc[f][q] = load(u + f * u_pitch + q * kLanes);
  for (int64_t t = 0; t < K; ++t) {
    vec vv[JV];
    for (int q = 0; q < JV; ++q) vv[q] = load(v + t * v_pitch + q * kLanes);
    for (int f = 0; f < FB; ++f) {
      const vec zb = broadcast(z[t * z_pitch + f]);
      for (int q = 0; q < JV; ++q) acc[f][q] += zb * vv[q];
    }
  }
  for (int f = 0; f < FB; ++f)
    for (int q = 0; q < JV; ++q) std::memcpy(u + f * u_pitch + q * kLanes, &acc[f][q], sizeof(vec));
}

}  // namespace

bool winograd_backward_takes(const ConvGeometry& g, const DenseBlock& block) {
  if (g.kh != 3 || g.kw != 3 || g.sh != 1 || g.sw != 1 || g.dh != 1 || g.dw != 1) return false;
  if (block.n_channels < 8 || block.n_filters < 4) return false;
  // One image's V and Z within 512 KB (L2): ResNet-56's layers; ResNet-50's 3x3 layers stay direct. And a
  // group's dU within 4 MB (wide layers on tiny maps: 1024 x 1024 channels at 4 x 4 would take 64 MB).
  const int64_t tiles = (g.Ho + 1) / 2 * ((g.Wo + 1) / 2);
  const int64_t Cp = whole_vectors(block.n_channels), Fp = whole_vectors(block.n_filters);
  return 16 * tiles * (Cp + Fp) <= (int64_t{1} << 17) && 16 * block.n_filters * Cp <= (int64_t{1} << 20);
}

void conv2d_winograd_backward_weight(const ConvGeometry& g, const float* x, const float* grad_y,
                                     const DenseBlock& block, float* grad_weights) {
  const WinogradBackward w(g, block);
  const int64_t F = block.n_filters, C = block.n_channels, image_in = g.C * g.H * g.W,
                image_out = g.O * g.Ho * g.Wo;
  // [group][c][f][Cp]: each group zeroes its own, in its thread.
  const std::unique_ptr<float[]> dU(new float[static_cast<size_t>(w.groups * w.u_stride)]);
  const int64_t fs = w.split.size, jv_most = w.split.width;
#pragma omp parallel
  {
    AlignedFloats xt(static_cast<size_t>(w.PH * w.PW * w.Cp)),
        gt(static_cast<size_t>(2 * w.TH * 2 * w.TW * w.Fp));
    AlignedFloats V(static_cast<size_t>(16 * w.v_comp), false), Z(static_cast<size_t>(16 * w.z_comp), false);
#pragma omp for schedule(dynamic, 1)
    for (int64_t group = 0; group < w.groups; ++group) {
      float* u = dU.get() + group * w.u_stride;
      std::fill(u, u + w.u_size, 0.0f);
      const int64_t end = (group + 1) * g.N / w.groups;
      for (int64_t n0 = group * g.N / w.groups; n0 < end; n0 += w.chunk) {
        const int64_t count = std::min(w.chunk, end - n0);
        for (int64_t i = 0; i < count; ++i) {
          w.transpose_image(x + (n0 + i) * image_in, grad_y + (n0 + i) * image_out, xt.data(), gt.data());
          w.transform_image(xt.data(), gt.data(), i, V.data(), Z.data());
        }
        const int64_t K = count * w.T;
        for (int64_t c = 0; c < 16; ++c)
          for (int64_t f0 = 0; f0 < F; f0 += fs)
            for (int64_t j0 = 0; j0 < w.Cp; j0 += jv_most * kLanes) {
              const int64_t fb = std::min(fs, F - f0), jv = std::min(jv_most, (w.Cp - j0) / kLanes);
              with_block(fb, jv, [&](auto nf, auto nj) {
                gemm_block<decltype(nf)::value, decltype(nj)::value>(Z.data() + c * w.z_comp + f0, w.Fp,
                                                                     V.data() + c * w.v_comp + j0, w.Cp, K,
                                                                     u + (c * F + f0) * w.Cp + j0, w.Cp);
              });
            }
      }
    }
    // The groups' dU, in group order, into group 0's. A cache line between groups: at a multiple of 4 KB
    // apart the 8 groups' vectors would all fall into one L1 set.
#pragma omp for schedule(static)
    for (int64_t e = 0; e < w.u_size; e += kLanes) {
      vec sum = load(dU.get() + e);
      for (int64_t group = 1; group < w.groups; ++group) sum += load(dU.get() + group * w.u_stride + e);
      std::memcpy(dU.get() + e, &sum, sizeof sum);
    }
#pragma omp for schedule(static)
    for (int64_t f = 0; f < F; ++f)
      for (int64_t j = 0; j < C; ++j)
        weight_gradient_transform(dU.get() + f * w.Cp + j, F * w.Cp, grad_weights + (f * C + j) * 9);
  }
}

}  // namespace blocked
}  // namespace FP_CAP
}  // namespace cpu
}  // namespace fp
