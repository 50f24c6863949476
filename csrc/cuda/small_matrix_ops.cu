// Small-matrix spectral ops and per-kernel criteria on CUDA: one thread per n x n matrix running the
// same detail:: routines as the CPU (fastprune/detail/small_matrix.h, kernel_criteria.h), so both
// backends compute the same double-precision algorithm. No NaN check and no synchronisation: a
// non-finite matrix gives NaN results by design, and the caller orders work on the stream.
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <string>
#include <vector>

#include "common.cuh"
#include "cuda_ops.h"
#include "fastprune/detail/kernel_criteria.h"
#include "fastprune/detail/small_matrix.h"

namespace fp {
namespace cuda {
namespace {

// Few threads per block: each thread holds a whole matrix factorisation in registers/local memory, and
// a block's staging area is kThreads * n * n floats of shared memory (25 KiB at n = 7).
constexpr int kThreads = 128;
// Grid-stride loops cover any count; this many blocks already fill every current GPU several times.
constexpr int64_t kMaxBlocks = 1 << 16;

// Where item i's n x n matrix starts in the source buffer.
struct Matrix {
  int64_t offset;  // first float
  int n;
};

// Runs compute(item, n, matrix) for items 0..count-1, one thread per item, with matrix pointing to a
// shared-memory copy of the item's matrix. Consecutive items must be contiguous in `src` (true for a
// batch and for layers packed one after another), so each block stages its items' floats with
// coalesced loads instead of every thread reading its own strided matrix. Needs blockDim.x * max n^2
// floats of dynamic shared memory.
template <class Locate, class Compute>
__device__ __forceinline__ void for_each_staged(int64_t count, const float* src, Locate locate,
                                                Compute compute) {
  extern __shared__ float stage[];
  __shared__ int64_t range[2];  // floats [range[0], range[1]) of src held in stage
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  // base is uniform across the block, so every thread takes the same number of turns (and barriers).
  for (int64_t base = static_cast<int64_t>(blockIdx.x) * blockDim.x; base < count; base += stride) {
    const int64_t item = base + threadIdx.x;
    const int64_t last = min(base + static_cast<int64_t>(blockDim.x), count) - 1;
    Matrix m = {0, 0};
    if (item <= last) m = locate(item);
    if (item == base) range[0] = m.offset;
    if (item == last) range[1] = m.offset + m.n * m.n;
    __syncthreads();
    for (int64_t i = range[0] + threadIdx.x; i < range[1]; i += blockDim.x) stage[i - range[0]] = src[i];
    __syncthreads();
    if (item <= last) compute(item, m.n, stage + (m.offset - range[0]));
    __syncthreads();  // the next turn overwrites stage and range
  }
}

// One template instance per op, so each kernel carries only its own routine (register pressure).
template <int Op>
__global__ void __launch_bounds__(kThreads)
    small_matrix_kernel(const float* matrices, int64_t count, int n, float* out) {
  for_each_staged(
      count, matrices, [=](int64_t item) { return Matrix{item * n * n, n}; },
      [=](int64_t item, int size, const float* matrix) {
        if constexpr (Op == kOpEigvals) {
          float re[detail::kSmallMaxN], im[detail::kSmallMaxN];
          detail::small_eigvals(matrix, size, re, im);
          float* dst = out + item * size * 2;  // (re, im) pairs, as on the CPU
          for (int e = 0; e < size; ++e) dst[2 * e] = re[e], dst[2 * e + 1] = im[e];
        } else if constexpr (Op == kOpSvdvals) {
          detail::small_svdvals(matrix, size, out + item * size);
        } else {
          out[item] = detail::small_det(matrix, size);
        }
      });
}

// Global kernel g of the network lies in layer layer_of_row(g); its score goes to out[g], since the
// output is packed layer after layer in the same order as the kernels (out[row_offset + kernel]).
__global__ void __launch_bounds__(kThreads)
    kernel_scores_kernel(const LayerInfo* layers, const int* sizes, int num_layers, int64_t total,
                         const float* data, int criterion, float* out) {
  for_each_staged(
      total, data,
      [=](int64_t kernel) {
        const int l = layer_of_row(layers, num_layers, kernel);
        const detail::LayerSpan span = layers[l].span;
        return Matrix{span.data_offset + (kernel - span.row_offset) * span.dims, sizes[l]};
      },
      [=](int64_t kernel, int k, const float* matrix) {
        out[kernel] = detail::kernel_criterion(criterion, matrix, k);
      });
}

// Enough blocks for one item per thread, capped (the grid-stride loop does the rest).
unsigned grid_for(int64_t count) {
  return static_cast<unsigned>(std::min((count + kThreads - 1) / kThreads, kMaxBlocks));
}

size_t stage_bytes(int max_n) {
  return static_cast<size_t>(kThreads) * max_n * max_n * sizeof(float);
}

}  // namespace

fp_status small_matrix_op(int op, const float* matrices, int64_t count, int n, void* stream_handle,
                          float* out, std::string& error) {
  if (count == 0) return FP_OK;
  const cudaStream_t stream = static_cast<cudaStream_t>(stream_handle);
  const unsigned blocks = grid_for(count);
  const size_t shared = stage_bytes(n);
  if (op == kOpEigvals) {
    small_matrix_kernel<kOpEigvals><<<blocks, kThreads, shared, stream>>>(matrices, count, n, out);
  } else if (op == kOpSvdvals) {
    small_matrix_kernel<kOpSvdvals><<<blocks, kThreads, shared, stream>>>(matrices, count, n, out);
  } else if (op == kOpDet) {
    small_matrix_kernel<kOpDet><<<blocks, kThreads, shared, stream>>>(matrices, count, n, out);
  } else {
    error = "internal error: unknown small-matrix op " + std::to_string(op);
    return FP_ERR_INTERNAL;
  }
  return check_cuda(cudaGetLastError(), "small_matrix_kernel launch", error);
}

fp_status kernel_scores(const std::vector<detail::LayerSpan>& layers, const float* data,
                        const std::vector<int>& kernel_sizes, int criterion, void* stream_handle, float* out,
                        std::string& error) {
  if (layers.size() > static_cast<size_t>(INT_MAX)) {
    error = "kernels: num_layers out of range for the CUDA backend";
    return FP_ERR_INVALID_ARGUMENT;
  }
  const int64_t total = layers.empty() ? 0 : layers.back().row_offset + layers.back().rows;
  if (total == 0) return FP_OK;
  const cudaStream_t stream = static_cast<cudaStream_t>(stream_handle);
  // LayerInfo so that layer_of_row() finds a kernel's layer; the tile fields serve the distance ops only.
  std::vector<LayerInfo> infos(layers.size());
  for (size_t l = 0; l < layers.size(); ++l) infos[l] = LayerInfo{layers[l], 0, 0};
  DeviceBuffer<LayerInfo> device_layers(stream);
  DeviceBuffer<int> device_sizes(stream);
  fp_status status = device_layers.allocate(infos.size(), error);
  if (status != FP_OK) return status;
  status = device_sizes.allocate(kernel_sizes.size(), error);
  if (status != FP_OK) return status;
  // Pageable sources: cudaMemcpyAsync stages them before returning, so the host vectors may go.
  FP_CUDA_TRY(cudaMemcpyAsync(device_layers.get(), infos.data(), infos.size() * sizeof(LayerInfo),
                              cudaMemcpyHostToDevice, stream));
  FP_CUDA_TRY(cudaMemcpyAsync(device_sizes.get(), kernel_sizes.data(), kernel_sizes.size() * sizeof(int),
                              cudaMemcpyHostToDevice, stream));
  const int max_k = *std::max_element(kernel_sizes.begin(), kernel_sizes.end());
  kernel_scores_kernel<<<grid_for(total), kThreads, stage_bytes(max_k), stream>>>(
      device_layers.get(), device_sizes.get(), static_cast<int>(layers.size()), total, data, criterion, out);
  return check_cuda(cudaGetLastError(), "kernel_scores_kernel launch", error);
}

}  // namespace cuda
}  // namespace fp
