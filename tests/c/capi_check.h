/* The check program's reporting, shared by its two files (capi_check.c: build facts, scoring, small-matrix
 * ops, kernel scores; capi_check_conv.c: the convolutions). One line per failure. */
#ifndef FASTPRUNE_TESTS_C_CAPI_CHECK_H
#define FASTPRUNE_TESTS_C_CAPI_CHECK_H

#include <stdarg.h>

#include "reference.h"

extern int failures, checks;
extern const char* section;
extern int cuda_usable; /* fp_cuda_device_check() == FP_OK */
extern ref_rng rng;

static const fp_exec CPU = {FP_DEVICE_CPU, NULL};
static const fp_exec BAD_EXEC[3] = {{(fp_device)2, NULL}, {(fp_device)-1, NULL}, {FP_DEVICE_CUDA, NULL}};

static inline void check_(int ok, int line, const char* fmt, ...) {
  ++checks;
  if (ok) return;
  ++failures;
  va_list ap;
  va_start(ap, fmt);
  printf("FAILED [%s, line %d]: ", section, line);
  vprintf(fmt, ap);
  printf("\n");
  va_end(ap);
}
#define CHECK(cond, ...) check_((cond), __LINE__, __VA_ARGS__)

/* A rejected call: status `want` and a non-empty fp_last_error() that contains `name` (when given). */
#define EXPECT_ERR(call, want, name, what) expect_err_((call), (want), (name), (what), __LINE__)
static inline void expect_err_(fp_status got, fp_status want, const char* name, const char* what, int line) {
  const char* msg = fp_last_error();
  check_(got == want, line, "%s: got %s (\"%s\"), expected %s", what, fp_status_name(got),
         msg ? msg : "(null)", fp_status_name(want));
  check_(msg && msg[0], line, "%s: empty fp_last_error()", what);
  if (!name || !msg || !msg[0]) return;
  /* "^x:" : the message starts with "x:" (a bare "x" would match any message). */
  const int found = name[0] == '^' ? !strncmp(msg, name + 1, strlen(name + 1)) : strstr(msg, name) != NULL;
  check_(found, line, "%s: \"%s\" does not name %s", what, msg, name);
}

/* A successful call: FP_OK and fp_last_error() "" afterwards. */
#define EXPECT_OK(call, what) expect_ok_((call), (what), __LINE__)
static inline void expect_ok_(fp_status got, const char* what, int line) {
  check_(got == FP_OK, line, "%s: got %s (\"%s\"), expected FP_OK", what, fp_status_name(got),
         fp_last_error());
  if (got == FP_OK)
    check_(fp_last_error()[0] == 0, line, "%s: fp_last_error() \"%s\" after a success", what,
           fp_last_error());
}

/* Every bad fp_exec (bound to `e` in call): unknown device values (FP_ERR_INVALID_ARGUMENT), and
 * FP_DEVICE_CUDA where no CUDA device can be used (FP_ERR_UNAVAILABLE; skipped where one can: the
 * pointers here are host memory), or always when cuda_always_unavailable (the CPU-only ops). */
#define EXPECT_BAD_EXEC(call_with_e, what, cuda_always_unavailable)                                       \
  for (int e_ = 0; e_ < 3; ++e_) {                                                                        \
    const fp_exec e = BAD_EXEC[e_];                                                                       \
    if (e_ == 2 && cuda_usable && !(cuda_always_unavailable)) continue;                                   \
    EXPECT_ERR(call_with_e, e_ == 2 ? FP_ERR_UNAVAILABLE : FP_ERR_INVALID_ARGUMENT, "exec.device", what); \
  }

/* n random floats in a malloc'd buffer (at least one). */
static inline float* fvec(int64_t n) {
  float* p = (float*)malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
  rng_fill(&rng, p, n);
  return p;
}

void check_masked_conv(void);
void check_dense_conv(void);
/* Runs probe `name` of the conv file in this process (the child of a ref_run_child): its exit status. */
int run_conv_probe(const char* name);
extern const char* const conv_probes[];
uint64_t conv_results_hash(void);

#endif /* FASTPRUNE_TESTS_C_CAPI_CHECK_H */
