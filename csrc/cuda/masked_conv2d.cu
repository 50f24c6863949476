// fp_masked_conv2d_* on CUDA: direct convolution over the compressed lists of the kept kernels, the same
// three passes as csrc/cpu/masked_conv2d*.cpp and triton_kernels/masked_conv2d.py.
//
// Memory: x, y, grad_y, grad_x, kernels, bias and grad_kernels are device pointers; row_ptr and col are
// host arrays (the C ABI validates them on the host), uploaded here with the lists derived from them: the
// filter of each kept kernel (backward-weight) and the transposed, per-input-channel lists (CSC,
// backward-input). Work is queued on exec.stream and not synchronised.
//
// Determinism: no atomics. Every output element has one writer (one thread, or one block for a weight
// gradient entry) that sums its terms in a fixed order; block reductions use a fixed tree.
#include <cuda_runtime.h>

#include <climits>
#include <string>
#include <vector>

#include "common.cuh"
#include "cuda_ops.h"

namespace fp {
namespace cuda {
namespace {

using cpu::ConvGeometry;

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65535LL * 32;  // grid-stride loops cover the rest

unsigned blocks_for(int64_t count) {
  const int64_t blocks = (count + kThreads - 1) / kThreads;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > kMaxBlocks ? kMaxBlocks : blocks));
}

// One thread per output y[n, o, oh, ow]: bias + sum over the kept kernels p of filter o (ascending
// channel) and taps (i, j) of x[n, col[p], oh*sh - ph + i*dh, ow*sw - pw + j*dw] * K[p, i, j].
__global__ void forward_kernel(ConvGeometry g, const float* __restrict__ x,
                               const int32_t* __restrict__ row_ptr, const int32_t* __restrict__ col,
                               const float* __restrict__ kernels, const float* __restrict__ bias,
                               float* __restrict__ y) {
  const int64_t total = g.N * g.O * g.Ho * g.Wo;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t ow = idx % g.Wo;
    const int64_t oh = (idx / g.Wo) % g.Ho;
    const int64_t o = (idx / (g.Wo * g.Ho)) % g.O;
    const int64_t n = idx / (g.Wo * g.Ho * g.O);
    float acc = 0.0f;
    for (int64_t p = row_ptr[o]; p < row_ptr[o + 1]; ++p) {
      const float* plane = x + (n * g.C + col[p]) * g.H * g.W;
      const float* k = kernels + p * g.kh * g.kw;
      for (int64_t i = 0; i < g.kh; ++i) {
        const int64_t ih = oh * g.sh - g.ph + i * g.dh;
        if (ih < 0 || ih >= g.H) continue;
        for (int64_t j = 0; j < g.kw; ++j) {
          const int64_t iw = ow * g.sw - g.pw + j * g.dw;
          if (iw >= 0 && iw < g.W) acc += plane[ih * g.W + iw] * k[i * g.kw + j];
        }
      }
    }
    y[idx] = bias != nullptr ? acc + bias[o] : acc;
  }
}

// One thread per grad_x[n, c, ih, iw]: sum over the kept kernels p = (o, c) reading channel c (CSC lists,
// filters ascending) and taps (i, j) with ih + ph - i*dh = oh*sh, 0 <= oh < Ho (w likewise) of
// grad_y[n, o, oh, ow] * K[p, i, j].
__global__ void backward_input_kernel(ConvGeometry g, const float* __restrict__ grad_y,
                                      const int32_t* __restrict__ col_ptr,
                                      const int32_t* __restrict__ csc_kernel,
                                      const int32_t* __restrict__ csc_filter,
                                      const float* __restrict__ kernels, float* __restrict__ grad_x) {
  const int64_t total = g.N * g.C * g.H * g.W;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t iw = idx % g.W;
    const int64_t ih = (idx / g.W) % g.H;
    const int64_t c = (idx / (g.W * g.H)) % g.C;
    const int64_t n = idx / (g.W * g.H * g.C);
    float acc = 0.0f;
    for (int64_t q = col_ptr[c]; q < col_ptr[c + 1]; ++q) {
      const float* plane = grad_y + (n * g.O + csc_filter[q]) * g.Ho * g.Wo;
      const float* k = kernels + static_cast<int64_t>(csc_kernel[q]) * g.kh * g.kw;
      for (int64_t i = 0; i < g.kh; ++i) {
        const int64_t th = ih + g.ph - i * g.dh;
        if (th < 0 || th % g.sh != 0 || th / g.sh >= g.Ho) continue;
        const int64_t oh = th / g.sh;
        for (int64_t j = 0; j < g.kw; ++j) {
          const int64_t tw = iw + g.pw - j * g.dw;
          if (tw < 0 || tw % g.sw != 0 || tw / g.sw >= g.Wo) continue;
          acc += plane[oh * g.Wo + tw / g.sw] * k[i * g.kw + j];
        }
      }
    }
    grad_x[idx] = acc;
  }
}

// One block per kept kernel p = (o, c) and tap (i, j): grad_K[p, i, j] = sum over n, oh, ow of
// x[n, c, oh*sh - ph + i*dh, ow*sw - pw + j*dw] * grad_y[n, o, oh, ow]. Thread t sums the positions
// t, t + kThreads, ... in order; a fixed shared-memory tree adds the kThreads partial sums.
__global__ void __launch_bounds__(kThreads)
    backward_weight_kernel(ConvGeometry g, const float* __restrict__ x, const float* __restrict__ grad_y,
                           const int32_t* __restrict__ col, const int32_t* __restrict__ filter,
                           float* __restrict__ grad_kernels) {
  __shared__ float partial[kThreads];
  const int64_t p = blockIdx.x;
  const int64_t tap = blockIdx.y;
  const int64_t i = tap / g.kw, j = tap % g.kw;
  const int64_t c = col[p], o = filter[p];
  const int64_t positions = g.Ho * g.Wo;
  float acc = 0.0f;
  for (int64_t n = 0; n < g.N; ++n) {
    const float* x_plane = x + (n * g.C + c) * g.H * g.W;
    const float* gy_plane = grad_y + (n * g.O + o) * positions;
    for (int64_t s = threadIdx.x; s < positions; s += kThreads) {
      const int64_t oh = s / g.Wo, ow = s % g.Wo;
      const int64_t ih = oh * g.sh - g.ph + i * g.dh;
      const int64_t iw = ow * g.sw - g.pw + j * g.dw;
      if (ih >= 0 && ih < g.H && iw >= 0 && iw < g.W) acc += x_plane[ih * g.W + iw] * gy_plane[s];
    }
  }
  partial[threadIdx.x] = acc;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half /= 2) {
    if (static_cast<int>(threadIdx.x) < half) partial[threadIdx.x] += partial[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) grad_kernels[p * g.kh * g.kw + tap] = partial[0];
}

// Uploads a host int32 array (count >= 0) to a fresh stream-ordered device buffer.
fp_status upload(const int32_t* host, int64_t count, cudaStream_t stream, DeviceBuffer<int32_t>& buffer,
                 std::string& error) {
  fp_status status = buffer.allocate(static_cast<size_t>(count), error);
  if (status != FP_OK || count == 0) return status;
  FP_CUDA_TRY(cudaMemcpyAsync(buffer.get(), host, static_cast<size_t>(count) * sizeof(int32_t),
                              cudaMemcpyHostToDevice, stream));
  return FP_OK;
}

}  // namespace

fp_status masked_conv2d_forward(const ConvGeometry& g, const float* x, const int32_t* row_ptr,
                                const int32_t* col, const float* kernels, const float* bias,
                                void* stream_handle, float* y, std::string& error) {
  const cudaStream_t stream = static_cast<cudaStream_t>(stream_handle);
  const int64_t total = g.N * g.O * g.Ho * g.Wo;
  if (total == 0) return FP_OK;
  DeviceBuffer<int32_t> rows(stream), cols(stream);
  fp_status status = upload(row_ptr, g.O + 1, stream, rows, error);
  if (status == FP_OK) status = upload(col, row_ptr[g.O], stream, cols, error);
  if (status != FP_OK) return status;
  forward_kernel<<<blocks_for(total), kThreads, 0, stream>>>(g, x, rows.get(), cols.get(), kernels, bias, y);
  FP_CUDA_TRY(cudaGetLastError());
  return FP_OK;
}

fp_status masked_conv2d_backward_input(const ConvGeometry& g, const float* grad_y, const int32_t* row_ptr,
                                       const int32_t* col, const float* kernels, void* stream_handle,
                                       float* grad_x, std::string& error) {
  const cudaStream_t stream = static_cast<cudaStream_t>(stream_handle);
  const int64_t total = g.N * g.C * g.H * g.W;
  if (total == 0) return FP_OK;
  // Transposed lists: per input channel, its kept kernels with filters ascending (a counting sort).
  const int64_t nnz = row_ptr[g.O];
  std::vector<int32_t> col_ptr(static_cast<size_t>(g.C) + 1, 0), csc_kernel(nnz), csc_filter(nnz);
  for (int64_t p = 0; p < nnz; ++p) ++col_ptr[col[p] + 1];
  for (int64_t c = 0; c < g.C; ++c) col_ptr[c + 1] += col_ptr[c];
  std::vector<int32_t> next(col_ptr.begin(), col_ptr.end() - 1);
  for (int64_t o = 0; o < g.O; ++o)
    for (int64_t p = row_ptr[o]; p < row_ptr[o + 1]; ++p) {
      const int32_t slot = next[col[p]]++;
      csc_kernel[slot] = static_cast<int32_t>(p);
      csc_filter[slot] = static_cast<int32_t>(o);
    }
  DeviceBuffer<int32_t> d_col_ptr(stream), d_kernel(stream), d_filter(stream);
  fp_status status = upload(col_ptr.data(), g.C + 1, stream, d_col_ptr, error);
  if (status == FP_OK) status = upload(csc_kernel.data(), nnz, stream, d_kernel, error);
  if (status == FP_OK) status = upload(csc_filter.data(), nnz, stream, d_filter, error);
  if (status != FP_OK) return status;
  backward_input_kernel<<<blocks_for(total), kThreads, 0, stream>>>(
      g, grad_y, d_col_ptr.get(), d_kernel.get(), d_filter.get(), kernels, grad_x);
  FP_CUDA_TRY(cudaGetLastError());
  return FP_OK;
}

fp_status masked_conv2d_backward_weight(const ConvGeometry& g, const float* x, const float* grad_y,
                                        const int32_t* row_ptr, const int32_t* col, void* stream_handle,
                                        float* grad_kernels, std::string& error) {
  const cudaStream_t stream = static_cast<cudaStream_t>(stream_handle);
  const int64_t nnz = row_ptr[g.O];
  if (nnz == 0) return FP_OK;
  if (nnz > INT_MAX || g.kh * g.kw > 65535) {
    error = "kernels: too many kept kernels or taps for one CUDA launch";
    return FP_ERR_INVALID_ARGUMENT;
  }
  std::vector<int32_t> filter(nnz);
  for (int64_t o = 0; o < g.O; ++o)
    for (int64_t p = row_ptr[o]; p < row_ptr[o + 1]; ++p) filter[p] = static_cast<int32_t>(o);
  DeviceBuffer<int32_t> cols(stream), filters(stream);
  fp_status status = upload(col, nnz, stream, cols, error);
  if (status == FP_OK) status = upload(filter.data(), nnz, stream, filters, error);
  if (status != FP_OK) return status;
  const dim3 grid(static_cast<unsigned>(nnz), static_cast<unsigned>(g.kh * g.kw));
  backward_weight_kernel<<<grid, kThreads, 0, stream>>>(g, x, grad_y, cols.get(), filters.get(),
                                                        grad_kernels);
  FP_CUDA_TRY(cudaGetLastError());
  return FP_OK;
}

}  // namespace cuda
}  // namespace fp
