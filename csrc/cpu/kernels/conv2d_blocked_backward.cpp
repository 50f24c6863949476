// Weight gradient of a dense block of the register-blocked convolution (see conv2d_blocked_plan.h for the
// staging): per (filter, tap) a vector of 16 partial sums over output positions,
//     acc[f][k] += grad_y[n][f][q .. q + 16) * S_n[off_k + q .. + 16)     (images in order, q ascending)
// (grad_y staged at the pitch, zero in discarded columns), kept in memory across images and summed across
// lanes at the end. Threads split (filter, tap) blocks, so each sum has one fixed order whatever the
// thread count. 3x3 stride-1 blocks whose per-image transforms fit L2 take Winograd F(2x2, 3x3) instead
// (conv2d_winograd_backward.cpp).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "cpu/kernels/conv2d_blocked.h"
#include "cpu/kernels/conv2d_blocked_plan.h"
#include "cpu/kernels/vector_gather.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#include "cpu/kernels/capability.h"

namespace fp {
namespace cpu {
inline namespace FP_CAP {
namespace {

using namespace blocked;  // NOLINT: the plan and vector helpers

// acc[f * KB + k] (vectors in memory) += sum over positions [0, Qv) of `images` images of grad_y plane f
// times the staged row at offsets[k]; Qv is a whole number of vectors (grad_y is zero past the last
// position). Not inlined: inlined into the driver, GCC ran out of registers and spilled accumulators in the
// inner loop (1.8 vs 1.0 ms on ResNet-56 stage 1); and no tail: with a partial last vector GCC kept the
// accumulators in memory across images (~25% slower on 8 x 8 maps).
template <int FB, int KB>
__attribute__((noinline)) void weight_microkernel(const float* const* gy, int64_t gy_stride, const float* s,
                                                  int64_t s_stride, int64_t images, const int64_t* offsets,
                                                  int64_t Qv, vec* acc) {
  if (images <= 0 || Qv <= 0) return;  // then both loops below run: do-while, which GCC compiles tighter
  vec a[FB][KB];
  for (int f = 0; f < FB; ++f)
    for (int k = 0; k < KB; ++k) a[f][k] = acc[f * KB + k];
  // Row pointers in locals: read through the arrays, GCC reloads them from memory at every step.
  const float* g[FB];
  const float* xr[KB];
  int64_t i = 0;
  do {  // a few images in a row: small maps amortise the acc traffic
    for (int f = 0; f < FB; ++f) g[f] = gy[f] + i * gy_stride;
    for (int k = 0; k < KB; ++k) xr[k] = s + i * s_stride + offsets[k];
    // One step: KB staged rows and then, filter by filter, one grad_y vector: FB * KB <= 24 accumulators,
    // KB rows and 1 fit the 32 registers (all FB grad_y vectors at once may not, and GCC then folds loads
    // into the FMAs).
    int64_t p = 0;
    do {
      vec xv[KB];
      for (int k = 0; k < KB; ++k) {
        xv[k] = load(xr[k] + p);
        FP_KEEP_IN_REGISTER(xv[k]);  // each staged vector loaded once: GCC would reload it in each of FB FMAs
      }
      for (int f = 0; f < FB; ++f) {
        vec gv = load(g[f] + p);
        FP_KEEP_IN_REGISTER(gv);  // keeps gv in a register: GCC would fold its load into each of the KB FMAs
        for (int k = 0; k < KB; ++k) a[f][k] += gv * xv[k];
      }
      p += kLanes;
    } while (p < Qv);
  } while (++i < images);
  for (int f = 0; f < FB; ++f)
    for (int k = 0; k < KB; ++k) acc[f * KB + k] = a[f][k];
}

}  // namespace

void conv2d_blocked_backward_weight(const ConvGeometry& g, const float* x, const float* grad_y,
                                    const DenseBlock& block, float* grad_weights) {
  if (g.N > 0 && winograd_backward_takes(g, block)) {  // 3x3 stride-1 blocks of small maps
    conv2d_winograd_backward_weight(g, x, grad_y, block, grad_weights);
    return;
  }
  // Shifted staging (no discarded columns, grad_y read in place) while an image's staging stays within
  // 128 KB, so that a call still runs several images out of L2: ResNet-56 stage 3 (64 channels at 8 x 8,
  // 61 KB shifted) 1.00 -> 0.85 ms; pitched rows beyond: ResNet-50 layer3 (256 channels at 14 x 14, 688 KB
  // shifted) measured 13-14 ms pitched against 19 ms shifted once, equal (14-16 ms) in a later A/B
  // (2-core Zen 4, filter mask 50%).
  const bool small = Layout(g, Pitch::kWideRows).channel * block.n_channels <= (int64_t{1} << 15);
  const Plan plan(g, block, small ? Pitch::kWideRows : Pitch::kAlways);
  const int64_t K = plan.K, P = plan.L.P;
  std::fill(grad_weights, grad_weights + block.n_filters * K, 0.0f);
  if (block.n_filters == 0 || K == 0 || g.N == 0) return;
  const int64_t image_in = g.C * g.H * g.W, image_out = g.O * P;
  // Register blocks: split.size filters x split.width taps (balanced filter blocks, as in the forward).
  const Split split(block.n_filters, kVectors);
  const int64_t f_blocks = split.blocks, fs = split.size, ks = split.width;
  const int64_t k_blocks = (K + ks - 1) / ks;
  const int64_t items = f_blocks * k_blocks;
  const int64_t taps = g.kh * g.kw;
  // grad_y (the same for every thread) is staged at the pitch with zeros in the discarded columns (pitched
  // rows), and with zeros up to Qv, Q rounded up to whole vectors, so the microkernel has no partial vector;
  // otherwise read in place.
  const int64_t Qv = (plan.L.Q + kLanes - 1) / kLanes * kLanes;
  const bool wide = plan.L.pitch != g.Wo || Qv != plan.L.Q;
  const int64_t gy_image = wide ? block.n_filters * Qv : image_out;
  const VectorGather stage_gy(wide ? Qv : 0, [&](int64_t q) {
    const int64_t oy = q / plan.L.pitch, ox = q - oy * plan.L.pitch;
    return q < plan.L.Q && ox < g.Wo ? oy * g.Wo + ox : -1;
  });
  // Each thread owns a fixed range of items (tap blocks outer, so a range of input channels) and stages
  // only those channels, a few images at a time into its own buffer, right before its items read them
  // while they are in L2: no barrier, no shared staging.
#pragma omp parallel
  {
    int64_t lo = 0, hi = items;
#ifdef _OPENMP
    const int64_t tid = omp_get_thread_num(), nth = omp_get_num_threads();
    lo = items * tid / nth;
    hi = items * (tid + 1) / nth;
#endif
    if (lo < hi) {
      // The thread's vector partial sums, item (filter block, tap block) after item: fs x ks vectors each,
      // allocated, zeroed and summed across lanes by the thread itself (1.3 MB on ResNet-56 stage 3, which
      // a serial pass before and after the parallel region used to zero and sum).
      std::vector<vec> acc(static_cast<size_t>((hi - lo) * fs * ks), vec{});
      const int64_t j_lo = lo / f_blocks * ks / taps;
      const int64_t j_hi = std::min(K, (hi - 1) / f_blocks * ks + ks) / taps + 1;  // exclusive, may pass C
      const int64_t n_ch = std::min(j_hi, block.n_channels) - j_lo;
      std::vector<int64_t> offsets(plan.offsets);  // relative to this thread's first staged channel
      for (int64_t& o : offsets) o -= j_lo * plan.L.channel;
      const int64_t per_image = (n_ch * plan.L.channel + plan.L.slack + kLanes - 1) / kLanes * kLanes;
      // Images a microkernel call runs through: as many as keep the staging within ~512 KB (L2).
      const int64_t group = std::max<int64_t>(
          1, std::min<int64_t>(g.N, (int64_t{1} << 17) / (per_image + (wide ? gy_image : 0))));
      // Uninitialised: staging writes the planes taps read; what the positions past Q may also read (times
      // zero grad_y, so it must be finite) is zeroed here, once: the slack past the last staged channel and
      // the planes of row phases no tap reads (stride 2, dilation 2).
      AlignedFloats staged(static_cast<size_t>(group * per_image), false);
      AlignedFloats gy_staged(wide ? static_cast<size_t>(group * gy_image) : 0, false);
      for (int64_t i = 0; i < group; ++i) {
        float* image = staged.data() + i * per_image;
        std::fill(image + n_ch * plan.L.channel, image + per_image, 0.0f);
        for (int64_t j = 0; j < n_ch; ++j)
          for (int64_t shift = 0; shift < plan.L.shifts; ++shift)
            for (int64_t ph = 0; ph < g.sh; ++ph)
              if (!plan.phase_used[static_cast<size_t>(ph)]) {
                float* plane = image + j * plan.L.channel + (shift * g.sh + ph) * plan.L.plane;
                std::fill(plane, plane + plan.L.plane, 0.0f);
              }
      }
      for (int64_t n0 = 0; n0 < g.N; n0 += group) {
        const int64_t count = std::min(group, g.N - n0);
        for (int64_t i = 0; i < count; ++i) {
          for (int64_t j = j_lo; j < j_lo + n_ch; ++j)
            plan.stage(x + (n0 + i) * image_in, j,
                       staged.data() + i * per_image + (j - j_lo) * plan.L.channel);
          if (wide)  // zeros in the discarded columns and past Q
            for (int64_t f = 0; f < block.n_filters; ++f)
              stage_gy(grad_y + (n0 + i) * image_out + block.filters[f] * P,
                       gy_staged.data() + i * gy_image + f * Qv);
        }
        // Each call runs over all positions of the group's images: measured (ResNet-56/50 shapes) faster
        // than strips short enough to keep grad_y in L1 across items, whose calls pay the accumulator
        // loads and stores and the set-up more often.
        for (int64_t item = lo; item < hi; ++item) {
          const int64_t f0 = item % f_blocks * fs, k0 = item / f_blocks * ks;
          const int64_t fb = std::min<int64_t>(block.n_filters - f0, fs);
          const int64_t kb = std::min<int64_t>(K - k0, ks);
          const float* gy[kFilters];
          for (int64_t f = 0; f < fb; ++f)
            gy[f] =
                wide ? gy_staged.data() + (f0 + f) * Qv : grad_y + n0 * image_out + block.filters[f0 + f] * P;
          with_block(fb, kb, [&](auto nf, auto nk) {
            weight_microkernel<decltype(nf)::value, decltype(nk)::value>(
                gy, gy_image, staged.data(), per_image, count, offsets.data() + k0, Qv,
                acc.data() + (item - lo) * fs * ks);
          });
        }
      }
      // Lane sums, in lane order. Item (fb, kb) blocks are laid out fb * kb densely: index f * kb + k.
      for (int64_t item = lo; item < hi; ++item) {
        const int64_t f0 = item % f_blocks * fs, k0 = item / f_blocks * ks;
        const int64_t fb = std::min<int64_t>(block.n_filters - f0, fs);
        const int64_t kb = std::min<int64_t>(K - k0, ks);
        const vec* a = acc.data() + (item - lo) * fs * ks;
        for (int64_t f = 0; f < fb; ++f)
          for (int64_t k = 0; k < kb; ++k) {
            float sum = 0.0f;
            for (int l = 0; l < kLanes; ++l) sum += a[f * kb + k][l];
            grad_weights[(f0 + f) * K + k0 + k] = sum;
          }
      }
    }
  }
}

}  // namespace FP_CAP
}  // namespace cpu
}  // namespace fp
