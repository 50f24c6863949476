// Which copy of the CPU kernels runs: chosen once per process, at the first kernel call, from what the CPU
// and the OS support (CPUID and XCR0 through __builtin_cpu_supports on x86-64), optionally lowered by the
// environment variable FASTPRUNE_CPU_CAPABILITY=default|avx2|avx512 (like PyTorch's ATEN_CPU_CAPABILITY or
// oneDNN's ONEDNN_MAX_CPU_ISA). Asking for more than the CPU has, or for an unknown name, warns once on
// stderr and keeps the best the CPU supports. Compiled at the baseline: no capability flags here.
#ifndef FASTPRUNE_CPU_DISPATCH_H
#define FASTPRUNE_CPU_DISPATCH_H

#include <string>

#include "cpu/kernel_table.h"

namespace fp {
namespace cpu {

enum class Capability { kDefault = 0, kAvx2 = 1, kAvx512 = 2 };

struct CapabilityChoice {
  Capability capability;
  const char* name;     // "default", "avx2" or "avx512"
  std::string reason;   // why: what the CPU supports and what the environment asked for
  std::string warning;  // non-empty when the request could not be honoured (already printed)
  KernelTable kernels;
};

// Each capability's table (csrc/cpu/kernels/kernel_table.cpp, compiled once per capability). Only the
// capabilities built for this architecture exist: avx2 and avx512 on x86-64 alone.
namespace cap_default {
KernelTable kernel_table();
}
#if defined(__x86_64__) || defined(_M_X64)
namespace cap_avx2 {
KernelTable kernel_table();
}
namespace cap_avx512 {
KernelTable kernel_table();
}
#endif

// The choice, made on first use (thread-safe) and fixed for the process.
const CapabilityChoice& capability_choice();

// The chosen capability's kernels.
inline const KernelTable& kernels() {
  return capability_choice().kernels;
}

}  // namespace cpu
}  // namespace fp

#endif  // FASTPRUNE_CPU_DISPATCH_H
