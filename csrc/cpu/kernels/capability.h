// What the capability this copy of the CPU kernels is compiled for offers, as compile-time constants.
// CMake compiles every source of csrc/cpu/kernels/ once per capability, with the capability's flags and
//     -DFP_CAP=cap_<name> -DFP_CAP_LEVEL=<0|1|2>       (default | avx2 | avx512)
// and each source wraps its code in `inline namespace FP_CAP`: the copies' symbols differ, so an inline
// function or template compiled with AVX-512 flags can never be the one the linker keeps for AVX2 or
// baseline callers. Kernels size their vectors and register tiles from these constants, never from the
// build machine.
//
//   capability  vector  registers  ISA                                   where
//   default     16 B    16 (32)    SSE2 (x86-64 baseline); NEON (aarch64) any CPU
//   avx2        32 B    16         AVX2 + FMA + F16C                     Haswell+, Zen 1+
//   avx512      64 B    32         AVX-512 F/BW/VL/DQ                    Skylake-SP+, Zen 4+
#ifndef FASTPRUNE_CPU_KERNELS_CAPABILITY_H
#define FASTPRUNE_CPU_KERNELS_CAPABILITY_H

#if !defined(FP_CAP) || !defined(FP_CAP_LEVEL)
#error "csrc/cpu/kernels/ is compiled once per capability: FP_CAP and FP_CAP_LEVEL come from CMakeLists.txt"
#endif

#if FP_CAP_LEVEL == 2 && \
    !(defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512DQ__))
#error "FP_CAP_LEVEL 2 (avx512) needs -mavx512f -mavx512bw -mavx512vl -mavx512dq"
#endif
#if FP_CAP_LEVEL == 1 && !(defined(__AVX2__) && defined(__FMA__))
#error "FP_CAP_LEVEL 1 (avx2) needs -mavx2 -mfma -mf16c"
#endif
#if FP_CAP_LEVEL == 1 && defined(__AVX512F__)
#error "the avx2 kernels must not be compiled with AVX-512 enabled"
#endif

namespace fp {
namespace cpu {
inline namespace FP_CAP {

// Bytes of one SIMD register: the width of every GNU vector type of the kernels.
constexpr int kVectorBytes = FP_CAP_LEVEL == 2 ? 64 : FP_CAP_LEVEL == 1 ? 32 : 16;
// Floats per vector.
constexpr int kFloatLanes = kVectorBytes / 4;
// Architectural vector registers: 32 zmm (AVX-512), 16 ymm (AVX2), 16 xmm (SSE2); NEON has 32 but the
// default tiles are sized for x86's 16 (the smaller budget never spills).
constexpr int kVectorRegisters = FP_CAP_LEVEL == 2 ? 32 : 16;
// Register-tile accumulators: three quarters of the registers, the rest for the loaded operands and the
// broadcast (BLIS: 6 x 16 sgemm tile = 12 ymm on Haswell, 24 zmm of 32 on SKX).
constexpr int kAccumulatorRegisters = kVectorRegisters * 3 / 4;

}  // namespace FP_CAP
}  // namespace cpu
}  // namespace fp

// Pins a vector value to a register at this point (an empty asm with the value as in/out operand): GCC
// otherwise re-loads it, or folds its load into every FMA that reads it (AVX-512 weight gradient: see
// conv2d_blocked_backward.cpp). Only on avx512: elsewhere it measured no faster (ResNet-50 layers on avx2,
// forward + backward, within noise), and a 64-byte value cannot be pinned to a 32-byte register at all.
#if FP_CAP_LEVEL == 2
#define FP_KEEP_IN_REGISTER(value) asm("" : "+v"(value))
#else
#define FP_KEEP_IN_REGISTER(value) ((void)0)
#endif

#endif  // FASTPRUNE_CPU_KERNELS_CAPABILITY_H
