// fastprune._C: a thin pybind11 layer over the C ABI. It converts Python integers (buffer addresses,
// sizes) to an ABI call, releases the GIL while the kernel runs, and turns a status into a Python
// exception carrying the library's message. No PyTorch here: fastprune.ops passes data_ptr()s.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <vector>

#include "fastprune/fastprune.h"

namespace py = pybind11;

namespace {

void raise_on_error(fp_status status) {
  if (status == FP_OK) return;
  const std::string message = std::string(fp_status_name(status)) + ": " + fp_last_error();
  switch (status) {
    case FP_ERR_INVALID_ARGUMENT:
    case FP_ERR_NONFINITE:
      throw py::value_error(message);
    case FP_ERR_OUT_OF_MEMORY:
      throw std::bad_alloc();
    default:
      throw std::runtime_error(message);
  }
}

// data: address of packed filters, or 0 with layer_data holding one address per layer (CPU).
struct Batch {
  std::vector<int64_t> rows, dims;
  std::vector<const float*> layers;
  fp_ragged_batch view;
  Batch(std::uintptr_t data, const std::vector<std::uintptr_t>& layer_data, std::vector<int64_t> num_rows,
        std::vector<int64_t> row_dims)
      : rows(std::move(num_rows)), dims(std::move(row_dims)) {
    if (rows.size() != dims.size()) throw py::value_error("num_rows and row_dims must have the same length");
    if (!layer_data.empty() && layer_data.size() != rows.size())
      throw py::value_error("layer_data must be empty or have one address per layer");
    for (std::uintptr_t address : layer_data) layers.push_back(reinterpret_cast<const float*>(address));
    view = fp_ragged_batch{reinterpret_cast<const float*>(data), layers.empty() ? nullptr : layers.data(),
                           static_cast<int64_t>(rows.size()), rows.data(), dims.data()};
  }
};

// Runs an ABI call with the GIL released (kernels can take a while; training threads go on), then
// raises the library's error, if any, with the GIL held again.
template <typename Call>
void call_without_gil(Call&& call) {
  fp_status status;
  {
    py::gil_scoped_release release;
    status = call();
  }
  raise_on_error(status);
}

fp_exec exec_of(int device, std::uintptr_t stream) {
  return fp_exec{static_cast<fp_device>(device), reinterpret_cast<void*>(stream)};
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "fastprune C ABI bindings (internal; use fastprune.ops)";

  m.def(
      "pairwise_distances",
      [](std::uintptr_t data, const std::vector<std::uintptr_t>& layer_data, std::vector<int64_t> rows,
         std::vector<int64_t> dims, int metric, int device, std::uintptr_t stream, std::uintptr_t out) {
        Batch batch(data, layer_data, std::move(rows), std::move(dims));
        call_without_gil([&] {
          return fp_pairwise_distances(&batch.view, static_cast<fp_metric>(metric), exec_of(device, stream),
                                       reinterpret_cast<float*>(out));
        });
      },
      py::arg("data"), py::arg("layer_data"), py::arg("num_rows"), py::arg("row_dims"), py::arg("metric"),
      py::arg("device"), py::arg("stream"), py::arg("out"));

  m.def(
      "gm_scores",
      [](std::uintptr_t data, const std::vector<std::uintptr_t>& layer_data, std::vector<int64_t> rows,
         std::vector<int64_t> dims, int metric, std::uintptr_t keep_mask, int device, std::uintptr_t stream,
         std::uintptr_t out) {
        Batch batch(data, layer_data, std::move(rows), std::move(dims));
        call_without_gil([&] {
          return fp_gm_scores(&batch.view, static_cast<fp_metric>(metric),
                              reinterpret_cast<const uint8_t*>(keep_mask), exec_of(device, stream),
                              reinterpret_cast<float*>(out));
        });
      },
      py::arg("data"), py::arg("layer_data"), py::arg("num_rows"), py::arg("row_dims"), py::arg("metric"),
      py::arg("keep_mask"), py::arg("device"), py::arg("stream"), py::arg("out"));

  // Small-matrix ops: `name` selects fp_small_eigvals / fp_small_svdvals / fp_small_det.
  m.def(
      "small_matrix_op",
      [](const std::string& name, std::uintptr_t matrices, int64_t count, int n, int device,
         std::uintptr_t stream, std::uintptr_t out) {
        auto fn = name == "small_eigvals"   ? fp_small_eigvals
                  : name == "small_svdvals" ? fp_small_svdvals
                  : name == "small_det"     ? fp_small_det
                                            : nullptr;
        if (!fn) throw py::value_error("unknown small-matrix op " + name);
        call_without_gil([&] {
          return fn(reinterpret_cast<const float*>(matrices), count, n, exec_of(device, stream),
                    reinterpret_cast<float*>(out));
        });
      },
      py::arg("name"), py::arg("matrices"), py::arg("count"), py::arg("n"), py::arg("device"),
      py::arg("stream"), py::arg("out"));

  m.def(
      "kernel_scores",
      [](std::uintptr_t data, const std::vector<std::uintptr_t>& layer_data, std::vector<int64_t> rows,
         std::vector<int64_t> dims, int criterion, int device, std::uintptr_t stream, std::uintptr_t out) {
        Batch batch(data, layer_data, std::move(rows), std::move(dims));
        call_without_gil([&] {
          return fp_kernel_scores(&batch.view, static_cast<fp_kernel_criterion>(criterion),
                                  exec_of(device, stream), reinterpret_cast<float*>(out));
        });
      },
      py::arg("data"), py::arg("layer_data"), py::arg("num_rows"), py::arg("row_dims"), py::arg("criterion"),
      py::arg("device"), py::arg("stream"), py::arg("out"));
  m.def("kernel_criterion_power", [](int criterion, int k) {
    return fp_kernel_criterion_power(static_cast<fp_kernel_criterion>(criterion), k);
  });

  // Masked convolution. shape: the 13 fields of fp_conv2d_shape in order; pointers as integers (0 = NULL).
  // `pass` selects fp_masked_conv2d_forward ("forward": a = x, b = bias, out = y), "backward_input"
  // (a = grad_y, out = grad_x) or "backward_weight" (a = x, b = grad_y, out = grad_kernels).
  m.def(
      "masked_conv2d",
      [](const std::string& pass, const std::vector<int64_t>& shape, std::uintptr_t a, std::uintptr_t b,
         std::uintptr_t row_ptr, std::uintptr_t col, std::uintptr_t kernels, int device, std::uintptr_t stream,
         std::uintptr_t out) {
        if (shape.size() != 13) throw py::value_error("shape: expected the 13 fields of fp_conv2d_shape");
        const fp_conv2d_shape s{shape[0], shape[1], shape[2], shape[3],  shape[4],  shape[5], shape[6],
                                shape[7], shape[8], shape[9], shape[10], shape[11], shape[12]};
        const auto f = [](std::uintptr_t p) { return reinterpret_cast<const float*>(p); };
        const auto rows = reinterpret_cast<const int32_t*>(row_ptr);
        const auto cols = reinterpret_cast<const int32_t*>(col);
        const fp_exec exec = exec_of(device, stream);
        if (pass != "forward" && pass != "backward_input" && pass != "backward_weight")
          throw py::value_error("unknown masked_conv2d pass " + pass);
        call_without_gil([&] {
          if (pass == "forward")
            return fp_masked_conv2d_forward(&s, f(a), rows, cols, f(kernels), f(b), exec,
                                            reinterpret_cast<float*>(out));
          if (pass == "backward_input")
            return fp_masked_conv2d_backward_input(&s, f(a), rows, cols, f(kernels), exec,
                                                   reinterpret_cast<float*>(out));
          return fp_masked_conv2d_backward_weight(&s, f(a), f(b), rows, cols, exec,
                                                  reinterpret_cast<float*>(out));
        });
      },
      py::arg("pass_"), py::arg("shape"), py::arg("a"), py::arg("b"), py::arg("row_ptr"), py::arg("col"),
      py::arg("kernels"), py::arg("device"), py::arg("stream"), py::arg("out"));

  // Dense convolution with fused bias + ReLU (fp_conv2d_forward); same shape fields and pointer rules.
  m.def(
      "conv2d",
      [](const std::vector<int64_t>& shape, std::uintptr_t x, std::uintptr_t weight, std::uintptr_t bias,
         bool relu, std::uintptr_t y) {
        if (shape.size() != 13) throw py::value_error("shape: expected the 13 fields of fp_conv2d_shape");
        const fp_conv2d_shape s{shape[0], shape[1], shape[2], shape[3],  shape[4],  shape[5], shape[6],
                                shape[7], shape[8], shape[9], shape[10], shape[11], shape[12]};
        const auto f = [](std::uintptr_t p) { return reinterpret_cast<const float*>(p); };
        call_without_gil([&] {
          return fp_conv2d_forward(&s, f(x), f(weight), f(bias), relu ? 1 : 0, exec_of(0, 0),
                                   reinterpret_cast<float*>(y));
        });
      },
      py::arg("shape"), py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("relu"), py::arg("y"));
  // fp_conv2d_accumulate: out_channels is the address of O int64 channel indices of y (y_channels wide).
  m.def(
      "conv2d_accumulate",
      [](const std::vector<int64_t>& shape, std::uintptr_t x, std::uintptr_t weight, std::uintptr_t bias,
         std::uintptr_t out_channels, int64_t y_channels, bool relu, std::uintptr_t y) {
        if (shape.size() != 13) throw py::value_error("shape: expected the 13 fields of fp_conv2d_shape");
        const fp_conv2d_shape s{shape[0], shape[1], shape[2], shape[3],  shape[4],  shape[5], shape[6],
                                shape[7], shape[8], shape[9], shape[10], shape[11], shape[12]};
        const auto f = [](std::uintptr_t p) { return reinterpret_cast<const float*>(p); };
        call_without_gil([&] {
          return fp_conv2d_accumulate(&s, f(x), f(weight), f(bias),
                                      reinterpret_cast<const int64_t*>(out_channels), y_channels,
                                      relu ? 1 : 0, exec_of(0, 0), reinterpret_cast<float*>(y));
        });
      },
      py::arg("shape"), py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("out_channels"),
      py::arg("y_channels"), py::arg("relu"), py::arg("y"));

  m.def("cuda_device_check", [] {
    const fp_status status = fp_cuda_device_check();
    return py::make_tuple(status == FP_OK, status == FP_OK ? std::string() : std::string(fp_last_error()));
  });
  m.def("build_info", [] {
    py::dict info;
    info["version"] = fp_version();
    info["abi_version"] = fp_abi_version();
    info["cuda_compiled"] = fp_cuda_compiled() != 0;
    info["cuda_archs"] = fp_cuda_archs();
    info["openmp_max_threads"] = fp_openmp_max_threads();
    info["cpu_capability"] = fp_cpu_capability();
    info["cpu_capability_reason"] = fp_cpu_capability_reason();
    info["cpu_capabilities_built"] = fp_cpu_capabilities_built();
    return info;
  });
}
