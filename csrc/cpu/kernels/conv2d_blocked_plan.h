// Shared pieces of the register-blocked convolution (conv2d_blocked.cpp: forward passes;
// conv2d_blocked_backward.cpp: weight gradient): register blocking, staging layout, forward microkernel and
// the per-layer plan. Internal to the CPU kernels.
//
// Staging. Per image, each input channel j is copied into planes so that every tap (ky, kx) is a constant
// offset from the flat output position. Stride 1 across ("pitched"): one plane per row phase ph,
//     S[j][ph][m][c] = x_pad[m * sh + ph][c]      (c < pitch: padded rows, the next row's left padding
//                                                  doubling as this row's right padding; see pitched_row)
// and outputs are computed at q = oy * pitch + ox: tap (ky, kx) reads S[j][ky dh % sh][oy + ky dh / sh][ox +
// kx dw], i.e. offset (ky dh / sh) * pitch + kx dw from q; the pitch - Wo columns past Wo of each row are
// computed and discarded (the forward takes this layout only when they are few: see Pitch). Otherwise
// ("shifted"): kw copies per phase with the kx shift and stride applied,
//     S[j][kx][ph][m][ox] = x_pad[m * sh + ph][ox * sw + kx * dw]      (ox < Wo = pitch)
// and tap (ky, kx) reads plane (j, kx, ky dh % sh) at q + (ky dh / sh) * Wo. Either way the convolution is
// a GEMM whose K = C kh kw rows are offsets into the staged planes:
//     y[f][q] = bias[f] + sum_k w[f][k] * S[off_k + q].
// The microkernel keeps FB filters x NV vectors of kLanes positions in registers (at most kAccumulators:
// 24 with AVX-512, 12 with 16 registers; filters are split into blocks of at most 6 (see Split), NV =
// min(8, kAccumulators / FB)): each k costs NV loads and FB broadcasts for FB * NV FMAs.
//
// Kernel-level masks (each filter its own channel list) use the same staging (shifted, so no computed
// column is discarded) and microkernel one filter at a time, through the filter's own list of tap offsets.
//
// Every output element is summed by one microkernel call in k order: results do not depend on the thread
// count. The weight gradient (conv2d_blocked_backward.cpp) uses the same staging.
#ifndef FASTPRUNE_CPU_CONV2D_BLOCKED_PLAN_H
#define FASTPRUNE_CPU_CONV2D_BLOCKED_PLAN_H

#include <algorithm>
#include <cstdint>
#include <cstring>
#ifdef __AVX512F__
#include <immintrin.h>
#endif
#include <memory>
#include <type_traits>
#include <vector>

#include "cpu/kernels/capability.h"
#include "cpu/kernels/conv2d_blocked.h"
#include "cpu/kernels/masked_conv2d_staging.h"  // with_width
#include "cpu/kernels/vector_gather.h"

namespace fp {
namespace cpu {
inline namespace FP_CAP {
namespace blocked {

using staging::with_width;

constexpr int kLanes = kFloatLanes;  // one register of floats: 16 (AVX-512), 8 (AVX2), 4 (SSE2, NEON)
constexpr int kFilters = 6;          // at most 6 filters per register block
constexpr int kVectors = 8;          // at most 8 vectors (8 kLanes positions, or 8 taps) per block
// 24 of AVX-512's 32 registers, 12 of AVX2's 16 (6 filters x 2 vectors: BLIS's Haswell tile), leaving
// room for the NV loaded vectors and the broadcast.
constexpr int kAccumulators = kAccumulatorRegisters;

// count items in the fewest register blocks of at most kFilters, each of the smallest `size` that covers
// them: block b covers [b * size, min(count, (b + 1) * size)), only the last one may be smaller. 8 filters
// make 4 + 4, not 6 + 2 (a 2-filter block reuses each loaded vector only twice); 32 make five of 6 and one
// of 2. `width` is how many vectors (or taps) a block can then keep in registers.
struct Split {
  int64_t blocks, size, width;
  Split(int64_t count, int64_t most_vectors)
      : blocks((count + kFilters - 1) / kFilters),
        size(blocks > 0 ? (count + blocks - 1) / blocks : 1),
        width(std::min<int64_t>(most_vectors, kAccumulators / size)) {}
};

// Calls f(FB, NV) with both as compile-time constants when FB * NV fits the accumulator budget.
template <class F>
inline void with_block(int64_t fb, int64_t nv, F&& f) {
  with_width<kFilters>(fb, [&](auto nf) {
    with_width<kVectors>(nv, [&](auto nw) {
      if constexpr (std::decay_t<decltype(nf)>::value * decltype(nw)::value <= kAccumulators) f(nf, nw);
    });
  });
}
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

#ifdef __AVX512F__
// Lanes [a, b) of a vector, clamped to [0, 16).
inline __mmask16 lane_mask(int64_t a, int64_t b) {
  a = std::max<int64_t>(a, 0);
  b = std::min<int64_t>(b, kLanes);
  return a < b ? static_cast<__mmask16>(((1u << (b - a)) - 1) << a) : 0;
}
#endif

// The first `lanes` floats at p (<= 0: none, >= 16: a whole vector); the other lanes of the load are zero.
// With AVX-512 a masked load: a memcpy of a variable length compiles to `rep movs` into the stack, whose
// small stores the vector reload cannot forward from (the accumulating forward's prologue, 24 vectors a
// tile, took a third of a 1x1 layer's time).
inline vec load_lanes(const float* p, int64_t lanes) {
  if (lanes >= kLanes) return load(p);
  vec v = vec{};
  if (lanes <= 0) return v;
#ifdef __AVX512F__
  const __m512 m = _mm512_maskz_loadu_ps(lane_mask(0, lanes), p);
  std::memcpy(&v, &m, sizeof v);
#else
  std::memcpy(&v, p, static_cast<size_t>(lanes) * sizeof(float));
#endif
  return v;
}

inline void store_lanes(float* p, vec v, int64_t lanes) {
  if (lanes >= kLanes) {
    std::memcpy(p, &v, sizeof v);
  } else if (lanes > 0) {
#ifdef __AVX512F__
    __m512 m;
    std::memcpy(&m, &v, sizeof v);
    _mm512_mask_storeu_ps(p, lane_mask(0, lanes), m);
#else
    std::memcpy(p, &v, static_cast<size_t>(lanes) * sizeof(float));
#endif
  }
}

// A float buffer whose data() is 64-byte aligned: with Wo a multiple of 16 every staged row starts on a
// cache line, so the microkernel's vector loads do not split lines. Zeroed, or left uninitialised for a
// caller that writes every float it reads (the weight gradient: 0.5 MB per thread per call on ResNet-56,
// most of it overwritten by staging at once).
class AlignedFloats {
 public:
  explicit AlignedFloats(size_t count, bool zeroed = true)
      : storage_(zeroed ? new float[count + kSlack]() : new float[count + kSlack]) {}
  float* data() {
    const auto address = reinterpret_cast<std::uintptr_t>(storage_.get());
    return storage_.get() + ((64 - address % 64) % 64) / sizeof(float);
  }

 private:
  // Room for the shift to the next cache line: up to 15 floats, whatever the vector width.
  static constexpr size_t kSlack = 64 / sizeof(float);
  std::unique_ptr<float[]> storage_;
};

// When stride-1 staging may use the pitched layout, whose computed rows include discarded columns (see
// Layout). Measured on ResNet-56/50 shapes (2-core Zen 4, one core, staging by VectorGather): the forward
// is faster shifted (three staged copies, aligned loads, no discarded work, no copy-out) on 16 x 16 maps
// (1/17 discarded pitched: 32 -> 16 filters 25 vs 25 us an image, 16 -> 32 filters 23.4-24.0 vs 25.7-28.9
// us), even on 28 x 28 (1/29: 1060-1072 vs 1062-1072 us for 128 -> 64) and faster pitched on 32 x 32
// (1/33); hence pitched below 1/24. The weight gradient takes the same rule while an image's shifted
// staging is small (see conv2d_blocked_backward.cpp), else pitched rows.
enum class Pitch {
  kNever,     // only where nothing is discarded (1-wide kernels): sparse layers, filter by filter
  kWideRows,  // when less than 1/24 of the computed columns are discarded: dense passes
  kAlways,    // the weight gradient of layers with large staged images
};

// Pitched rows: the padded input row x_pad[y][0 .. W + 2 pw) would take Wo + (kw - 1) dw floats, but a
// row's right padding can share the floats of the next row's left padding (both zeros): with `shared` =
// min(pw, (kw - 1) dw - pw) columns shared, a staged row is pw zeros, the W inputs and pw - shared zeros,
// and a tap reading past the row's end reads the next row's leading zeros. "Same" padding (2 pw = (kw - 1)
// dw) then discards pw columns per computed row instead of 2 pw: 1 of 17 on a 16 x 16 map, 1 of 9 on 8 x 8.
inline int64_t pitched_row(const ConvGeometry& g) {
  const int64_t reach = (g.kw - 1) * g.dw;
  const int64_t shared = std::max<int64_t>(0, std::min(g.pw, reach - g.pw));
  return g.Wo + reach - shared;
}

struct Layout {
  bool pitched;     // sw == 1: one copy per row phase, taps shift by kx dw inside the padded row
  int64_t pitch;    // floats per staged row and per computed output row: pitched_row() if pitched, else Wo
  int64_t shifts;   // horizontal copies per row phase: 1 if pitched, else kw
  int64_t rows;     // m rows per plane
  int64_t plane;    // floats per plane: rows * pitch
  int64_t channel;  // floats per staged channel: shifts * sh planes
  int64_t P;        // output positions per filter: Ho * Wo
  int64_t Q;        // positions computed per filter: Ho * pitch (the last pitch - Wo of each row discarded)
  int64_t slack;    // floats the last tile may read past the last plane
  Layout(const ConvGeometry& g, Pitch policy)
      : pitched(g.sw == 1 && (g.kw == 1 || policy == Pitch::kAlways ||
                              (policy == Pitch::kWideRows && 24 * (pitched_row(g) - g.Wo) < pitched_row(g)))),
        pitch(pitched ? pitched_row(g) : g.Wo),
        shifts(pitched ? 1 : g.kw),
        rows(g.Ho + (g.kh - 1) * g.dh / g.sh),
        plane(rows * pitch),
        channel(shifts * g.sh * plane),
        P(g.Ho * g.Wo),
        Q(g.Ho * pitch),
        slack(kVectors * kLanes + (pitched ? (g.kw - 1) * g.dw : 0)) {}

  // Where tap (ky, kx) of staged channel j starts, relative to the output position.
  int64_t offset(const ConvGeometry& g, int64_t j, int64_t ky, int64_t kx) const {
    const int64_t phase = ky * g.dh % g.sh, row = ky * g.dh / g.sh;
    return j * channel + ((pitched ? 0 : kx) * g.sh + phase) * plane + row * pitch +
           (pitched ? kx * g.dw : 0);
  }
};

// The planes of one input channel xc (H x W) into s_j, strided layers (stride-1 layers take Plan's gather);
// phases no tap reads are skipped. Pitched: row m of phase ph is x_pad[m sh + ph][0 .. pitch) (see
// pitched_row). Otherwise: kx-shifted copies, column ox holding x_pad[m sh + ph][ox sw + kx dw].
inline void stage_channel(const ConvGeometry& g, const Layout& L, const std::vector<char>& phase_used,
                          const float* xc, float* s_j) {
  for (int64_t shift = 0; shift < L.shifts; ++shift) {
    // Columns c in [lo, hi) read inside the row (xi = c sw + x0 in [0, W)); the rest is padding.
    const int64_t x0 = (L.pitched ? 0 : shift * g.dw) - g.pw;
    const int64_t lo = std::min(L.pitch, x0 >= 0 ? 0 : (-x0 + g.sw - 1) / g.sw);
    const int64_t hi = std::max(lo, std::min(L.pitch, (g.W - x0 + g.sw - 1) / g.sw));
    for (int64_t ph = 0; ph < g.sh; ++ph) {
      if (!phase_used[static_cast<size_t>(ph)]) continue;
      float* plane = s_j + (shift * g.sh + ph) * L.plane;
      // Rows m read input row y = m sh + ph - pad_h: [m_lo, m_hi) are inside, the others are padding.
      const int64_t m_lo = std::min(L.rows, std::max<int64_t>(0, (g.ph - ph + g.sh - 1) / g.sh));
      const int64_t m_hi = std::max(m_lo, std::min(L.rows, (g.H + g.ph - ph + g.sh - 1) / g.sh));
      for (int64_t m = m_lo; m < m_hi; ++m) {
        float* out = plane + m * L.pitch;
        const float* src = xc + (m * g.sh + ph - g.ph) * g.W + x0;
        for (int64_t c = 0; c < lo; ++c) out[c] = 0.0f;
        for (int64_t c = lo; c < hi; ++c) out[c] = src[c * g.sw];
        for (int64_t c = hi; c < L.pitch; ++c) out[c] = 0.0f;
      }
      std::fill(plane, plane + m_lo * L.pitch, 0.0f);
      std::fill(plane + m_hi * L.pitch, plane + L.plane, 0.0f);
    }
  }
}

// Stride 1: where each float of a staged channel comes from in the channel's H x W input (-1: padding), for
// a VectorGather.
inline int64_t staged_source(const ConvGeometry& g, const Layout& L, int64_t p) {
  const int64_t shift = p / L.plane, r = p % L.plane, m = r / L.pitch, c = r % L.pitch;
  const int64_t y = m - g.ph, x = c + (L.pitched ? 0 : shift * g.dw) - g.pw;
  return y >= 0 && y < g.H && x >= 0 && x < g.W ? y * g.W + x : -1;
}

// FB filters x NV vectors of output positions starting at p0, accumulated over all K taps; w holds the FB
// filters' K weights each (the caller's (filters, channels, kh, kw) order: no repacking).
template <int FB, int NV>
inline void microkernel(const float* s_p0, const int64_t* offsets, const float* w, int64_t K,
                        const float* bias, bool relu, bool accumulate, float* const* y_p0, int64_t lanes) {
  vec acc[FB][NV];
  for (int f = 0; f < FB; ++f)
    for (int v = 0; v < NV; ++v) {
      acc[f][v] = broadcast(bias ? bias[f] : 0.0f);
      if (accumulate)  // the residual already in y (lanes past the tile's end read as 0)
        acc[f][v] += load_lanes(y_p0[f] + v * kLanes, lanes - v * kLanes);
    }
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

// Output planes set to a constant (a pruned filter's bias), image by image inside the image loop: in the
// worker that computes the image, while its planes are in cache, rather than in a serial pass after it.
struct PlaneFill {
  int64_t plane;  // output channel
  float value;
};

inline void fill_planes(const std::vector<PlaneFill>& fills, int64_t P, float* y_n) {
  for (const PlaneFill& f : fills) std::fill(y_n + f.plane * P, y_n + (f.plane + 1) * P, f.value);
}

// Winograd F(2x2, 3x3) for the forward of a dense block (conv2d_winograd.cpp): whether it takes the layer
// (3x3, stride 1, undilated, at least one image per thread, enough channels and filters), and the pass
// itself, `fills` set in every image.
bool winograd_takes(const ConvGeometry& g, const DenseBlock& block);
void conv2d_winograd_forward(const ConvGeometry& g, const float* x, const DenseBlock& block,
                             const std::vector<PlaneFill>& fills, float* y);
// ... and for the weight gradient (conv2d_winograd_backward.cpp): 3x3, stride 1, undilated, enough channels
// and filters, one image's transforms within 512 KB and the gradient's transform within 4 MB.
bool winograd_backward_takes(const ConvGeometry& g, const DenseBlock& block);
void conv2d_winograd_backward_weight(const ConvGeometry& g, const float* x, const float* grad_y,
                                     const DenseBlock& block, float* grad_weights);

struct Plan {
  const ConvGeometry& g;
  const DenseBlock& block;
  Layout L;
  std::vector<char> phase_used;
  std::vector<int64_t> offsets;  // K tap offsets into the staged planes
  int64_t K;
  Split split;   // the filter blocks
  int64_t tile;  // output positions per tile: split.width vectors
  int64_t n_tiles;
  int64_t tile_group;   // tiles a work item runs over in a row: their staged rows (~tile K floats) in 256 KB
  bool gathered;        // stride 1: channels staged by `gather`, else by stage_channel
  VectorGather gather;  // one staged channel from its input plane

  Plan(const ConvGeometry& geometry, const DenseBlock& b, Pitch policy)
      : g(geometry),
        block(b),
        L(geometry, policy),
        phase_used(static_cast<size_t>(geometry.sh), 0),
        K(b.n_channels * geometry.kh * geometry.kw),
        split(b.n_filters, kVectors),
        tile(split.width * kLanes),
        n_tiles((L.Q + tile - 1) / tile),
        tile_group(std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, tile * K))),
        gathered(geometry.sh == 1 && geometry.sw == 1),
        gather(gathered ? L.channel : 0, [&](int64_t p) { return staged_source(geometry, L, p); }) {
    for (int64_t ky = 0; ky < g.kh; ++ky) phase_used[static_cast<size_t>(ky * g.dh % g.sh)] = 1;
    offsets.resize(static_cast<size_t>(K));
    for (int64_t j = 0; j < b.n_channels; ++j)
      for (int64_t ky = 0; ky < g.kh; ++ky)
        for (int64_t kx = 0; kx < g.kw; ++kx)
          offsets[static_cast<size_t>((j * g.kh + ky) * g.kw + kx)] = L.offset(g, j, ky, kx);
  }

  // Floats of one image's staging, with slack: the last tile's loads run past the last plane.
  size_t staging_floats() const { return static_cast<size_t>(block.n_channels * L.channel + L.slack); }

  // Runs kernel(p0, y_p0, lanes), which computes output tile t of fb filters into y_p0[f] (lanes computed
  // positions from p0), for the output planes planes[f] (P floats each). Rows with discarded columns go
  // through a small buffer, whose valid columns are then copied out.
  template <class Kernel>
  void with_tile(int64_t t, int64_t fb, float* const* planes, Kernel&& kernel) const {
    const int64_t p0 = t * tile, lanes = std::min<int64_t>(L.Q - p0, tile);
    float* y_p0[kFilters];
    if (L.pitch == g.Wo) {
      for (int64_t f = 0; f < fb; ++f) y_p0[f] = planes[f] + p0;
      kernel(p0, y_p0, lanes);
      return;
    }
    alignas(64) float wide[kFilters * kVectors * kLanes];
    for (int64_t f = 0; f < fb; ++f) y_p0[f] = wide + f * tile;
    // Row by row, the columns [0, Wo) of each computed row: in (accumulate: the residual) and out.
    const auto rows = [&](auto&& copy) {
      for (int64_t q = p0; q < p0 + lanes;) {
        const int64_t oy = q / L.pitch, ox = q - oy * L.pitch;
        const int64_t end = std::min(p0 + lanes, (oy + 1) * L.pitch);
        if (ox < g.Wo)
          for (int64_t f = 0; f < fb; ++f)
            copy(planes[f] + oy * g.Wo + ox, wide + f * tile + (q - p0),
                 std::min(end, oy * L.pitch + g.Wo) - q);
        q = end;
      }
    };
    if (block.accumulate) {
      std::fill(wide, wide + fb * tile, 0.0f);  // discarded columns: zeros rather than stack garbage
      rows([](const float* y, float* w, int64_t count) {  // inline loops: runs too short for memcpy calls
        for (int64_t i = 0; i < count; ++i) w[i] = y[i];
      });
    }
    kernel(p0, y_p0, lanes);
    rows([](float* y, const float* w, int64_t count) {
      for (int64_t i = 0; i < count; ++i) y[i] = w[i];
    });
  }

  // Stages block channel j of image x_n at dest (L.channel floats).
  void stage(const float* x_n, int64_t j, float* dest) const {
    const float* xc = x_n + block.channels[j] * g.H * g.W;
    if (gathered)
      gather(xc, dest);
    else
      stage_channel(g, L, phase_used, xc, dest);
  }

  // Output tile t of filter block b of image n.
  void compute(const float* s, int64_t t, int64_t b, float* y_n) const {
    const int64_t f0 = b * split.size;
    const int64_t fb = std::min<int64_t>(block.n_filters - f0, split.size);
    float* planes[kFilters];
    for (int64_t f = 0; f < fb; ++f) planes[f] = y_n + block.filters[f0 + f] * L.P;
    const float* w = block.weights + f0 * K;
    const float* bias = block.bias ? block.bias + f0 : nullptr;
    with_tile(t, fb, planes, [&](int64_t p0, float* const* y_p0, int64_t lanes) {
      with_block(fb, (lanes + kLanes - 1) / kLanes, [&](auto nf, auto nv) {
        microkernel<decltype(nf)::value, decltype(nv)::value>(s + p0, offsets.data(), w, K, bias, block.relu,
                                                              block.accumulate, y_p0, lanes);
      });
    });
  }
};

}  // namespace blocked
}  // namespace FP_CAP
}  // namespace cpu
}  // namespace fp

#endif  // FASTPRUNE_CPU_CONV2D_BLOCKED_PLAN_H
