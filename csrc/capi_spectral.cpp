// C ABI entry points of the small-matrix spectral ops and the kernel criteria: argument checks and
// dispatch to the CPU or CUDA implementation.
#include <math.h>

#include <string>
#include <vector>

#include "capi_internal.h"
#include "cpu/dispatch.h"
#include "cuda/cuda_ops.h"  // declarations only: the calls are compiled in with FP_WITH_CUDA
#include "fastprune/detail/kernel_criteria.h"
#include "fastprune/fastprune.h"

namespace {

using fp::capi::guarded;
using fp::capi::reject;

fp_status check_matrices(const float* matrices, int64_t count, int n, fp_exec exec, const float* out,
                         std::string& error) {
  if (count < 0)
    return reject(error, FP_ERR_INVALID_ARGUMENT, "count: expected >= 0, got " + std::to_string(count));
  if (n < 1 || n > fp::detail::kSmallMaxN)
    return reject(error, FP_ERR_INVALID_ARGUMENT, "n: expected 1 <= n <= 7, got " + std::to_string(n));
  if (count > 0 && !matrices)
    return reject(error, FP_ERR_INVALID_ARGUMENT, "matrices: expected count * n * n floats, got NULL");
  if (count > 0 && !out)
    return reject(error, FP_ERR_INVALID_ARGUMENT, "out: expected an output buffer, got NULL");
  return fp::capi::check_exec(exec, error);
}

// Runs the op over the batch after the shared checks: `cpu_op` on the CPU, fp::cuda::small_matrix_op(CudaOp)
// on FP_DEVICE_CUDA.
template <int CudaOp, typename CpuOp>
fp_status run_matrices(const float* matrices, int64_t count, int n, fp_exec exec, float* out,
                       CpuOp&& cpu_op) {
  return guarded([&](std::string& error) {
    const fp_status status = check_matrices(matrices, count, n, exec, out, error);
    if (status != FP_OK) return status;
#if FP_WITH_CUDA
    if (exec.device == FP_DEVICE_CUDA)
      return fp::cuda::small_matrix_op(CudaOp, matrices, count, n, exec.stream, out, error);
#endif
    cpu_op(matrices, count, n, out);
    return FP_OK;
  });
}

}  // namespace

extern "C" {

fp_status fp_small_eigvals(const float* matrices, int64_t count, int n, fp_exec exec, float* out) {
  return run_matrices<fp::cuda::kOpEigvals>(matrices, count, n, exec, out, fp::cpu::kernels().small_eigvals);
}

fp_status fp_small_svdvals(const float* matrices, int64_t count, int n, fp_exec exec, float* out) {
  return run_matrices<fp::cuda::kOpSvdvals>(matrices, count, n, exec, out, fp::cpu::kernels().small_svdvals);
}

fp_status fp_small_det(const float* matrices, int64_t count, int n, fp_exec exec, float* out) {
  return run_matrices<fp::cuda::kOpDet>(matrices, count, n, exec, out, fp::cpu::kernels().small_det);
}

int fp_kernel_criterion_power(fp_kernel_criterion criterion, int k) {
  return fp::detail::criterion_power(static_cast<int>(criterion), k);
}

fp_status fp_kernel_scores(const fp_ragged_batch* kernels, fp_kernel_criterion criterion, fp_exec exec,
                           float* out) {
  return guarded([&](std::string& error) {
    std::vector<fp::detail::LayerSpan> layers;
    const fp_status status = fp::capi::check_batch(kernels, "kernels", exec, out, layers, error);
    if (status != FP_OK) return status;
    if (!fp::detail::criterion_is_valid(static_cast<int>(criterion)))
      return reject(error, FP_ERR_INVALID_ARGUMENT,
                    "criterion: expected an fp_kernel_criterion (0..7), got " +
                        std::to_string(static_cast<int>(criterion)));
    std::vector<int> sizes(layers.size());
    for (size_t l = 0; l < layers.size(); ++l) {
      const int k = static_cast<int>(lround(sqrt((double)layers[l].dims)));
      if (k * k != layers[l].dims || k > fp::detail::kSmallMaxN)
        return reject(error, FP_ERR_INVALID_ARGUMENT,
                      "kernels->row_dims[" + std::to_string(l) +
                          "]: expected k * k weights per kernel with " + "1 <= k <= 7, got " +
                          std::to_string(layers[l].dims));
      sizes[l] = k;
    }
#if FP_WITH_CUDA
    // check_batch has rejected layer_data for CUDA: the kernels are packed in kernels->data.
    if (exec.device == FP_DEVICE_CUDA)
      return fp::cuda::kernel_scores(layers, kernels->data, sizes, static_cast<int>(criterion), exec.stream,
                                     out, error);
#endif
    fp::cpu::kernels().kernel_scores(layers, fp::capi::host_layer_rows(*kernels, layers), sizes,
                                     static_cast<int>(criterion), out);
    return FP_OK;
  });
}

}  // extern "C"
