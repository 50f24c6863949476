// CUDA availability probe behind fp_cuda_device_check().
#include <cuda_runtime.h>

#include <string>

#include "cuda_ops.h"

namespace fp {
namespace cuda {

fp_status device_check(std::string& error) {
  int count = 0;
  const cudaError_t result = cudaGetDeviceCount(&count);
  if (result != cudaSuccess) {
    // Clear the (non-sticky) error so it does not leak into the caller's next CUDA call.
    cudaGetLastError();
    error = std::string("no CUDA device: ") + cudaGetErrorString(result);
    return FP_ERR_UNAVAILABLE;
  }
  if (count == 0) {
    error = "no CUDA device: cudaGetDeviceCount() found 0 devices";
    return FP_ERR_UNAVAILABLE;
  }
  return FP_OK;
}

}  // namespace cuda
}  // namespace fp
