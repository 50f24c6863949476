// C ABI entry points of the masked convolution: argument checks (shape, compressed kernel lists, pointers),
// then the CPU kernels of csrc/cpu/masked_conv2d.cpp or, for FP_DEVICE_CUDA in a CUDA build, those of
// csrc/cuda/masked_conv2d.cu. On either device row_ptr and col are host arrays (checked here); x, y,
// grad_y, grad_x, kernels, bias and grad_kernels live on exec.device.
#include <limits.h>

#include <string>
#include <vector>

#include "capi_internal.h"
#include "cpu/dispatch.h"
#include "fastprune/fastprune.h"
#if FP_WITH_CUDA
#include "cuda/cuda_ops.h"
#endif

namespace {

using fp::capi::guarded;
using fp::capi::reject;

fp_status invalid(std::string& error, const std::string& message) {
  return reject(error, FP_ERR_INVALID_ARGUMENT, message);
}

std::string str(int64_t v) {
  return std::to_string(v);
}

// Checks the shape and fills the geometry (output size included).
fp_status check_shape(const fp_conv2d_shape* shape, fp::cpu::ConvGeometry& g, std::string& error) {
  if (!shape) return invalid(error, "shape: expected a fp_conv2d_shape pointer, got NULL");
  const fp_conv2d_shape& s = *shape;
  if (s.batch < 0) return invalid(error, "shape->batch: expected >= 0, got " + str(s.batch));
  const struct {
    const char* name;
    int64_t value, low;
  } fields[] = {{"in_channels", s.in_channels, 1},
                {"height", s.height, 1},
                {"width", s.width, 1},
                {"out_channels", s.out_channels, 1},
                {"kernel_h", s.kernel_h, 1},
                {"kernel_w", s.kernel_w, 1},
                {"stride_h", s.stride_h, 1},
                {"stride_w", s.stride_w, 1},
                {"pad_h", s.pad_h, 0},
                {"pad_w", s.pad_w, 0},
                {"dilation_h", s.dilation_h, 1},
                {"dilation_w", s.dilation_w, 1}};
  for (const auto& f : fields)
    // Beyond 2^31 no dimension is a conv layer's; the bound also keeps every index product in int64.
    if (f.value < f.low || f.value > INT_MAX)
      return invalid(error, std::string("shape->") + f.name + ": expected " + str(f.low) +
                                " <= value <= 2^31-1, got " + str(f.value));
  const int64_t ho = (s.height + 2 * s.pad_h - s.dilation_h * (s.kernel_h - 1) - 1) / s.stride_h + 1;
  const int64_t wo = (s.width + 2 * s.pad_w - s.dilation_w * (s.kernel_w - 1) - 1) / s.stride_w + 1;
  if (s.height + 2 * s.pad_h < s.dilation_h * (s.kernel_h - 1) + 1 ||
      s.width + 2 * s.pad_w < s.dilation_w * (s.kernel_w - 1) + 1)
    return invalid(error, "shape: output size (" + str(ho) + ", " + str(wo) +
                              ") must be positive: the dilated kernel is larger than the padded input");
  g = fp::cpu::ConvGeometry{s.batch,    s.in_channels, s.height,     s.width,    s.out_channels,
                            s.kernel_h, s.kernel_w,    s.stride_h,   s.stride_w, s.pad_h,
                            s.pad_w,    s.dilation_h,  s.dilation_w, ho,         wo};
  return FP_OK;
}

// row_ptr non-decreasing from 0; col within [0, C) and ascending within each filter.
fp_status check_lists(const fp::cpu::ConvGeometry& g, const int32_t* row_ptr, const int32_t* col,
                      std::string& error) {
  if (!row_ptr) return invalid(error, "row_ptr: expected out_channels + 1 int32 offsets, got NULL");
  if (row_ptr[0] != 0) return invalid(error, "row_ptr[0]: expected 0, got " + str(row_ptr[0]));
  for (int64_t o = 0; o < g.O; ++o)
    if (row_ptr[o + 1] < row_ptr[o] || row_ptr[o + 1] - row_ptr[o] > g.C)
      return invalid(error, "row_ptr[" + str(o + 1) + "]: expected row_ptr[" + str(o) +
                                "] = " + str(row_ptr[o]) + " <= value <= row_ptr[" + str(o) +
                                "] + in_channels, got " + str(row_ptr[o + 1]));
  if (row_ptr[g.O] > 0 && !col)
    return invalid(error, "col: expected row_ptr[out_channels] int32 indices, got NULL");
  for (int64_t o = 0; o < g.O; ++o)
    for (int64_t j = row_ptr[o]; j < row_ptr[o + 1]; ++j) {
      if (col[j] < 0 || col[j] >= g.C)
        return invalid(error, "col[" + str(j) + "]: expected an input channel in [0, " + str(g.C) +
                                  "), got " + str(col[j]));
      if (j > row_ptr[o] && col[j] <= col[j - 1])
        return invalid(error, "col[" + str(j) + "]: expected input channels ascending within filter " +
                                  str(o) + ", got " + str(col[j]) + " after " + str(col[j - 1]));
    }
  return FP_OK;
}

fp_status check_common(const fp_conv2d_shape* shape, const int32_t* row_ptr, const int32_t* col, fp_exec exec,
                       fp::cpu::ConvGeometry& g, std::string& error) {
  fp_status status = fp::capi::check_exec(exec, error);  // rejects FP_DEVICE_CUDA in a build without CUDA
  if (status != FP_OK) return status;
  status = check_shape(shape, g, error);
  if (status != FP_OK) return status;
  return check_lists(g, row_ptr, col, error);
}

fp_status check_pointer(const void* p, int64_t count, const char* name, const char* what,
                        std::string& error) {
  if (count > 0 && !p) return invalid(error, std::string(name) + ": expected " + what + ", got NULL");
  return FP_OK;
}

// Shared by fp_conv2d_forward and fp_conv2d_accumulate: checks, then the blocked kernel over all filters
// and channels, writing (or adding into) the y channels out_channels (identity when NULL).
fp_status conv2d_dense(const fp_conv2d_shape* shape, const float* x, const float* weight, const float* bias,
                       const int64_t* out_channels, int64_t y_channels, bool accumulate, int relu,
                       fp_exec exec, float* y, const char* entry, std::string& error) {
  fp_status status = fp::capi::check_exec(exec, error);
  if (status != FP_OK) return status;
  if (exec.device != FP_DEVICE_CPU)
    return reject(error, FP_ERR_UNAVAILABLE,
                  std::string("exec.device: ") + entry + " runs on the CPU only (use cuDNN on a GPU)");
  fp::cpu::ConvGeometry g;
  status = check_shape(shape, g, error);
  if (status == FP_OK) status = check_pointer(x, g.N, "x", "N * C * H * W floats", error);
  if (status == FP_OK) status = check_pointer(weight, 1, "weight", "O * C * kh * kw floats", error);
  if (status == FP_OK)
    status = check_pointer(y, g.N, "y", "an output buffer of N * O * Ho * Wo floats", error);
  if (status != FP_OK) return status;
  std::vector<int64_t> filters(static_cast<size_t>(g.O)), channels(static_cast<size_t>(g.C));
  for (int64_t o = 0; o < g.O; ++o) filters[static_cast<size_t>(o)] = o;
  for (int64_t c = 0; c < g.C; ++c) channels[static_cast<size_t>(c)] = c;
  if (out_channels) {
    if (y_channels < 1 || y_channels > INT_MAX)
      return invalid(error, "y_channels: expected 1 <= value <= 2^31-1, got " + str(y_channels));
    std::vector<char> seen(static_cast<size_t>(y_channels), 0);
    for (int64_t o = 0; o < g.O; ++o) {
      const int64_t c = out_channels[o];
      if (c < 0 || c >= y_channels || seen[static_cast<size_t>(c)])
        return invalid(error, "out_channels[" + str(o) + "]: expected a channel in [0, " + str(y_channels) +
                                  ") not listed before, got " + str(c));
      seen[static_cast<size_t>(c)] = 1;
      filters[static_cast<size_t>(o)] = c;
    }
  }
  fp::cpu::DenseBlock block{g.O, g.C, filters.data(), channels.data(), weight, bias, relu != 0};
  block.accumulate = accumulate;
  g.O = out_channels ? y_channels : g.O;  // planes per image of y
  fp::cpu::kernels().conv2d_blocked_forward(g, x, block, y);
  return FP_OK;
}

}  // namespace

extern "C" {

fp_status fp_masked_conv2d_forward(const fp_conv2d_shape* shape, const float* x, const int32_t* row_ptr,
                                   const int32_t* col, const float* kernels, const float* bias, fp_exec exec,
                                   float* y) {
  return guarded([&](std::string& error) {
    fp::cpu::ConvGeometry g;
    fp_status status = check_common(shape, row_ptr, col, exec, g, error);
    if (status == FP_OK) status = check_pointer(x, g.N, "x", "N * C * H * W floats", error);
    if (status == FP_OK)
      status = check_pointer(kernels, row_ptr[g.O], "kernels", "nnz * kh * kw floats", error);
    if (status == FP_OK)
      status = check_pointer(y, g.N, "y", "an output buffer of N * O * Ho * Wo floats", error);
    if (status != FP_OK) return status;
#if FP_WITH_CUDA
    if (exec.device == FP_DEVICE_CUDA)
      return fp::cuda::masked_conv2d_forward(g, x, row_ptr, col, kernels, bias, exec.stream, y, error);
#endif
    fp::cpu::kernels().masked_conv2d_forward(g, x, row_ptr, col, kernels, bias, y);
    return FP_OK;
  });
}

fp_status fp_masked_conv2d_backward_input(const fp_conv2d_shape* shape, const float* grad_y,
                                          const int32_t* row_ptr, const int32_t* col, const float* kernels,
                                          fp_exec exec, float* grad_x) {
  return guarded([&](std::string& error) {
    fp::cpu::ConvGeometry g;
    fp_status status = check_common(shape, row_ptr, col, exec, g, error);
    if (status == FP_OK) status = check_pointer(grad_y, g.N, "grad_y", "N * O * Ho * Wo floats", error);
    if (status == FP_OK)
      status = check_pointer(kernels, row_ptr[g.O], "kernels", "nnz * kh * kw floats", error);
    if (status == FP_OK)
      status = check_pointer(grad_x, g.N, "grad_x", "an output buffer of N * C * H * W floats", error);
    if (status != FP_OK) return status;
#if FP_WITH_CUDA
    if (exec.device == FP_DEVICE_CUDA)
      return fp::cuda::masked_conv2d_backward_input(g, grad_y, row_ptr, col, kernels, exec.stream, grad_x,
                                                    error);
#endif
    fp::cpu::kernels().masked_conv2d_backward_input(g, grad_y, row_ptr, col, kernels, grad_x);
    return FP_OK;
  });
}

fp_status fp_masked_conv2d_backward_weight(const fp_conv2d_shape* shape, const float* x, const float* grad_y,
                                           const int32_t* row_ptr, const int32_t* col, fp_exec exec,
                                           float* grad_kernels) {
  return guarded([&](std::string& error) {
    fp::cpu::ConvGeometry g;
    fp_status status = check_common(shape, row_ptr, col, exec, g, error);
    if (status == FP_OK) status = check_pointer(x, g.N, "x", "N * C * H * W floats", error);
    if (status == FP_OK) status = check_pointer(grad_y, g.N, "grad_y", "N * O * Ho * Wo floats", error);
    if (status == FP_OK)
      status = check_pointer(grad_kernels, row_ptr[g.O], "grad_kernels",
                             "an output buffer of nnz * kh * kw floats", error);
    if (status != FP_OK) return status;
#if FP_WITH_CUDA
    if (exec.device == FP_DEVICE_CUDA)
      return fp::cuda::masked_conv2d_backward_weight(g, x, grad_y, row_ptr, col, exec.stream, grad_kernels,
                                                     error);
#endif
    fp::cpu::kernels().masked_conv2d_backward_weight(g, x, grad_y, row_ptr, col, grad_kernels);
    return FP_OK;
  });
}

fp_status fp_conv2d_forward(const fp_conv2d_shape* shape, const float* x, const float* weight,
                            const float* bias, int relu, fp_exec exec, float* y) {
  return guarded([&](std::string& error) {
    return conv2d_dense(shape, x, weight, bias, nullptr, 0, false, relu, exec, y, "fp_conv2d_forward", error);
  });
}

fp_status fp_conv2d_accumulate(const fp_conv2d_shape* shape, const float* x, const float* weight,
                               const float* bias, const int64_t* out_channels, int64_t y_channels, int relu,
                               fp_exec exec, float* y) {
  return guarded([&](std::string& error) {
    if (!out_channels) return invalid(error, "out_channels: expected out_channels int64 indices, got NULL");
    return conv2d_dense(shape, x, weight, bias, out_channels, y_channels, true, relu, exec, y,
                        "fp_conv2d_accumulate", error);
  });
}

}  // extern "C"
