// Masked 2-D convolution on the CPU: direct convolution over the kept (filter, input channel) pairs only.
//
// Layout. Per image, each used input channel c is staged once as kw horizontally shifted copies
//     xs[c][kx][yp][ox] = x_pad[c][yp][ox * sw + kx * dw]     (ox < Wo; lanes up to Wv = roundup(Wo, 8) are
//     0)
// so that every tap (ky, kx) of every output row reads one contiguous, zero-padded row of Wv floats,
// whatever the stride, padding and dilation. The three passes are then register-tiled FMA loops over
// those rows:
//     forward          y[o][oy][:]  = b_o + sum_{(o,i) kept} sum_{ky,kx} w * xs[i][kx][oy*sh + ky*dh][:]
//     backward input   gxs[i][kx][yp][:] = sum_{(o,i) kept} sum_{ky: yp = oy*sh + ky*dh} w * gy[o][oy][:],
//                      then folded back: grad_x[i][y][x] = sum_{kx: x + pw = ox*sw + kx*dw} gxs[i][kx][y +
//                      ph][ox]
//     backward weight  gw[(o,i)][ky][kx] = sum_n sum_{oy, ox} gy[o][oy][ox] * xs[i][kx][oy*sh + ky*dh][ox]
// so the work is proportional to the number of kept kernels. Images are processed one after another;
// within an image threads split filters (forward), input channels (backward input) or kept pairs
// (backward weight). Every output element is summed by one thread in a fixed order (pairs ascending,
// taps ascending, images ascending): results are bitwise the same for every thread count, no atomics.
#include "cpu/masked_conv2d.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "cpu/conv2d_blocked.h"
#include "cpu/masked_conv2d_staging.h"

namespace fp {
namespace cpu {
namespace {

using namespace staging;  // NOLINT: the shared vector type and staging helpers

// ---- forward -----------------------------------------------------------------------------------------

// One filter's work list, pair after pair and tap after tap: where the staged row of each kept tap starts
// (relative to the tile's first row and column) and its weight. Flat, so the hot loop has no index math.
struct FilterTaps {
  const int64_t* offset;
  const float* weight;
  int64_t count;
};

// R output rows x NV vectors of one filter, accumulated in registers over all its kept taps
// (R * NV ~ 8 independent FMA chains hide the FMA latency).
template <int R, int NV>
void forward_tile(const float* base, const FilterTaps& f, int64_t row_step, float bias, float* y_row,
                  int64_t y_stride, int64_t lanes) {
  vec acc[R][NV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = vec{} + bias;
  for (int64_t e = 0; e < f.count; ++e) {
    const float wk = f.weight[e];
    const float* p = base + f.offset[e];
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < NV; ++v) acc[r][v] += wk * load(p + r * row_step + v * kLanes);
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v)
      store_lanes(y_row + r * y_stride + v * kLanes, acc[r][v], lanes - v * kLanes);
}

// Columns c0 .. c0 + NV * 8 of every kept filter of one image. Row tiles outside, filters inside: the
// staged rows a tile reads (all kept channels) stay in cache while every filter uses them.
template <int NV>
void forward_columns(const ConvGeometry& g, const Staging& s, const float* xs,
                     const std::vector<FilterTaps>& taps, const float* bias, int64_t c0, float* y_n) {
  constexpr int R = NV == 1 ? 8 : NV == 2 ? 4 : NV == 3 ? 3 : 2;
  const int64_t row_step = g.sh * s.Wv;
  int64_t oy = 0;
  for (; oy < g.Ho; oy += oy + R <= g.Ho ? R : 1) {
    const bool full = oy + R <= g.Ho;
    for (int64_t o = 0; o < g.O; ++o) {
      if (taps[o].count == 0) continue;
      const float b = bias ? bias[o] : 0.0f;
      float* out = y_n + (o * g.Ho + oy) * g.Wo + c0;
      if (full)
        forward_tile<R, NV>(xs + oy * row_step + c0, taps[o], row_step, b, out, g.Wo, g.Wo - c0);
      else
        forward_tile<1, NV>(xs + oy * row_step + c0, taps[o], row_step, b, out, g.Wo, g.Wo - c0);
    }
  }
}

}  // namespace

// Threads take whole images (each with its own staging buffer): no barrier per image, which matters on
// a loaded machine where a descheduled thread stalls every barrier.
void masked_conv2d_forward(const ConvGeometry& g, const float* x, const int32_t* row_ptr, const int32_t* col,
                           const float* kernels, const float* bias, float* y) {
  std::vector<int64_t> shared;
  if (uniform_channels(g, row_ptr, col, shared)) {
    // Filter and channel masks: the kept filters form one dense block (register-blocked over filters);
    // the pruned ones output their bias.
    const std::vector<int64_t> filters = kept_filters(g, row_ptr);
    std::vector<float> kept_bias;
    if (bias)
      for (int64_t o : filters) kept_bias.push_back(bias[o]);
    const DenseBlock block{static_cast<int64_t>(filters.size()),
                           static_cast<int64_t>(shared.size()),
                           filters.data(),
                           shared.data(),
                           kernels,
                           bias ? kept_bias.data() : nullptr,
                           false};
    conv2d_blocked_forward(g, x, block, y);
    const int64_t plane = g.Ho * g.Wo;
    for (int64_t o = 0; o < g.O; ++o)
      if (row_ptr[o + 1] == row_ptr[o])
        for (int64_t n = 0; n < g.N; ++n)
          std::fill(y + (n * g.O + o) * plane, y + (n * g.O + o + 1) * plane, bias ? bias[o] : 0.0f);
    return;
  }
  const Staging s(g);
  const std::vector<int64_t> channels = used_channels(g, row_ptr, col);
  const int64_t taps = g.kh * g.kw, nnz = row_ptr[g.O];
  std::vector<int64_t> offsets(static_cast<size_t>(nnz * taps));
  for (int64_t j = 0; j < nnz; ++j)
    for (int64_t ky = 0; ky < g.kh; ++ky)
      for (int64_t kx = 0; kx < g.kw; ++kx)
        offsets[j * taps + ky * g.kw + kx] = col[j] * s.channel + kx * s.row + ky * g.dh * s.Wv;
  std::vector<FilterTaps> filter_taps(static_cast<size_t>(g.O));
  for (int64_t o = 0; o < g.O; ++o)
    filter_taps[o] = FilterTaps{offsets.data() + row_ptr[o] * taps, kernels + row_ptr[o] * taps,
                                (row_ptr[o + 1] - row_ptr[o]) * taps};
#pragma omp parallel
  {
    std::vector<float> xs(channels.empty() ? 0 : static_cast<size_t>(g.C * s.channel));
#pragma omp for schedule(dynamic, 1)
    for (int64_t n = 0; n < g.N; ++n) {
      float* y_n = y + n * g.O * g.Ho * g.Wo;
      for (int64_t o = 0; o < g.O; ++o)  // a pruned filter outputs its bias
        if (row_ptr[o + 1] == row_ptr[o])
          std::fill(y_n + o * g.Ho * g.Wo, y_n + (o + 1) * g.Ho * g.Wo, bias ? bias[o] : 0.0f);
      if (channels.empty()) continue;
      for (int64_t c : channels)
        stage_input_channel(g, s, x + (n * g.C + c) * g.H * g.W, xs.data() + c * s.channel);
      for (int64_t v0 = 0; v0 < s.nvec; v0 += 4) {
        const int64_t c0 = v0 * kLanes;
        with_width<4>(s.nvec - v0, [&](auto nv) {
          forward_columns<decltype(nv)::value>(g, s, xs.data(), filter_taps, bias, c0, y_n);
        });
      }
    }
  }
}

}  // namespace cpu
}  // namespace fp
