// Register-blocked direct convolution (see conv2d_blocked.h): vectorised over output positions, so odd
// channel counts (a pruned layer's 10, 20 or 39 filters) cost what their FLOPs say. Libraries that put
// channels in the vector lanes (oneDNN's blocked formats) round every count up to a multiple of 8 or 16.
//
// Staging. Per image, each input channel j is copied as kw * sh planes
//     S[j][kx][ph][m][ox] = x_pad[m * sh + ph][ox * sw + kx * dw]      (m < Ho + (kh - 1) dh / sh, ox < Wo)
// (kx shifts and row phases, zero where x_pad is padding). Tap (ky, kx) of output row oy reads
//     x_pad[oy * sh + ky * dh][ox * sw + kx * dw] = S[j][kx][ky dh % sh][oy + ky dh / sh][ox],
// i.e. plane (j, kx, ky dh % sh) at the flat position oy * Wo + ox + (ky dh / sh) * Wo. Every tap is thus a
// constant offset from the flat output position p = oy * Wo + ox, for any stride, padding and dilation,
// and the convolution becomes a GEMM whose K = C kh kw rows are offsets into the staged planes:
//     y[f][p] = bias[f] + sum_k w[f][k] * S[off_k + p].
// The microkernel keeps FB filters x NV vectors of 16 positions in registers (6 x 4 = 24 accumulators):
// each k costs NV loads and FB broadcasts for FB * NV FMAs.
//
// Every output element is summed by one microkernel call in k order: results do not depend on the thread
// count.
#include "cpu/conv2d_blocked.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace fp {
namespace cpu {
namespace {

constexpr int kLanes = 16;   // one AVX-512 register of floats (two AVX2 registers elsewhere)
constexpr int kFilters = 6;  // filters per register block
constexpr int kVectors = 4;  // vectors per register block: 64 output positions
typedef float vec __attribute__((vector_size(kLanes * sizeof(float))));

inline vec load(const float* p) {
  vec v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline vec broadcast(float s) {
  const vec ones = vec{} + 1.0f;
  return ones * s;  // one vbroadcastss (s * 1 is exact; "vec{} + s" would add a scalar 0 first)
}

inline void store_lanes(float* p, vec v, int64_t lanes) {
  if (lanes >= kLanes)
    std::memcpy(p, &v, sizeof v);
  else if (lanes > 0)
    std::memcpy(p, &v, static_cast<size_t>(lanes) * sizeof(float));
}

template <int Max, class F>
inline void with_count(int64_t n, F&& f) {
  if constexpr (Max > 1) {
    if (n < Max) return with_count<Max - 1>(n, std::forward<F>(f));
  }
  f(std::integral_constant<int, Max>{});
}

// A zeroed float buffer whose data() is 64-byte aligned: with Wo a multiple of 16 every staged row starts
// on a cache line, so the microkernel's vector loads do not split lines.
class AlignedFloats {
 public:
  explicit AlignedFloats(size_t count) : storage_(count + kLanes, 0.0f) {}
  float* data() {
    const auto address = reinterpret_cast<std::uintptr_t>(storage_.data());
    return storage_.data() + ((64 - address % 64) % 64) / sizeof(float);
  }

 private:
  std::vector<float> storage_;
};

struct Layout {
  int64_t rows;     // m rows per plane
  int64_t plane;    // floats per plane: rows * Wo
  int64_t channel;  // floats per staged channel: kw * sh planes
  int64_t P;        // output positions per filter: Ho * Wo
  explicit Layout(const ConvGeometry& g)
      : rows(g.Ho + (g.kh - 1) * g.dh / g.sh),
        plane(rows * g.Wo),
        channel(g.kw * g.sh * rows * g.Wo),
        P(g.Ho * g.Wo) {}
};

// The planes of one input channel xc (H x W) into s_j; phases no tap reads are skipped.
void stage_channel(const ConvGeometry& g, const Layout& L, const std::vector<char>& phase_used,
                   const float* xc, float* s_j) {
  for (int64_t kx = 0; kx < g.kw; ++kx)
    for (int64_t ph = 0; ph < g.sh; ++ph) {
      if (!phase_used[static_cast<size_t>(ph)]) continue;
      float* plane = s_j + (kx * g.sh + ph) * L.plane;
      for (int64_t m = 0; m < L.rows; ++m) {
        float* out = plane + m * g.Wo;
        const int64_t y = m * g.sh + ph - g.ph;
        if (y < 0 || y >= g.H) {
          std::fill(out, out + g.Wo, 0.0f);
          continue;
        }
        // Columns ox in [lo, hi) read inside the row (xi = ox sw + x0 in [0, W)); the rest is padding.
        const float* src = xc + y * g.W;
        const int64_t x0 = kx * g.dw - g.pw;
        const int64_t lo = std::min(g.Wo, x0 >= 0 ? 0 : (-x0 + g.sw - 1) / g.sw);
        const int64_t hi = std::max(lo, std::min(g.Wo, (g.W - x0 + g.sw - 1) / g.sw));
        std::fill(out, out + lo, 0.0f);
        if (g.sw == 1)
          std::memcpy(out + lo, src + lo + x0, static_cast<size_t>(hi - lo) * sizeof(float));
        else
          for (int64_t ox = lo; ox < hi; ++ox) out[ox] = src[ox * g.sw + x0];
        std::fill(out + hi, out + g.Wo, 0.0f);
      }
    }
}

// FB filters x NV vectors of output positions starting at p0, accumulated over all K taps; w holds the FB
// filters' K weights each (the caller's (filters, channels, kh, kw) order: no repacking).
template <int FB, int NV>
void microkernel(const float* s_p0, const int64_t* offsets, const float* w, int64_t K, const float* bias,
                 bool relu, float* const* y_p0, int64_t lanes) {
  vec acc[FB][NV];
  for (int f = 0; f < FB; ++f)
    for (int v = 0; v < NV; ++v) acc[f][v] = broadcast(bias ? bias[f] : 0.0f);
  for (int64_t k = 0; k < K; ++k) {
    const float* p = s_p0 + offsets[k];
    vec in[NV];
    for (int v = 0; v < NV; ++v) in[v] = load(p + v * kLanes);
    for (int f = 0; f < FB; ++f) {
      const vec wf = broadcast(w[f * K + k]);
      for (int v = 0; v < NV; ++v) acc[f][v] += wf * in[v];
    }
  }
  for (int f = 0; f < FB; ++f)
    for (int v = 0; v < NV; ++v) {
      vec out = acc[f][v];
      if (relu) out = out > 0.0f ? out : vec{};
      store_lanes(y_p0[f] + v * kLanes, out, lanes - v * kLanes);
    }
}

struct Plan {
  const ConvGeometry& g;
  const DenseBlock& block;
  Layout L;
  std::vector<char> phase_used;
  std::vector<int64_t> offsets;  // K tap offsets into the staged planes
  int64_t K, n_tiles, n_blocks;

  Plan(const ConvGeometry& geometry, const DenseBlock& b)
      : g(geometry),
        block(b),
        L(geometry),
        phase_used(static_cast<size_t>(geometry.sh), 0),
        K(b.n_channels * geometry.kh * geometry.kw),
        n_tiles((L.P + kVectors * kLanes - 1) / (kVectors * kLanes)),
        n_blocks((b.n_filters + kFilters - 1) / kFilters) {
    for (int64_t ky = 0; ky < g.kh; ++ky) phase_used[static_cast<size_t>(ky * g.dh % g.sh)] = 1;
    offsets.resize(static_cast<size_t>(K));
    for (int64_t j = 0; j < b.n_channels; ++j)
      for (int64_t ky = 0; ky < g.kh; ++ky)
        for (int64_t kx = 0; kx < g.kw; ++kx)
          offsets[static_cast<size_t>((j * g.kh + ky) * g.kw + kx)] =
              j * L.channel + (kx * g.sh + ky * g.dh % g.sh) * L.plane + ky * g.dh / g.sh * g.Wo;
  }

  // Floats of one image's staging, with a vector of slack: the last tile's loads run past the last plane.
  size_t staging_floats() const {
    return static_cast<size_t>(block.n_channels * L.channel + kVectors * kLanes);
  }

  void stage(const float* x_n, int64_t j, float* s) const {
    stage_channel(g, L, phase_used, x_n + block.channels[j] * g.H * g.W, s + j * L.channel);
  }

  // Output tile t (64 positions) of filter block b of image n.
  void compute(const float* s, int64_t t, int64_t b, float* y_n) const {
    const int64_t p0 = t * kVectors * kLanes, f0 = b * kFilters;
    const int64_t lanes = std::min<int64_t>(L.P - p0, kVectors * kLanes);
    float* y_p0[kFilters];
    const int64_t fb = std::min<int64_t>(block.n_filters - f0, kFilters);
    for (int64_t f = 0; f < fb; ++f) y_p0[f] = y_n + block.filters[f0 + f] * L.P + p0;
    const float* w = block.weights + f0 * K;
    const float* bias = block.bias ? block.bias + f0 : nullptr;
    with_count<kFilters>(fb, [&](auto nf) {
      with_count<kVectors>((lanes + kLanes - 1) / kLanes, [&](auto nv) {
        microkernel<decltype(nf)::value, decltype(nv)::value>(s + p0, offsets.data(), w, K, bias, block.relu,
                                                              y_p0, lanes);
      });
    });
  }
};

}  // namespace

void conv2d_blocked_forward(const ConvGeometry& g, const float* x, const DenseBlock& block, float* y) {
  if (block.n_filters == 0 || g.N == 0) return;
  const Plan plan(g, block);
  const int64_t image_in = g.C * g.H * g.W, image_out = g.O * plan.L.P;
  if (block.n_channels == 0) {  // no input: every listed filter outputs its bias
    for (int64_t n = 0; n < g.N; ++n)
      for (int64_t f = 0; f < block.n_filters; ++f) {
        float* out = y + n * image_out + block.filters[f] * plan.L.P;
        const float v = block.bias ? block.bias[f] : 0.0f;
        std::fill(out, out + plan.L.P, block.relu ? std::max(v, 0.0f) : v);
      }
    return;
  }
  int threads = 1;
#ifdef _OPENMP
  threads = omp_get_max_threads();
#endif
  const int64_t items = plan.n_tiles * plan.n_blocks;
  if (g.N >= threads) {  // threads take whole images, each staged into the thread's own buffer
#pragma omp parallel
    {
      AlignedFloats s(plan.staging_floats());
#pragma omp for schedule(dynamic, 1)
      for (int64_t n = 0; n < g.N; ++n) {
        for (int64_t j = 0; j < block.n_channels; ++j) plan.stage(x + n * image_in, j, s.data());
        for (int64_t t = 0; t < plan.n_tiles; ++t)
          for (int64_t b = 0; b < plan.n_blocks; ++b) plan.compute(s.data(), t, b, y + n * image_out);
      }
    }
    return;
  }
  // Fewer images than threads (batch 1): one shared staging per image, threads split its tiles x blocks.
  // Small layers stay on one thread: a parallel region costs more than their few microseconds.
  AlignedFloats s(plan.staging_floats());
  const bool parallel = block.n_filters * plan.L.P * plan.K >= (int64_t{1} << 20);
  for (int64_t n = 0; n < g.N; ++n) {
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t j = 0; j < block.n_channels; ++j) plan.stage(x + n * image_in, j, s.data());
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t i = 0; i < items; ++i)
      plan.compute(s.data(), i / plan.n_blocks, i % plan.n_blocks, y + n * image_out);
  }
}

}  // namespace cpu
}  // namespace fp
