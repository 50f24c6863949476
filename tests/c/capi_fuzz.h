/* The fuzz harness's shared state, checks and argument generators (capi_fuzz.c: driver, scoring ops,
 * small-matrix ops, kernel scores; capi_fuzz_conv.c: the convolutions). */
#ifndef FASTPRUNE_TESTS_C_CAPI_FUZZ_H
#define FASTPRUNE_TESTS_C_CAPI_FUZZ_H

#include "reference.h"

extern uint64_t seed;
extern int64_t iteration, failures, calls, ok_calls, rejected[8], per_op[13][2];
extern int cuda_usable, op; /* op: the entry point of this iteration, an index of op_names */
extern const char* const op_names[13];

void fail_(int line, const char* fmt, ...);
#define FAIL(...) fail_(__LINE__, __VA_ARGS__)

typedef struct {
  int invalid, unavailable, nonfinite, may_invalid;
} expect_t;
/* Checks a status against e; 1 when the call succeeded as expected (results to compare). */
int check_status(fp_status s, expect_t e);

/* ---- argument generators ------------------------------------------------------------------------------ */
static inline int pct(ref_rng* r, int p) {
  return (int)(rng_next(r) % 100) < p;
}
static const int64_t BAD[7] = {0, -1, -7, INT64_MIN, (int64_t)INT_MAX + 1, INT64_MAX / 2, INT64_MAX};

/* A size in [lo, hi] (small values more often), or with probability p% one outside [lo, 2^31-1]. */
static inline int64_t gen_size(ref_rng* r, int64_t lo, int64_t hi, int p, int* bad) {
  if (pct(r, p)) {
    int64_t v;
    do v = BAD[rng_next(r) % 7];
    while (v >= lo && v <= INT_MAX);
    *bad = 1;
    return v;
  }
  return pct(r, 50) ? rng_range(r, lo, lo + (hi - lo) / 3) : rng_range(r, lo, hi);
}

static inline fp_exec gen_exec(ref_rng* r, expect_t* e, int cpu_only) {
  fp_exec x = {FP_DEVICE_CPU, pct(r, 10) ? (void*)(uintptr_t)0x1234 : NULL}; /* stream: ignored on the CPU */
  const int u = (int)(rng_next(r) % 100);
  if (u < 3)
    x.device = (fp_device)(u == 0 ? 2 : u == 1 ? -1 : INT_MAX), e->invalid = 1;
  else if (u < 6 && (cpu_only || !cuda_usable))
    x.device = FP_DEVICE_CUDA, e->unavailable = 1;
  return x;
}

/* Fills n floats by profile: 0 normal, 1 with zeros and denormals, 2 with large values (+-1e17..1e18), 3
 * like 1 plus one NaN / Inf (returns 1 then). moderate: large values at most 1e4 (convolutions). */
static inline int gen_floats(ref_rng* r, float* x, int64_t n, int profile, int moderate) {
  const double scale = pow(10.0, rng_range(r, -2, 2));
  for (int64_t i = 0; i < n; ++i) {
    const int u = (int)(rng_next(r) % 100);
    float v = (float)(rng_normal(r) * scale);
    if (profile == 1 || profile == 3) v = u < 15 ? 0.0f : u < 25 ? (float)((rng_unit(r) - 0.5) * 2e-39) : v;
    if (profile == 2 && u < 50)
      v = (float)((u % 2 ? -1 : 1) * (moderate ? 1e4 : 1e17) * (1.0 + 9.0 * rng_unit(r)));
    x[i] = v;
  }
  if (profile != 3 || n < 1) return 0;
  const int u = (int)(rng_next(r) % 3);
  x[rng_range(r, 0, n - 1)] = u == 0 ? NAN : u == 1 ? INFINITY : -INFINITY;
  return 1;
}
static inline int gen_profile(ref_rng* r) {
  const int u = (int)(rng_next(r) % 100);
  return u < 50 ? 0 : u < 75 ? 1 : u < 87 ? 2 : 3;
}

/* malloc'd n floats (n >= 1) filled by profile; small dummies (16) when n is not a real size. */
static inline float* gen_buffer(ref_rng* r, int64_t n, int profile, int moderate, int* nonfinite) {
  const int64_t m = n >= 1 && n <= (1 << 20) ? n : 16;
  float* p = (float*)malloc(sizeof(float) * (size_t)m);
  const int bad = gen_floats(r, p, m, profile, moderate);
  if (nonfinite) *nonfinite = bad && n == m;
  return p;
}

void fuzz_conv(ref_rng* r, int huge);

#endif /* FASTPRUNE_TESTS_C_CAPI_FUZZ_H */
