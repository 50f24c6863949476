// This capability's entry points as a KernelTable (cpu/kernel_table.h), for the dispatcher
// (csrc/cpu/dispatch.cpp). Built by value on each call, so the capability files hold no static
// initialiser (the dispatcher calls it once and keeps the result).
#include "cpu/kernel_table.h"

#include "cpu/kernels/capability.h"
#include "cpu/kernels/conv2d_blocked.h"
#include "cpu/kernels/cpu_ops.h"
#include "cpu/kernels/masked_conv2d.h"

namespace fp {
namespace cpu {
inline namespace FP_CAP {

KernelTable kernel_table() {
  KernelTable table;
  table.pairwise_distances = pairwise_distances;
  table.gm_scores = gm_scores;
  table.small_eigvals = small_eigvals;
  table.small_svdvals = small_svdvals;
  table.small_det = small_det;
  table.kernel_scores = kernel_scores;
  table.conv2d_blocked_forward = conv2d_blocked_forward;
  table.masked_conv2d_forward = masked_conv2d_forward;
  table.masked_conv2d_backward_input = masked_conv2d_backward_input;
  table.masked_conv2d_backward_weight = masked_conv2d_backward_weight;
  return table;
}

}  // namespace FP_CAP
}  // namespace cpu
}  // namespace fp
