// Capability detection and the choice of kernel table (see dispatch.h). Compiled with the baseline flags
// only, like everything outside csrc/cpu/kernels/.
#include "cpu/dispatch.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace fp {
namespace cpu {
namespace {

const char* capability_name(Capability c) {
  switch (c) {
    case Capability::kAvx512:
      return "avx512";
    case Capability::kAvx2:
      return "avx2";
    case Capability::kDefault:
      break;
  }
  return "default";
}

// The best capability this CPU and OS support, and what was seen. __builtin_cpu_supports also checks
// that the OS saves the wider registers (XCR0), so a hypervisor that hides AVX-512 state counts as no
// AVX-512.
Capability detect(std::string& seen) {
#if defined(__x86_64__) || defined(_M_X64)
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  const bool avx2 =
      __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  if (avx512 && avx2) {
    seen = "the CPU supports AVX-512 F/BW/VL/DQ";
    return Capability::kAvx512;
  }
  if (avx2) {
    seen = "the CPU supports AVX2, FMA and F16C but not AVX-512 F/BW/VL/DQ";
    return Capability::kAvx2;
  }
  seen = "the CPU lacks AVX2, FMA or F16C: x86-64 baseline (SSE2) kernels";
  return Capability::kDefault;
#elif defined(__aarch64__)
  seen = "aarch64: NEON kernels (the only capability built for this architecture)";
  return Capability::kDefault;
#else
  seen = "portable kernels (no SIMD capability is built for this architecture)";
  return Capability::kDefault;
#endif
}

KernelTable table_of(Capability c) {
#if defined(__x86_64__) || defined(_M_X64)
  if (c == Capability::kAvx512) return cap_avx512::kernel_table();
  if (c == Capability::kAvx2) return cap_avx2::kernel_table();
#else
  (void)c;
#endif
  return cap_default::kernel_table();
}

CapabilityChoice choose() {
  std::string seen;
  const Capability best = detect(seen);
  Capability chosen = best;
  std::string reason = seen, warning;
  const char* requested = std::getenv("FASTPRUNE_CPU_CAPABILITY");
  if (requested && *requested) {
    const std::string req = requested;
    Capability wanted = best;
    bool known = true;
    if (req == "default")
      wanted = Capability::kDefault;
    else if (req == "avx2")
      wanted = Capability::kAvx2;
    else if (req == "avx512")
      wanted = Capability::kAvx512;
    else
      known = false;
    if (!known) {
      warning = "FASTPRUNE_CPU_CAPABILITY=" + req + " is not one of default, avx2, avx512: ignored, using " +
                capability_name(best);
    } else if (static_cast<int>(wanted) > static_cast<int>(best)) {
      warning = "FASTPRUNE_CPU_CAPABILITY=" + req + " asks for more than this CPU supports (" + seen +
                "): using " + capability_name(best);
    } else {
      chosen = wanted;
      if (wanted != best)
        reason = std::string("lowered by FASTPRUNE_CPU_CAPABILITY=") + req + " (" + seen + ")";
      else
        reason = seen + " (FASTPRUNE_CPU_CAPABILITY=" + req + ")";
    }
    if (!warning.empty()) reason = seen + "; " + warning;
  }
  if (!warning.empty()) std::fprintf(stderr, "fastprune: warning: %s\n", warning.c_str());
  return CapabilityChoice{chosen, capability_name(chosen), reason, warning, table_of(chosen)};
}

}  // namespace

const CapabilityChoice& capability_choice() {
  static const CapabilityChoice choice = choose();
  return choice;
}

}  // namespace cpu
}  // namespace fp
