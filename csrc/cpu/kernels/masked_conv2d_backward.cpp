// Masked 2-D convolution on the CPU, backward passes.
//
// Layout (masked_conv2d_staging.h). Per image, each used input channel c is staged as kw horizontally
// shifted copies xs[c][kx][yp][ox] = x_pad[c][yp][ox * sw + kx * dw] (ox < Wo, lanes up to
// Wv = roundup(Wo, kLanes) zero), so every tap of every output row reads one contiguous row:
//     grad_x  stride 1: the forward pass on grad_y with transposed lists and flipped kernels (so the
//             kernels of conv2d_blocked.cpp); otherwise gxs[i][kx][yp][:] = sum over the transposed list of
//             i and the (ky, oy) reaching row yp, then folded back to (H, W)
//     grad_w  filter and channel masks: the blocked weight gradient of conv2d_blocked.cpp; otherwise, per
//             kept pair and tap, dot products of staged grad_y rows and staged input rows
// Fixed summation orders, no atomics: bitwise the same for every thread count.

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "cpu/kernels/capability.h"
#include "cpu/kernels/conv2d_blocked.h"
#include "cpu/kernels/masked_conv2d.h"
#include "cpu/kernels/masked_conv2d_staging.h"

namespace fp {
namespace cpu {
inline namespace FP_CAP {
namespace {

using namespace staging;  // NOLINT: the shared vector type and staging helpers

// One scratch buffer per OpenMP thread, allocated before the parallel region: an allocation failing inside
// one would call std::terminate (no exception may leave an OpenMP region); here it reaches the C ABI as
// FP_ERR_OUT_OF_MEMORY (found by the C ABI fuzz harness: an empty batch of 2^30 x 2^30 images aborted).
class ThreadBuffers {
 public:
  explicit ThreadBuffers(int64_t size)
      : buffers_(static_cast<size_t>(omp_get_max_threads()), std::vector<float>(static_cast<size_t>(size))) {}
  std::vector<float>& mine() { return buffers_[static_cast<size_t>(omp_get_thread_num())]; }

 private:
  std::vector<std::vector<float>> buffers_;
};

// ---- backward input ----------------------------------------------------------------------------------

// gxs row (yp, taps kx0 .. kx0 + KT) x NV vectors from column c0: sum over the transposed list of input
// channel i and the (ky, oy) pairs that reach row yp.
template <int KT, int NV>
void input_tile(const ConvGeometry& g, const Staging& s, const float* gs, const int32_t* filters,
                const int32_t* pairs, int64_t count, const float* kernels, const int64_t* ky_list,
                const int64_t* oy_list, int64_t reach, int64_t kx0, int64_t c0, float* gxs_row) {
  vec acc[KT][NV] = {};
  const int64_t taps = g.kh * g.kw;
  for (int64_t m = 0; m < count; ++m) {
    const float* w = kernels + static_cast<int64_t>(pairs[m]) * taps + kx0;
    const float* grow = gs + static_cast<int64_t>(filters[m]) * g.Ho * s.Wv + c0;
    for (int64_t q = 0; q < reach; ++q) {
      const float* wq = w + ky_list[q] * g.kw;
      const float* gq = grow + oy_list[q] * s.Wv;
      for (int v = 0; v < NV; ++v) {
        const vec gv = load(gq + v * kLanes);
        for (int k = 0; k < KT; ++k) acc[k][v] += wq[k] * gv;
      }
    }
  }
  for (int k = 0; k < KT; ++k)
    for (int v = 0; v < NV; ++v)
      std::memcpy(gxs_row + k * g.H * s.Wv + c0 + v * kLanes, &acc[k][v], sizeof(vec));
}

template <int KT>
void input_taps(const ConvGeometry& g, const Staging& s, const float* gs, const int32_t* filters,
                const int32_t* pairs, int64_t count, const float* kernels, const int64_t* ky_list,
                const int64_t* oy_list, int64_t reach, int64_t kx0, float* gxs_row) {
  for (int64_t v0 = 0; v0 < s.nvec; v0 += 4) {
    const int64_t c0 = v0 * kLanes;
    with_width<4>(s.nvec - v0, [&](auto nv) {
      input_tile<KT, decltype(nv)::value>(g, s, gs, filters, pairs, count, kernels, ky_list, oy_list, reach,
                                          kx0, c0, gxs_row);
    });
  }
}

// grad_x of input channel i of one image: the gxs rows of its H unpadded rows (kw copies of H x Wv,
// thread-local), then the fold back to H x W.
void input_channel(const ConvGeometry& g, const Staging& s, const float* gs, const int32_t* filters,
                   const int32_t* pairs, int64_t count, const float* kernels, float* gxs, float* gx_i) {
  if (count == 0) {
    std::fill(gx_i, gx_i + g.H * g.W, 0.0f);
    return;
  }
  std::vector<int64_t> ky_list(static_cast<size_t>(g.kh)), oy_list(static_cast<size_t>(g.kh));
  for (int64_t y = 0; y < g.H; ++y) {
    const int64_t yp = y + g.ph;
    int64_t reach = 0;  // the (ky, oy) with oy * sh + ky * dh = yp, ky ascending
    for (int64_t ky = 0; ky < g.kh; ++ky) {
      const int64_t t = yp - ky * g.dh;
      if (t < 0 || t % g.sh != 0 || t / g.sh >= g.Ho) continue;
      ky_list[reach] = ky;
      oy_list[reach++] = t / g.sh;
    }
    float* row = gxs + y * s.Wv;
    for (int64_t kx0 = 0; kx0 < g.kw; kx0 += 3) {
      const int64_t kt = std::min<int64_t>(3, g.kw - kx0);
      float* dst = row + kx0 * g.H * s.Wv;
      if (kt == 1)
        input_taps<1>(g, s, gs, filters, pairs, count, kernels, ky_list.data(), oy_list.data(), reach, kx0,
                      dst);
      else if (kt == 2)
        input_taps<2>(g, s, gs, filters, pairs, count, kernels, ky_list.data(), oy_list.data(), reach, kx0,
                      dst);
      else
        input_taps<3>(g, s, gs, filters, pairs, count, kernels, ky_list.data(), oy_list.data(), reach, kx0,
                      dst);
    }
  }
  for (int64_t y = 0; y < g.H; ++y)
    for (int64_t x = 0; x < g.W; ++x) {
      float sum = 0.0f;
      const int64_t xp = x + g.pw;
      for (int64_t kx = 0; kx < g.kw; ++kx) {
        const int64_t t = xp - kx * g.dw;
        if (t < 0 || t % g.sw != 0 || t / g.sw >= g.Wo) continue;
        sum += gxs[(kx * g.H + y) * s.Wv + t / g.sw];
      }
      gx_i[y * g.W + x] = sum;
    }
}

// ---- backward weight ---------------------------------------------------------------------------------

// out[t] += sum_{oy, ox} gs_o[oy][ox] * xs_i[off[t] + oy * sh * Wv + ox] for T taps; U rows at a time
// give T * U independent accumulators.
template <int T>
void weight_taps(const ConvGeometry& g, const Staging& s, const float* gs_o, const float* xs_i,
                 const int64_t* off, float* out) {
  constexpr int U = T >= 5 ? 1 : T >= 3 ? 2 : 4;
  vec acc[T][U] = {};
  const int64_t row_step = g.sh * s.Wv;
  int64_t oy = 0;
  for (; oy + U <= g.Ho; oy += U)
    for (int64_t v = 0; v < s.nvec; ++v)
      for (int u = 0; u < U; ++u) {
        const vec gv = load(gs_o + (oy + u) * s.Wv + v * kLanes);
        const float* xr = xs_i + (oy + u) * row_step + v * kLanes;
        for (int t = 0; t < T; ++t) acc[t][u] += gv * load(xr + off[t]);
      }
  for (; oy < g.Ho; ++oy)
    for (int64_t v = 0; v < s.nvec; ++v) {
      const vec gv = load(gs_o + oy * s.Wv + v * kLanes);
      const float* xr = xs_i + oy * row_step + v * kLanes;
      for (int t = 0; t < T; ++t) acc[t][0] += gv * load(xr + off[t]);
    }
  for (int t = 0; t < T; ++t) {
    vec total = acc[t][0];
    for (int u = 1; u < U; ++u) total += acc[t][u];
    out[t] += hsum(total);
  }
}

void weight_pair(const ConvGeometry& g, const Staging& s, const float* gs_o, const float* xs_i,
                 const std::vector<int64_t>& offsets, float* out) {
  const int64_t taps = static_cast<int64_t>(offsets.size());
  for (int64_t t0 = 0; t0 < taps; t0 += 9) {
    const int64_t* off = offsets.data() + t0;
    with_width<9>(taps - t0,
                  [&](auto nt) { weight_taps<decltype(nt)::value>(g, s, gs_o, xs_i, off, out + t0); });
  }
}

}  // namespace

void masked_conv2d_backward_input(const ConvGeometry& g, const float* grad_y, const int32_t* row_ptr,
                                  const int32_t* col, const float* kernels, float* grad_x) {
  if (g.N == 0) return;  // nothing to write (and no staging buffers sized by H x W to allocate)
  const Staging s(g);
  // Transposed lists: for input channel i, the kept pairs (o, j) in ascending o (a fixed summation order).
  const int64_t nnz = row_ptr[g.O];
  std::vector<int32_t> start(static_cast<size_t>(g.C + 1), 0), filters(static_cast<size_t>(nnz)),
      pairs(static_cast<size_t>(nnz));
  for (int64_t j = 0; j < nnz; ++j) ++start[static_cast<size_t>(col[j]) + 1];
  for (int64_t c = 0; c < g.C; ++c) start[c + 1] += start[c];
  std::vector<int32_t> fill(start.begin(), start.end() - 1);
  for (int64_t o = 0; o < g.O; ++o)
    for (int32_t j = row_ptr[o]; j < row_ptr[o + 1]; ++j) {
      const int32_t at = fill[static_cast<size_t>(col[j])]++;
      filters[at] = static_cast<int32_t>(o);
      pairs[at] = j;
    }
  if (g.sh == 1 && g.sw == 1 && g.ph <= g.dh * (g.kh - 1) && g.pw <= g.dw * (g.kw - 1)) {
    // Stride 1: grad_x is the forward masked convolution of grad_y with the transposed lists and the
    // flipped kernels, padding d (k - 1) - p; it runs on the forward's faster tiles.
    const int64_t taps = g.kh * g.kw;
    std::vector<float> flipped(static_cast<size_t>(nnz * taps));
    for (int64_t at = 0; at < nnz; ++at)
      for (int64_t t = 0; t < taps; ++t) flipped[at * taps + t] = kernels[pairs[at] * taps + taps - 1 - t];
    const ConvGeometry t{
        g.N,  g.O,  g.Ho, g.Wo, g.C, g.kh, g.kw, 1, 1, g.dh * (g.kh - 1) - g.ph, g.dw * (g.kw - 1) - g.pw,
        g.dh, g.dw, g.H,  g.W};
    masked_conv2d_forward(t, grad_y, start.data(), filters.data(), flipped.data(), nullptr, grad_x);
    return;
  }
  const std::vector<int64_t> kept = kept_filters(g, row_ptr);
  ThreadBuffers gs_of(kept.empty() ? 0 : g.O * g.Ho * s.Wv), gxs_of(g.kw * g.H * s.Wv);
#pragma omp parallel
  {
    std::vector<float>& gs = gs_of.mine();
    std::vector<float>& gxs = gxs_of.mine();
#pragma omp for schedule(dynamic, 1)
    for (int64_t n = 0; n < g.N; ++n) {
      for (int64_t o : kept)
        stage_output_filter(g, s, grad_y + (n * g.O + o) * g.Ho * g.Wo, gs.data() + o * g.Ho * s.Wv);
      for (int64_t i = 0; i < g.C; ++i)
        input_channel(g, s, gs.data(), filters.data() + start[i], pairs.data() + start[i],
                      start[i + 1] - start[i], kernels, gxs.data(), grad_x + (n * g.C + i) * g.H * g.W);
    }
  }
}

// Images are split into a fixed number of consecutive groups (from the sizes alone, never the thread
// count); each group sums its images in order into its own partial gradient, and the partials are added
// in group order: the same bits for every thread count.
void masked_conv2d_backward_weight(const ConvGeometry& g, const float* x, const float* grad_y,
                                   const int32_t* row_ptr, const int32_t* col, float* grad_kernels) {
  const int64_t nnz = row_ptr[g.O], taps = g.kh * g.kw, size = nnz * taps;
  std::fill(grad_kernels, grad_kernels + size, 0.0f);
  if (nnz == 0 || g.N == 0) return;
  std::vector<int64_t> shared;
  if (uniform_channels(g, row_ptr, col, shared)) {
    // Filter and channel masks: one dense block, whose gradient (kept filters x shared channels x taps)
    // is exactly grad_kernels' packed order.
    const std::vector<int64_t> filters = kept_filters(g, row_ptr);
    const DenseBlock block{static_cast<int64_t>(filters.size()),
                           static_cast<int64_t>(shared.size()),
                           filters.data(),
                           shared.data(),
                           nullptr,
                           nullptr,
                           false};
    conv2d_blocked_backward_weight(g, x, grad_y, block, grad_kernels);
    return;
  }
  const Staging s(g);
  std::vector<int32_t> owner(static_cast<size_t>(nnz));  // filter of each kept pair
  for (int64_t o = 0; o < g.O; ++o)
    for (int32_t j = row_ptr[o]; j < row_ptr[o + 1]; ++j) owner[j] = static_cast<int32_t>(o);
  std::vector<int64_t> offsets;  // where tap (ky, kx) starts in a staged channel, relative to row oy * sh
  for (int64_t ky = 0; ky < g.kh; ++ky)
    for (int64_t kx = 0; kx < g.kw; ++kx) offsets.push_back(kx * s.row + ky * g.dh * s.Wv);
  const std::vector<int64_t> channels = used_channels(g, row_ptr, col), kept = kept_filters(g, row_ptr);
  // Up to 16 groups (enough for 16 threads), fewer when the partials would pass 2^22 floats (16 MB).
  const int64_t groups = std::max<int64_t>(1, std::min<int64_t>({g.N, 16, (int64_t{1} << 22) / size}));
  std::vector<float> partial(static_cast<size_t>((groups - 1) * size), 0.0f);
  ThreadBuffers xs_of(g.C * s.channel), gs_of(g.O * g.Ho * s.Wv);
#pragma omp parallel
  {
    std::vector<float>& xs = xs_of.mine();
    std::vector<float>& gs = gs_of.mine();
#pragma omp for schedule(dynamic, 1)
    for (int64_t group = 0; group < groups; ++group) {
      float* out = group == 0 ? grad_kernels : partial.data() + (group - 1) * size;
      for (int64_t n = group * g.N / groups; n < (group + 1) * g.N / groups; ++n) {
        for (int64_t c : channels)
          stage_input_channel(g, s, x + (n * g.C + c) * g.H * g.W, xs.data() + c * s.channel);
        for (int64_t o : kept)
          stage_output_filter(g, s, grad_y + (n * g.O + o) * g.Ho * g.Wo, gs.data() + o * g.Ho * s.Wv);
        for (int64_t j = 0; j < nnz; ++j)
          weight_pair(g, s, gs.data() + owner[j] * g.Ho * s.Wv, xs.data() + col[j] * s.channel, offsets,
                      out + j * taps);
      }
    }
#pragma omp for schedule(static)
    for (int64_t e = 0; e < size; ++e)
      for (int64_t group = 1; group < groups; ++group) grad_kernels[e] += partial[(group - 1) * size + e];
  }
}

}  // namespace FP_CAP
}  // namespace cpu
}  // namespace fp
