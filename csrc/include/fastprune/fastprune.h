/*
 * fastprune C ABI: the only public header of libfastprune.
 *
 * Plain C, no C++ types and no exceptions cross this boundary. Every function returns an fp_status;
 * on failure fp_last_error() returns a message (thread-local, valid until the next call on the same
 * thread) naming the offending argument and what was expected.
 *
 * Ragged batches. Scoring ops take every conv layer of a network in one call. Layer l holds N_l filters
 * of D_l = in_channels * k * k weights each. The filters of all layers are packed row-major, layer
 * after layer, into one float32 buffer:
 *
 *     data = [ layer 0: N_0 x D_0 | layer 1: N_1 x D_1 | ... ]      (sum_l N_l * D_l floats)
 *
 * or, on the CPU, given as one pointer per layer (layer_data[l] -> N_l x D_l row-major), which spares
 * the caller a copy. num_rows[l] = N_l >= 1 and row_dims[l] = D_l >= 1 always live in host memory;
 * data, masks and outputs live on the device named by the call (host memory for FP_DEVICE_CPU).
 */
#ifndef FASTPRUNE_FASTPRUNE_H
#define FASTPRUNE_FASTPRUNE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define FP_API __declspec(dllexport)
#else
#define FP_API __attribute__((visibility("default")))
#endif

#define FASTPRUNE_ABI_VERSION 1

/* C++ sees every enum with int as its fixed underlying type, so any int a C caller passes (7 as an
 * fp_metric) is a value the library may read and reject; without it, such a value is undefined behaviour
 * in C++ (UBSan: "not a valid value for type"). The same size and calling convention as C's enums. */
#ifdef __cplusplus
#define FP_ENUM_INT : int
#else
#define FP_ENUM_INT
#endif

typedef enum fp_status FP_ENUM_INT {
  FP_OK = 0,
  FP_ERR_INVALID_ARGUMENT = 1, /* null pointer, bad size, unknown enum value */
  FP_ERR_NONFINITE = 2,        /* NaN or Inf in the input filters */
  FP_ERR_UNAVAILABLE = 3,      /* device not compiled in, or no such device present */
  FP_ERR_DEVICE = 4,           /* a CUDA runtime call failed */
  FP_ERR_OUT_OF_MEMORY = 5,
  FP_ERR_INTERNAL = 6
} fp_status;

typedef enum fp_metric FP_ENUM_INT {
  FP_METRIC_L2 = 0,         /* ||a - b||_2 */
  FP_METRIC_L1 = 1,         /* ||a - b||_1 */
  FP_METRIC_COSINE = 2,     /* 1 - a.b / (|a| |b|); a zero row is at distance 1 from every other row */
  FP_METRIC_SQEUCLIDEAN = 3 /* ||a - b||_2^2 */
} fp_metric;

typedef enum fp_device FP_ENUM_INT { FP_DEVICE_CPU = 0, FP_DEVICE_CUDA = 1 } fp_device;

typedef struct fp_ragged_batch {
  const float* data;              /* packed filters, see above; device memory for FP_DEVICE_CUDA */
  const float* const* layer_data; /* instead of data (which is then NULL), FP_DEVICE_CPU only: one
                                     row-major N_l x D_l block per layer; NULL when data is used */
  int64_t num_layers;             /* >= 1 */
  const int64_t* num_rows;        /* [num_layers] N_l >= 1, host memory */
  const int64_t* row_dims;        /* [num_layers] D_l >= 1, host memory */
} fp_ragged_batch;

/* Where a call runs. stream is a cudaStream_t for FP_DEVICE_CUDA (NULL = default stream), ignored on
 * the CPU. On CUDA the scoring ops (pairwise distances, gm scores) synchronise the stream before
 * returning, to report NaN/Inf input; the small-matrix ops and kernel scores only enqueue work. */
typedef struct fp_exec {
  fp_device device;
  void* stream;
} fp_exec;

/* Full distance matrices. out: sum_l N_l^2 floats; layer l's N_l x N_l row-major matrix starts at
 * sum_{m<l} N_m^2. Each unordered pair is computed once and mirrored; the diagonal is 0. */
FP_API fp_status fp_pairwise_distances(const fp_ragged_batch* filters, fp_metric metric, fp_exec exec,
                                       float* out);

/* Geometric-median (FPGM) scores g_j = sum_{j' kept} d(F_j, F_j') without forming N x N.
 * keep_mask: NULL (all kept) or sum_l N_l bytes, nonzero = kept. Pruned filters are left out of every
 * sum and score +INFINITY (so they are never chosen as "closest to the median" again).
 * out: sum_l N_l floats, layer l's scores start at sum_{m<l} N_m. */
FP_API fp_status fp_gm_scores(const fp_ragged_batch* filters, fp_metric metric, const uint8_t* keep_mask,
                              fp_exec exec, float* out);

/* ---- Small-matrix spectral ops (kernel-level pruning) ------------------------------------------------
 * A batch is `count` contiguous row-major n x n float32 matrices, 1 <= n <= 7 (count may be 0).
 * NaN/Inf in a matrix propagate: that matrix's results are NaN; nothing fails or hangs. */

/* Eigenvalues: out holds count * n complex values as (re, im) float pairs, per matrix sorted by
 * descending modulus, ties by descending real part, a conjugate pair as (a + ib, a - ib), b > 0. */
FP_API fp_status fp_small_eigvals(const float* matrices, int64_t count, int n, fp_exec exec, float* out);
/* Singular values, descending: out holds count * n floats. */
FP_API fp_status fp_small_svdvals(const float* matrices, int64_t count, int n, fp_exec exec, float* out);
/* Determinants: out holds count floats. */
FP_API fp_status fp_small_det(const float* matrices, int64_t count, int n, fp_exec exec, float* out);

/* Per-kernel criteria of eigenvalue-based pruning, c(K) for one k x k kernel K (kept iff c(K) >= t^p,
 * p = fp_kernel_criterion_power()). */
typedef enum fp_kernel_criterion FP_ENUM_INT {
  FP_CRITERION_WEIGHT = 0,               /* mean |K|                                 (p = 1) */
  FP_CRITERION_DET = 1,                  /* |det K|                                  (p = k) */
  FP_CRITERION_DET_GRAM = 2,             /* |det K^T K| = det(K)^2                   (p = 2k) */
  FP_CRITERION_MIN_EIG = 3,              /* min |lambda|                             (p = 1) */
  FP_CRITERION_MIN_EIG_REAL = 4,         /* min |Re lambda|                          (p = 1) */
  FP_CRITERION_SPECTRAL_RADIUS = 5,      /* max |lambda|                             (p = 1) */
  FP_CRITERION_SPECTRAL_RADIUS_REAL = 6, /* max |Re lambda|                          (p = 1) */
  FP_CRITERION_SPECTRAL_NORM = 7         /* largest singular value                   (p = 1) */
} fp_kernel_criterion;

/* Exponent p of the threshold t^p under which a kernel of size k is pruned, or -1 for a bad criterion. */
FP_API int fp_kernel_criterion_power(fp_kernel_criterion criterion, int k);

/* c(K) for every kernel of every layer in one pass. Layer l is a conv weight (O_l, I_l, k_l, k_l) given as
 * a ragged batch with num_rows[l] = O_l * I_l kernels of row_dims[l] = k_l^2 weights (1 <= k_l <= 7).
 * out: sum_l O_l * I_l floats, layer after layer, each (O_l, I_l) row-major. */
FP_API fp_status fp_kernel_scores(const fp_ragged_batch* kernels, fp_kernel_criterion criterion, fp_exec exec,
                                  float* out);

/* ---- Masked (sparse) 2-D convolution ---------------------------------------------------------------
 * y = conv2d(x, W * M) + b for a kernel mask M (O, C) (a filter mask is a kernel mask with whole rows).
 * Only the kept kernels are passed, as compressed rows: filter o keeps input channels
 * col[row_ptr[o] .. row_ptr[o+1]) (ascending), whose kh x kw kernels are kernels[j * kh * kw ...] for
 * j in that range. row_ptr: O + 1 int32 with row_ptr[0] = 0, non-decreasing; col, kernels: nnz =
 * row_ptr[O] entries (may be NULL when nnz = 0). Work is proportional to nnz. Tensors are float32,
 * contiguous NCHW: x (N, C, H, W), y and grad_y (N, O, Ho, Wo) with
 * Ho = (H + 2 pad_h - dilation_h (kh - 1) - 1) / stride_h + 1 (Wo likewise, both >= 1).
 * Results are deterministic: identical for every OpenMP thread count (CPU) and every run (both devices).
 * With exec->device == FP_DEVICE_CUDA, row_ptr and col stay host arrays (the library uploads them);
 * x, kernels, bias, grads and outputs are device pointers; the CUDA path is compile-checked only so far. */
typedef struct fp_conv2d_shape {
  int64_t batch, in_channels, height, width; /* x: (N, C, H, W), N >= 0, C, H, W >= 1 */
  int64_t out_channels, kernel_h, kernel_w;  /* weight: (O, C, kh, kw), all >= 1 */
  int64_t stride_h, stride_w;                /* >= 1 */
  int64_t pad_h, pad_w;                      /* >= 0 */
  int64_t dilation_h, dilation_w;            /* >= 1 */
} fp_conv2d_shape;

/* y (N, O, Ho, Wo) = masked conv of x; bias: O floats or NULL. Filters with no kept kernel give bias
 * (0 without bias). */
FP_API fp_status fp_masked_conv2d_forward(const fp_conv2d_shape* shape, const float* x,
                                          const int32_t* row_ptr, const int32_t* col, const float* kernels,
                                          const float* bias, fp_exec exec, float* y);
/* grad_x (N, C, H, W) = d(sum grad_y * y) / dx, the transposed convolution over the same kept kernels. */
FP_API fp_status fp_masked_conv2d_backward_input(const fp_conv2d_shape* shape, const float* grad_y,
                                                 const int32_t* row_ptr, const int32_t* col,
                                                 const float* kernels, fp_exec exec, float* grad_x);
/* grad_kernels (nnz, kh, kw): the weight gradient of the kept kernels only, in the order of col. */
FP_API fp_status fp_masked_conv2d_backward_weight(const fp_conv2d_shape* shape, const float* x,
                                                  const float* grad_y, const int32_t* row_ptr,
                                                  const int32_t* col, fp_exec exec, float* grad_kernels);

/* Dense convolution with a fused epilogue: y = conv2d(x, weight) + bias, then max(y, 0) when relu != 0.
 * weight (O, C, kh, kw), bias O floats or NULL; layouts and shape rules as above. The CPU kernel is the
 * register-blocked one the masked convolution uses for filter masks: it vectorises over output positions,
 * so odd channel counts (a compacted network's) cost what their FLOPs say. CPU only: FP_DEVICE_CUDA gives
 * FP_ERR_UNAVAILABLE (use cuDNN there). */
FP_API fp_status fp_conv2d_forward(const fp_conv2d_shape* shape, const float* x, const float* weight,
                                   const float* bias, int relu, fp_exec exec, float* y);

/* The same convolution added into a wider map in place, for a residual add fused into the conv: y is
 * (N, y_channels, Ho, Wo); filter o adds into channel out_channels[o] (host array of O distinct indices in
 * [0, y_channels)): y[:, out_channels[o]] = act(y[:, out_channels[o]] + conv2d(x, weight)[:, o] + bias[o])
 * with act = max(., 0) when relu != 0; the other channels of y are not touched. CPU only. */
FP_API fp_status fp_conv2d_accumulate(const fp_conv2d_shape* shape, const float* x, const float* weight,
                                      const float* bias, const int64_t* out_channels, int64_t y_channels,
                                      int relu, fp_exec exec, float* y);

/* Message of the last failed call on this thread ("" after a success). */
FP_API const char* fp_last_error(void);
FP_API const char* fp_status_name(fp_status status);

/* Build facts. */
FP_API const char* fp_version(void);
FP_API int fp_abi_version(void);
FP_API int fp_cuda_compiled(void);      /* 1 if CUDA kernels were compiled in */
FP_API const char* fp_cuda_archs(void); /* e.g. "80;90" or "" */
FP_API int fp_openmp_max_threads(void); /* 1 when built without OpenMP */
/* The CPU kernels in use, "default", "avx2" or "avx512": chosen at the first call from what the CPU and OS
 * support, and lowered (never raised) by the environment variable FASTPRUNE_CPU_CAPABILITY. The reason
 * says what the CPU supports and what the environment asked for. */
FP_API const char* fp_cpu_capability(void);
FP_API const char* fp_cpu_capability_reason(void);
/* The capabilities compiled into this library: "default,avx2,avx512" on x86-64, "default" elsewhere. */
FP_API const char* fp_cpu_capabilities_built(void);
/* FP_OK when a CUDA device can be used; otherwise a status and fp_last_error() says why. */
FP_API fp_status fp_cuda_device_check(void);

#ifdef __cplusplus
}
#endif

#endif /* FASTPRUNE_FASTPRUNE_H */
