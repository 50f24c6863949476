// One OpenMP loop over independent items (matrices, kernels), shared by the small-matrix CPU ops.
// Static scheduling: every item costs about the same.
#ifndef FASTPRUNE_CPU_BATCHED_H
#define FASTPRUNE_CPU_BATCHED_H

#include <stdint.h>

#include "cpu/kernels/capability.h"

namespace fp {
namespace cpu {
inline namespace FP_CAP {

template <class Body>
void for_each_item(int64_t count, const Body& body) {
#pragma omp parallel for schedule(static)
  for (int64_t item = 0; item < count; ++item) body(item);
}

}  // namespace FP_CAP
}  // namespace cpu
}  // namespace fp

#endif  // FASTPRUNE_CPU_BATCHED_H
