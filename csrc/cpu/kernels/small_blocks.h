// Runs a branch-free 3x3 routine (detail/small_closed_forms.h, kernel_criteria.h) on blocks of kBlock
// matrices, one matrix per SIMD lane: the block is transposed into lane-major local arrays, the routine
// runs in a `#pragma omp simd` loop over the lanes (GCC turns it into AVX-512/AVX2 code: every helper is
// straight-line arithmetic and selects), and the results are transposed back. The including .cpp file
// must start with `#pragma GCC optimize("no-trapping-math")` (GCC): without it GCC will not compute both
// sides of a select (an operation on the unselected side might raise an FP exception flag), and the loop does
// not vectorise. Results are the same either way.
//
// Determinism: a partial block (a batch's or a thread's tail) is padded with zero matrices and runs the
// very same full-width vector code, and lanes never interact, so each matrix's result is bitwise the same
// whatever its position, the batch size or the number of threads.
#ifndef FASTPRUNE_CPU_SMALL_BLOCKS_H
#define FASTPRUNE_CPU_SMALL_BLOCKS_H

#include <stdint.h>

#include "cpu/kernels/capability.h"
#include "fastprune/detail/fast_math.h"  // FP_LANE

namespace fp {
namespace cpu {
inline namespace FP_CAP {

// 16 lanes: two AVX-512 vectors of doubles (the routines compute in double; four AVX2, eight SSE2 or NEON
// vectors), enough independent work to hide the latency of the divisions.
constexpr int kBlock = 16;

// Forces a lambda inline (GCC's heuristics keep large ones out of line, which defeats the SIMD loop).
#if defined(__GNUC__)
#define FP_LANE_LAMBDA __attribute__((always_inline))
#else
#define FP_LANE_LAMBDA
#endif

// Lane j of a block: gathers matrix j from the lane-major `in`, runs lane(), scatters its results to `res`.
// A function of its own so that its local arrays are not the loop's: OpenMP privatises locals of a simd
// loop body into per-lane arrays, whose address passed to a routine defeats vectorisation; once this is
// inlined, the locals are plain scalars (scalar replacement) and the loop vectorises.
template <int Width, class Lane>
FP_LANE void lane3(const float (*in)[kBlock], int j, float (*res)[kBlock], const Lane& lane) {
  float k[9], r[Width];
  for (int i = 0; i < 9; ++i) k[i] = in[i][j];
  lane(k, r);
  for (int w = 0; w < Width; ++w) res[w][j] = r[w];
}

// out[j * Width + w] = result w of lane(matrix j of src), j < kBlock, where lane(const float k[9],
// float res[Width]) is the per-matrix routine and src holds kBlock contiguous row-major 3x3 matrices.
// The input transpose runs lanes innermost, which GCC vectorises (strided loads); lanes outermost it
// stays scalar and costs ~3 ns per matrix, a fifth of the eigenvalue routine.
template <int Width, class Lane>
FP_LANE void run_full_block3(const float* src, float* out, const Lane& lane) {
  alignas(64) float in[9][kBlock];
  alignas(64) float res[Width][kBlock];
  for (int i = 0; i < 9; ++i)
    for (int j = 0; j < kBlock; ++j) in[i][j] = src[j * 9 + i];
#pragma omp simd
  for (int j = 0; j < kBlock; ++j) lane3<Width>(in, j, res, lane);
  for (int j = 0; j < kBlock; ++j)
    for (int w = 0; w < Width; ++w) out[j * Width + w] = res[w][j];
}

// For matrices [first, first + count) (count <= kBlock) of `matrices` (contiguous 3x3, row-major):
// out[(first + j) * Width + w] = result w of lane(matrix first + j). A partial block is padded with zero
// matrices and runs the same full-block code. `lane` should be declared FP_LANE_LAMBDA: it must be
// inlined into the vector loop.
template <int Width, class Lane>
inline void run_block3(const float* matrices, int64_t first, int count, float* out, const Lane& lane) {
  float padded[kBlock * 9], res[kBlock * Width];
  if (count < kBlock) {
    for (int i = 0; i < kBlock * 9; ++i) padded[i] = i < count * 9 ? matrices[first * 9 + i] : 0.0f;
  }
  // One call site, so the routine is inlined once.
  run_full_block3<Width>(count < kBlock ? padded : matrices + first * 9,
                         count < kBlock ? res : out + first * Width, lane);
  for (int i = 0; i < (count < kBlock ? count * Width : 0); ++i) out[first * Width + i] = res[i];
}

// run_block3 over matrices [0, count), blocks shared out among the threads of the enclosing parallel
// region (call it inside `#pragma omp parallel`; no barrier at the end). Dynamic chunks of 32 blocks
// (512 matrices): on a machine shared with other work a preempted thread would stall a static split
// for a whole scheduler quantum, while here the other threads take over its share. Which thread
// computes a matrix never changes its result.
template <int Width, class Lane>
inline void for_blocks3_nowait(const float* matrices, int64_t count, float* out, const Lane& lane) {
  const int64_t blocks = (count + kBlock - 1) / kBlock;
#pragma omp for schedule(dynamic, 32) nowait
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t first = b * kBlock;
    const int64_t left = count - first;
    run_block3<Width>(matrices, first, left < kBlock ? static_cast<int>(left) : kBlock, out, lane);
  }
}

}  // namespace FP_CAP
}  // namespace cpu
}  // namespace fp

#endif  // FASTPRUNE_CPU_SMALL_BLOCKS_H
