// Qualifiers of the math shared by the CPU and CUDA kernels, and the namespace it lives in.
#ifndef FASTPRUNE_DETAIL_HOST_DEVICE_H
#define FASTPRUNE_DETAIL_HOST_DEVICE_H

// FP_HOST_DEVICE: a function both the CPU and CUDA kernels call. FP_LANE: a branch-free routine the CPU's
// SIMD loops run per lane, forced inline on the host because such a loop vectorises only if the whole
// routine is inlined into its body (a routine called from two places is otherwise kept out of line).
#if defined(__CUDACC__)
#define FP_HOST_DEVICE __host__ __device__ __forceinline__
#define FP_LANE __host__ __device__ __forceinline__
#elif defined(__GNUC__)
#define FP_HOST_DEVICE inline
#define FP_LANE inline __attribute__((always_inline))
#else
#define FP_HOST_DEVICE inline
#define FP_LANE inline
#endif

// The CPU kernels are compiled once per capability (csrc/cpu/kernels/capability.h, FP_CAP = cap_avx2, ...):
// there this math lives in the capability's inline namespace, so each copy of an inline function compiled
// with wide vector flags has a symbol of its own (the linker keeps one copy per symbol, and a baseline
// caller must never get the AVX-512 one). Elsewhere (the C ABI, CUDA) it is plain fp::detail.
#if defined(FP_CAP)
#define FP_DETAIL_BEGIN \
  namespace fp {        \
  namespace detail {    \
  inline namespace FP_CAP {
#define FP_DETAIL_END \
  }                   \
  }                   \
  }
#else
#define FP_DETAIL_BEGIN \
  namespace fp {        \
  namespace detail {
#define FP_DETAIL_END \
  }                   \
  }
#endif

#endif  // FASTPRUNE_DETAIL_HOST_DEVICE_H
