// The C ABI: argument checks, dispatch to the CPU or CUDA implementation, status -> message.
// No C++ exception may cross this boundary: every entry point catches and converts.
#include <limits.h>

#include <string>
#include <vector>

#include "capi_internal.h"
#include "cpu/dispatch.h"
#include "fastprune/detail/distance.h"
#include "fastprune/fastprune.h"

#if FP_WITH_CUDA
#include "cuda/cuda_ops.h"
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

#ifndef FP_VERSION_STRING
#define FP_VERSION_STRING "0.0.0"
#endif
#ifndef FP_CUDA_ARCHS
#define FP_CUDA_ARCHS ""
#endif

namespace fp {
namespace capi {

std::string& last_error() {
  thread_local std::string message;
  return message;
}

fp_status check_exec(fp_exec exec, std::string& error) {
  if (exec.device != FP_DEVICE_CPU && exec.device != FP_DEVICE_CUDA)
    return reject(error, FP_ERR_INVALID_ARGUMENT,
                  "exec.device: expected FP_DEVICE_CPU or FP_DEVICE_CUDA, got " +
                      std::to_string(static_cast<int>(exec.device)));
  if (exec.device == FP_DEVICE_CUDA) {
#if FP_WITH_CUDA
    std::string why;
    if (cuda::device_check(why) != FP_OK) return reject(error, FP_ERR_UNAVAILABLE, "exec.device: " + why);
#else
    return reject(
        error, FP_ERR_UNAVAILABLE,
        "exec.device: this libfastprune was built without CUDA (nvcc was not found or FASTPRUNE_CUDA=0); "
        "rebuild with the CUDA toolkit");
#endif
  }
  return FP_OK;
}

fp_status check_batch(const fp_ragged_batch* batch, const char* name, fp_exec exec, const void* out,
                      std::vector<detail::LayerSpan>& layers, std::string& error) {
  const std::string arg(name);
  if (!batch)
    return reject(error, FP_ERR_INVALID_ARGUMENT, arg + ": expected a fp_ragged_batch pointer, got NULL");
  if (!out) return reject(error, FP_ERR_INVALID_ARGUMENT, "out: expected an output buffer, got NULL");
  if (!batch->data == !batch->layer_data)
    return reject(error, FP_ERR_INVALID_ARGUMENT,
                  arg + "->data / " + arg + "->layer_data: expected exactly one of them, got " +
                      (batch->data ? "both" : "neither (both NULL)"));
  if (batch->num_layers < 1)
    return reject(error, FP_ERR_INVALID_ARGUMENT,
                  arg + "->num_layers: expected at least 1 layer, got " + std::to_string(batch->num_layers));
  if (!batch->num_rows || !batch->row_dims)
    return reject(
        error, FP_ERR_INVALID_ARGUMENT,
        arg + "->num_rows / " + arg + "->row_dims: expected host arrays of num_layers sizes, got NULL");
  for (int64_t l = 0; l < batch->num_layers; ++l) {
    const int64_t n = batch->num_rows[l], d = batch->row_dims[l];
    // Sizes past 2^31 are not a conv layer; N^2 floats of pairwise output must also stay addressable.
    if (n < 1 || n > INT_MAX)
      return reject(error, FP_ERR_INVALID_ARGUMENT,
                    arg + "->num_rows[" + std::to_string(l) + "]: expected 1 <= filters <= 2^31-1, got " +
                        std::to_string(n));
    if (d < 1 || d > INT_MAX)
      return reject(error, FP_ERR_INVALID_ARGUMENT,
                    arg + "->row_dims[" + std::to_string(l) +
                        "]: expected 1 <= weights per filter <= 2^31-1, got " + std::to_string(d));
  }
  const fp_status exec_status = check_exec(exec, error);
  if (exec_status != FP_OK) return exec_status;
  if (batch->layer_data && exec.device != FP_DEVICE_CPU)
    return reject(error, FP_ERR_INVALID_ARGUMENT,
                  arg +
                      "->layer_data: per-layer pointers are taken on FP_DEVICE_CPU only; pack the layers "
                      "into " +
                      arg + "->data for FP_DEVICE_CUDA");
  for (int64_t l = 0; batch->layer_data && l < batch->num_layers; ++l)
    if (!batch->layer_data[l])
      return reject(error, FP_ERR_INVALID_ARGUMENT,
                    arg + "->layer_data[" + std::to_string(l) + "]: expected a buffer, got NULL");
  layers = detail::layer_spans(batch->num_layers, batch->num_rows, batch->row_dims);
  return FP_OK;
}

std::vector<const float*> host_layer_rows(const fp_ragged_batch& batch,
                                          const std::vector<detail::LayerSpan>& layers) {
  std::vector<const float*> rows(layers.size());
  for (size_t l = 0; l < layers.size(); ++l)
    rows[l] = batch.layer_data ? batch.layer_data[l] : batch.data + layers[l].data_offset;
  return rows;
}

}  // namespace capi
}  // namespace fp

namespace {

using fp::capi::guarded;
using fp::capi::reject;

// The checks both scoring ops share: the filters batch, the exec, the output and the metric.
fp_status check_scoring(const fp_ragged_batch* filters, fp_metric metric, fp_exec exec, const float* out,
                        std::vector<fp::detail::LayerSpan>& layers, std::string& error) {
  const fp_status status = fp::capi::check_batch(filters, "filters", exec, out, layers, error);
  if (status != FP_OK || fp::detail::metric_is_valid(static_cast<int>(metric))) return status;
  return reject(error, FP_ERR_INVALID_ARGUMENT,
                "metric: expected FP_METRIC_L2, _L1, _COSINE or _SQEUCLIDEAN, got " +
                    std::to_string(static_cast<int>(metric)));
}

}  // namespace

extern "C" {

fp_status fp_pairwise_distances(const fp_ragged_batch* filters, fp_metric metric, fp_exec exec, float* out) {
  return guarded([&](std::string& error) {
    std::vector<fp::detail::LayerSpan> layers;
    const fp_status status = check_scoring(filters, metric, exec, out, layers, error);
    if (status != FP_OK) return status;
#if FP_WITH_CUDA
    if (exec.device == FP_DEVICE_CUDA)
      return fp::cuda::pairwise_distances(layers, filters->data, metric, exec.stream, out, error);
#endif
    return fp::cpu::kernels().pairwise_distances(layers, fp::capi::host_layer_rows(*filters, layers), metric,
                                                 out, error);
  });
}

fp_status fp_gm_scores(const fp_ragged_batch* filters, fp_metric metric, const uint8_t* keep_mask,
                       fp_exec exec, float* out) {
  return guarded([&](std::string& error) {
    std::vector<fp::detail::LayerSpan> layers;
    const fp_status status = check_scoring(filters, metric, exec, out, layers, error);
    if (status != FP_OK) return status;
#if FP_WITH_CUDA
    if (exec.device == FP_DEVICE_CUDA)
      return fp::cuda::gm_scores(layers, filters->data, metric, keep_mask, exec.stream, out, error);
#endif
    return fp::cpu::kernels().gm_scores(layers, fp::capi::host_layer_rows(*filters, layers), metric,
                                        keep_mask, out, error);
  });
}

const char* fp_last_error(void) {
  return fp::capi::last_error().c_str();
}

const char* fp_status_name(fp_status status) {
  switch (status) {
    case FP_OK:
      return "FP_OK";
    case FP_ERR_INVALID_ARGUMENT:
      return "FP_ERR_INVALID_ARGUMENT";
    case FP_ERR_NONFINITE:
      return "FP_ERR_NONFINITE";
    case FP_ERR_UNAVAILABLE:
      return "FP_ERR_UNAVAILABLE";
    case FP_ERR_DEVICE:
      return "FP_ERR_DEVICE";
    case FP_ERR_OUT_OF_MEMORY:
      return "FP_ERR_OUT_OF_MEMORY";
    case FP_ERR_INTERNAL:
      return "FP_ERR_INTERNAL";
  }
  return "FP_ERR_UNKNOWN";
}

const char* fp_version(void) {
  return FP_VERSION_STRING;
}
int fp_abi_version(void) {
  return FASTPRUNE_ABI_VERSION;
}
int fp_cuda_compiled(void) {
  return FP_WITH_CUDA ? 1 : 0;
}
const char* fp_cuda_archs(void) {
  return FP_CUDA_ARCHS;
}

int fp_openmp_max_threads(void) {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

const char* fp_cpu_capability(void) {
  return fp::cpu::capability_choice().name;
}
const char* fp_cpu_capability_reason(void) {
  return fp::cpu::capability_choice().reason.c_str();
}
const char* fp_cpu_capabilities_built(void) {
#if defined(__x86_64__) || defined(_M_X64)
  return "default,avx2,avx512";
#else
  return "default";
#endif
}

fp_status fp_cuda_device_check(void) {
#if FP_WITH_CUDA
  return guarded([](std::string& error) { return fp::cuda::device_check(error); });
#else
  return guarded([](std::string& error) {
    return reject(error, FP_ERR_UNAVAILABLE, "built without CUDA (nvcc was not found or FASTPRUNE_CUDA=0)");
  });
#endif
}

}  // extern "C"
