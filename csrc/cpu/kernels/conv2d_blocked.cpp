// Register-blocked direct convolution (see conv2d_blocked.h): vectorised over output positions, so odd
// channel counts (a pruned layer's 10, 20 or 39 filters) cost what their FLOPs say. Libraries that put
// channels in the vector lanes (oneDNN's blocked formats) round every count up to a multiple of 8 or 16.
// This file: the forward passes (dense blocks, and kernel-level masks one filter at a time); the layout and
// microkernel are described in conv2d_blocked_plan.h, the weight gradient is in conv2d_blocked_backward.cpp.
// Dense 3x3 stride-1 blocks whose buffers fit L2 go to Winograd F(2x2, 3x3) (conv2d_winograd.cpp), which
// runs its GEMMs on the same microkernel.
#include "cpu/kernels/conv2d_blocked.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cpu/kernels/conv2d_blocked_plan.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#include "cpu/kernels/capability.h"

namespace fp {
namespace cpu {
inline namespace FP_CAP {

using namespace blocked;  // NOLINT: the plan, microkernel and vector helpers

namespace {

// The forward pass's image loop around compute(staging, tile, item, y_n), which runs output tile `tile`
// (plan.tile positions) of work item `item` (a filter block, or one filter of a sparse layer) of one image;
// `fills` are set in every image.
template <class Compute>
void forward_images(const ConvGeometry& g, const Plan& plan, const float* x, float* y, int64_t items_per_tile,
                    int64_t flops_per_image, const std::vector<PlaneFill>& fills, Compute&& compute) {
  const int64_t image_in = g.C * g.H * g.W, image_out = g.O * plan.L.P;
  int threads = 1;
#ifdef _OPENMP
  threads = omp_get_max_threads();
#endif
  if (g.N >= threads) {  // threads take whole images, each staged into the thread's own buffer
#pragma omp parallel
    {
      AlignedFloats s(plan.staging_floats());
#pragma omp for schedule(dynamic, 1)
      for (int64_t n = 0; n < g.N; ++n) {
        fill_planes(fills, plan.L.P, y + n * image_out);
        for (int64_t j = 0; j < plan.block.n_channels; ++j)
          plan.stage(x + n * image_in, j, s.data() + j * plan.L.channel);
        // Tiles in groups whose staged rows stay in L2, each item (filter block) running over the whole
        // group: its weights (kFilters x K floats) are then read once per group, not once per tile.
        for (int64_t t0 = 0; t0 < plan.n_tiles; t0 += plan.tile_group)
          for (int64_t i = 0; i < items_per_tile; ++i)
            for (int64_t t = t0; t < std::min(plan.n_tiles, t0 + plan.tile_group); ++t)
              compute(s.data(), t, i, y + n * image_out);
      }
    }
    return;
  }
  // Fewer images than threads (batch 1): one shared staging per image, threads split its tiles x items.
  // Small layers stay on one thread: a parallel region costs more than their few microseconds.
  AlignedFloats s(plan.staging_floats());
  const bool parallel = flops_per_image >= (int64_t{1} << 18);
  const int64_t items = plan.n_tiles * items_per_tile;
  for (int64_t n = 0; n < g.N; ++n) {
    fill_planes(fills, plan.L.P, y + n * image_out);
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t j = 0; j < plan.block.n_channels; ++j)
      plan.stage(x + n * image_in, j, s.data() + j * plan.L.channel);
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t i = 0; i < items; ++i)
      compute(s.data(), i / items_per_tile, i % items_per_tile, y + n * image_out);
  }
}

}  // namespace

void conv2d_blocked_forward(const ConvGeometry& g, const float* x, const DenseBlock& block, float* y) {
  std::vector<PlaneFill> fills;
  if (block.others) {
    std::vector<char> listed(static_cast<size_t>(g.O), 0);
    for (int64_t f = 0; f < block.n_filters; ++f) listed[static_cast<size_t>(block.filters[f])] = 1;
    for (int64_t o = 0; o < g.O; ++o)
      if (!listed[static_cast<size_t>(o)]) fills.push_back({o, block.others[o]});
  }
  if (block.n_channels == 0)  // no input: every listed filter outputs its bias
    for (int64_t f = 0; f < block.n_filters; ++f) {
      const float v = block.bias ? block.bias[f] : 0.0f;
      fills.push_back({block.filters[f], block.relu ? std::max(v, 0.0f) : v});
    }
  if (g.N == 0) return;
  if (block.n_filters == 0 || block.n_channels == 0) {
    for (int64_t n = 0; n < g.N; ++n) fill_planes(fills, g.Ho * g.Wo, y + n * g.O * g.Ho * g.Wo);
    return;
  }
  if (winograd_takes(g, block)) {
    conv2d_winograd_forward(g, x, block, fills, y);
    return;
  }
  const Plan plan(g, block, Pitch::kWideRows);
  forward_images(g, plan, x, y, plan.split.blocks, block.n_filters * plan.L.P * plan.K, fills,
                 [&](const float* s, int64_t t, int64_t b, float* y_n) { plan.compute(s, t, b, y_n); });
}

void conv2d_sparse_forward(const ConvGeometry& g, const float* x, const int32_t* row_ptr, const int32_t* col,
                           const std::vector<int64_t>& channels, const float* kernels, const float* bias,
                           float* y) {
  const int64_t P = g.Ho * g.Wo, taps = g.kh * g.kw;
  std::vector<int64_t> slot(static_cast<size_t>(g.C), -1), kept;
  for (size_t j = 0; j < channels.size(); ++j)
    slot[static_cast<size_t>(channels[j])] = static_cast<int64_t>(j);
  std::vector<PlaneFill> fills;  // a pruned filter outputs its bias
  for (int64_t o = 0; o < g.O; ++o)
    if (row_ptr[o + 1] > row_ptr[o])
      kept.push_back(o);
    else
      fills.push_back({o, bias ? bias[o] : 0.0f});
  if (g.N == 0) return;
  if (kept.empty()) {
    for (int64_t n = 0; n < g.N; ++n) fill_planes(fills, P, y + n * g.O * P);
    return;
  }
  // The staging of every used channel, as for a dense block; then each kept pair's taps pick their
  // offsets from the dense table (channel slot, tap).
  const DenseBlock all{
      0, static_cast<int64_t>(channels.size()), nullptr, channels.data(), nullptr, nullptr, false};
  const Plan plan(g, all, Pitch::kNever);  // a filter's rows copied out one by one cost more
  const int64_t nnz = row_ptr[g.O];
  std::vector<int64_t> offsets(static_cast<size_t>(nnz * taps));
  for (int64_t j = 0; j < nnz; ++j)
    for (int64_t t = 0; t < taps; ++t)
      offsets[static_cast<size_t>(j * taps + t)] = plan.offsets[static_cast<size_t>(slot[col[j]] * taps + t)];
  forward_images(g, plan, x, y, static_cast<int64_t>(kept.size()), nnz * taps * P, fills,
                 [&](const float* s, int64_t t, int64_t i, float* y_n) {
                   const int64_t o = kept[static_cast<size_t>(i)], first = row_ptr[o] * taps;
                   float* plane[1] = {y_n + o * P};
                   plan.with_tile(t, 1, plane, [&](int64_t p0, float* const* y_p0, int64_t lanes) {
                     with_block(1, (lanes + kLanes - 1) / kLanes, [&](auto, auto nv) {
                       microkernel<1, decltype(nv)::value>(s + p0, offsets.data() + first, kernels + first,
                                                           (row_ptr[o + 1] - row_ptr[o]) * taps,
                                                           bias ? bias + o : nullptr, false, false, y_p0,
                                                           lanes);
                     });
                   });
                 });
}

}  // namespace FP_CAP
}  // namespace cpu
}  // namespace fp
