// Helpers shared by the masked-convolution passes (csrc/cpu/masked_conv2d*.cpp): the float vector type and
// the staging of input channels and output gradients into zero-padded rows of Wv = roundup(Wo, kLanes)
// floats.
#ifndef FASTPRUNE_CPU_MASKED_CONV2D_STAGING_H
#define FASTPRUNE_CPU_MASKED_CONV2D_STAGING_H

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "cpu/kernels/capability.h"
#include "cpu/kernels/masked_conv2d.h"

namespace fp {
namespace cpu {
inline namespace FP_CAP {
namespace staging {

// Floats per vector: one AVX2 register, also with AVX-512 (the width these kernels were written and
// measured with), one SSE/NEON register on the default capability.
constexpr int64_t kLanes = kFloatLanes < 8 ? kFloatLanes : 8;
typedef float vec __attribute__((vector_size(kLanes * sizeof(float))));

inline vec load(const float* p) {
  vec v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Calls f(std::integral_constant<int, K>{}) with K = min(n, Max) (n >= 1): turns a runtime tile width
// (the last tile of a row is narrower) into the template argument of a register-blocked kernel.
template <int Max, class F>
inline void with_width(int64_t n, F&& f) {
  if constexpr (Max > 1) {
    if (n < Max) return with_width<Max - 1>(n, std::forward<F>(f));
  }
  f(std::integral_constant<int, Max>{});
}

inline float hsum(vec v) {
  float s = 0.0f;
  for (int k = 0; k < kLanes; ++k) s += v[k];
  return s;
}

struct Staging {
  int64_t Hp, Wv, nvec, row;  // padded height, row width (multiple of kLanes), vectors per row, kx block size
  int64_t channel;            // floats per staged channel: kw * Hp * Wv
  explicit Staging(const ConvGeometry& g)
      : Hp(g.H + 2 * g.ph),
        Wv((g.Wo + kLanes - 1) / kLanes * kLanes),
        nvec(Wv / kLanes),
        row(Hp * Wv),
        channel(g.kw * Hp * Wv) {}
};

// xs_c <- the kw shifted copies of channel xc (H x W) described at the top of the file.
inline void stage_input_channel(const ConvGeometry& g, const Staging& s, const float* xc, float* xs_c) {
  for (int64_t kx = 0; kx < g.kw; ++kx)
    for (int64_t yp = 0; yp < s.Hp; ++yp) {
      float* out = xs_c + kx * s.row + yp * s.Wv;
      const int64_t y = yp - g.ph;
      if (y < 0 || y >= g.H) {
        std::fill(out, out + s.Wv, 0.0f);
        continue;
      }
      const float* src = xc + y * g.W;
      for (int64_t ox = 0; ox < s.Wv; ++ox) {
        const int64_t xi = ox * g.sw + kx * g.dw - g.pw;
        out[ox] = (ox < g.Wo && xi >= 0 && xi < g.W) ? src[xi] : 0.0f;
      }
    }
}

// gs_o <- grad_y of one filter (Ho x Wo) as Ho rows of Wv floats, zero beyond Wo.
inline void stage_output_filter(const ConvGeometry& g, const Staging& s, const float* gy_o, float* gs_o) {
  for (int64_t oy = 0; oy < g.Ho; ++oy) {
    std::memcpy(gs_o + oy * s.Wv, gy_o + oy * g.Wo, static_cast<size_t>(g.Wo) * sizeof(float));
    std::fill(gs_o + oy * s.Wv + g.Wo, gs_o + (oy + 1) * s.Wv, 0.0f);
  }
}

inline std::vector<int64_t> used_channels(const ConvGeometry& g, const int32_t* row_ptr, const int32_t* col) {
  std::vector<char> used(static_cast<size_t>(g.C), 0);
  for (int64_t j = 0; j < row_ptr[g.O]; ++j) used[static_cast<size_t>(col[j])] = 1;
  std::vector<int64_t> list;
  for (int64_t c = 0; c < g.C; ++c)
    if (used[static_cast<size_t>(c)]) list.push_back(c);
  return list;
}

inline std::vector<int64_t> kept_filters(const ConvGeometry& g, const int32_t* row_ptr) {
  std::vector<int64_t> list;
  for (int64_t o = 0; o < g.O; ++o)
    if (row_ptr[o + 1] > row_ptr[o]) list.push_back(o);
  return list;
}

// The channel list every kept filter shares, or false when two kept filters read different channels.
inline bool uniform_channels(const ConvGeometry& g, const int32_t* row_ptr, const int32_t* col,
                             std::vector<int64_t>& channels) {
  int64_t first = -1;
  for (int64_t o = 0; o < g.O; ++o) {
    const int64_t count = row_ptr[o + 1] - row_ptr[o];
    if (count == 0) continue;
    if (first < 0) {
      first = o;
      channels.assign(col + row_ptr[o], col + row_ptr[o + 1]);
    } else if (count != static_cast<int64_t>(channels.size()) ||
               !std::equal(col + row_ptr[o], col + row_ptr[o + 1], col + row_ptr[first])) {
      return false;
    }
  }
  return true;
}

}  // namespace staging
}  // namespace FP_CAP
}  // namespace cpu
}  // namespace fp

#endif  // FASTPRUNE_CPU_MASKED_CONV2D_STAGING_H
