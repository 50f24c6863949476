// Internals shared by the C ABI entry points (csrc/capi*.cpp): messages, exception guard, argument
// checks. Nothing here is public.
#ifndef FASTPRUNE_CAPI_INTERNAL_H
#define FASTPRUNE_CAPI_INTERNAL_H

#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "fastprune/detail/ragged.h"
#include "fastprune/fastprune.h"

namespace fp {
namespace capi {

// The message fp_last_error() returns on this thread.
std::string& last_error();

inline fp_status reject(std::string& error, fp_status status, const std::string& message) {
  error = message;
  return status;
}

// Runs `body` (returning fp_status and filling `error`), keeps the message for fp_last_error(), and
// converts C++ exceptions to statuses: nothing may unwind across the C ABI.
template <typename Body>
fp_status guarded(Body&& body) {
  std::string error;
  fp_status status;
  try {
    status = body(error);
  } catch (const std::bad_alloc&) {
    status = reject(error, FP_ERR_OUT_OF_MEMORY, "out of host memory");
  } catch (const std::exception& e) {
    status = reject(error, FP_ERR_INTERNAL, std::string("internal error: ") + e.what());
  } catch (...) {
    status = reject(error, FP_ERR_INTERNAL, "internal error: unknown exception");
  }
  last_error() = status == FP_OK ? std::string() : error;
  return status;
}

// exec.device is known, and usable in this build and on this machine.
fp_status check_exec(fp_exec exec, std::string& error);

// Checks a ragged batch argument called `name` ("filters", "kernels"), the exec and the output, and
// fills `layers`.
fp_status check_batch(const fp_ragged_batch* batch, const char* name, fp_exec exec, const void* out,
                      std::vector<detail::LayerSpan>& layers, std::string& error);

// Where each layer's rows start on the host.
std::vector<const float*> host_layer_rows(const fp_ragged_batch& batch,
                                          const std::vector<detail::LayerSpan>& layers);

}  // namespace capi
}  // namespace fp

#endif  // FASTPRUNE_CAPI_INTERNAL_H
