/* Fuzz harness of the fastprune C ABI: fastprune_capi_fuzz [iterations = 2000] [seed = 1] [first = 0].
 * Iteration i draws its case from splitmix64(seed, i) alone: an entry point and random arguments (sizes
 * valid, 0, negative or huge; enums in and out of range; NULL pointers; valid and broken compressed kernel
 * lists; normal, zero, denormal, large and non-finite values). A call expected to fail gets small real
 * buffers or NULL (it must fail before touching memory); a valid call gets malloc'd buffers of exactly the
 * needed size (ASan catches overruns). Checked: a valid fp_status; a non-empty message for a rejection, which
 * must be one the arguments explain; "" after FP_OK; FP_OK results against the naive references of
 * reference.h. Valid calls on an empty batch of 2^30 x 2^30 images run in a child process (a crash there is
 * reported, not fatal). Values: normal (scale 1e-2..1e2), zero, denormal, large (1e17..1e18), NaN / Inf; not
 * tiny normals (1e-30..1e-19) nor beyond 1.8e19, where the L2 kernels' float squares underflow / overflow
 * (pinned by capi_check). Exit status 1 on
 * any failure, each printed with the command that reproduces it: fastprune_capi_fuzz 1 SEED ITERATION. */
#include "capi_fuzz.h"

#include <stdarg.h>

uint64_t seed;
int64_t iteration, failures, calls, ok_calls, rejected[8], per_op[13][2];
static int64_t isolated;
int cuda_usable, op;
static int child_mode;
static char repro[200];
const char* const op_names[13] = {"fp_pairwise_distances",
                                  "fp_gm_scores",
                                  "fp_small_eigvals",
                                  "fp_small_svdvals",
                                  "fp_small_det",
                                  "fp_kernel_scores",
                                  "fp_masked_conv2d_forward",
                                  "fp_masked_conv2d_backward_input",
                                  "fp_masked_conv2d_backward_weight",
                                  "fp_conv2d_forward",
                                  "fp_conv2d_accumulate",
                                  "info",
                                  "conv on an empty batch of huge images (child process)"};

void fail_(int line, const char* fmt, ...) {
  if (++failures > 30) return;
  va_list ap;
  va_start(ap, fmt);
  printf("FAILED seed %llu iteration %lld, %s (line %d): ", (unsigned long long)seed, (long long)iteration,
         op_names[op], line);
  vprintf(fmt, ap);
  printf("  [reproduce: fastprune_capi_fuzz 1 %llu %lld]\n", (unsigned long long)seed, (long long)iteration);
  va_end(ap);
}
#define FAIL(...) fail_(__LINE__, __VA_ARGS__)

static void on_signal(int sig) {
  ssize_t w = write(2, repro, strlen(repro));
  (void)w;
  signal(sig, SIG_DFL);
  raise(sig);
}

/* What the arguments allow: FP_OK when no flag is set; otherwise any flagged status. may_invalid: FP_OK or
 * FP_ERR_INVALID_ARGUMENT (a NULL pointer to zero elements: fastprune.h is silent). */

/* Checks a status against e; 1 when the call succeeded as expected (results to compare). */
int check_status(fp_status s, expect_t e) {
  ++calls;
  const char* msg = fp_last_error();
  const int fails = e.invalid || e.unavailable || e.nonfinite;
  if (!ref_status_valid(s)) return FAIL("returned %d, not an fp_status", (int)s), 0;
  ++per_op[op][s != FP_OK];
  if (s == FP_OK) {
    ++ok_calls;
    if (!msg || msg[0]) FAIL("fp_last_error() \"%s\" after FP_OK", msg ? msg : "(null)");
    if (fails)
      FAIL("FP_OK, expected a failure (invalid %d, unavailable %d, nonfinite %d)", e.invalid, e.unavailable,
           e.nonfinite);
    return !fails;
  }
  ++rejected[s];
  if (!msg || !msg[0]) FAIL("%s with an empty fp_last_error()", fp_status_name(s));
  const int allowed = (s == FP_ERR_INVALID_ARGUMENT && (e.invalid || e.may_invalid)) ||
                      (s == FP_ERR_UNAVAILABLE && e.unavailable) || (s == FP_ERR_NONFINITE && e.nonfinite);
  if (!allowed)
    FAIL("%s (\"%s\"), expected %s%s%s%s", fp_status_name(s), msg ? msg : "", fails ? "" : "FP_OK",
         e.invalid ? "FP_ERR_INVALID_ARGUMENT " : "", e.unavailable ? "FP_ERR_UNAVAILABLE " : "",
         e.nonfinite ? "FP_ERR_NONFINITE" : "");
  return 0;
}

/* ---- scoring ops and kernel scores -------------------------------------------------------------------- */
static void fuzz_batch(ref_rng* r) {
  expect_t e = {0, 0, 0, 0};
  const int kernel_op = op == 5;
  int64_t L = rng_range(r, 1, 3), rows[3], dims[3];
  int bad = 0, forced = 0;
  if (pct(r, 5)) L = rng_next(r) % 2 ? -1 : 0, bad = 1;
  if (pct(r, 3))
    L = INT64_MAX / 2, bad = 1, forced = (int)rng_range(r, 0, 2); /* only with a bad size below */
  const int64_t alen = L >= 1 && L <= 3 ? L : 3;
  for (int64_t l = 0; l < alen; ++l) {
    rows[l] = gen_size(r, 1, 40, 4, &bad);
    const int64_t k = rng_range(r, 1, 7);
    dims[l] = kernel_op ? k * k : gen_size(r, 1, 64, 4, &bad);
    if (kernel_op && pct(r, 5))
      dims[l] = (int64_t[]){0, -1, 2, 5, 50, 64, INT64_MAX / 2}[rng_next(r) % 7], bad = 1;
  }
  if (L == INT64_MAX / 2) rows[forced] = BAD[rng_next(r) % 3];
  const int64_t* num_rows = pct(r, 3) ? (bad = 1, (const int64_t*)NULL) : rows;
  const int64_t* row_dims = pct(r, 3) ? (bad = 1, (const int64_t*)NULL) : dims;
  int64_t total = 0, nrows = 0, squares = 0;
  for (int64_t l = 0; !bad && l < L; ++l)
    total += rows[l] * dims[l], nrows += rows[l], squares += rows[l] * rows[l];
  e.invalid = bad;
  const int profile = gen_profile(r);
  int nonfinite = 0;
  float* data = gen_buffer(r, bad ? 0 : total, profile, 0, &nonfinite);
  float* blocks[3]; /* the same numbers, one block per layer */
  for (int64_t l = 0, off = 0; l < 3; ++l) {
    const int real = !bad && l < L;
    const int64_t n = real ? rows[l] * dims[l] : 16;
    blocks[l] = (float*)malloc(sizeof(float) * (size_t)n);
    if (real)
      memcpy(blocks[l], data + off, sizeof(float) * (size_t)n), off += n;
    else
      memset(blocks[l], 0, sizeof(float) * 16);
  }
  const float* layers[3] = {blocks[0], blocks[1], blocks[2]};
  const int form = (int)(rng_next(r) % 100);
  fp_ragged_batch b = {form < 45 || (form >= 90 && form < 95) ? data : NULL,
                       form >= 45 && form < 95 ? layers : NULL, L, num_rows, row_dims};
  if (form >= 90) e.invalid = 1; /* both or neither */
  if (b.layer_data && pct(r, 4)) layers[rng_range(r, 0, alen - 1)] = NULL, e.invalid = 1;
  const int64_t out_n = bad ? 16 : op == 0 ? squares : nrows;
  float* out = pct(r, 3) ? (e.invalid = 1, (float*)NULL) : (float*)malloc(sizeof(float) * (size_t)out_n);
  const int metric =
      pct(r, 6) ? (int[]){-1, 4, 8, 100, INT_MIN}[rng_next(r) % 5] : (int)rng_range(r, 0, kernel_op ? 7 : 3);
  if (metric < 0 || metric > 7 || (metric > 3 && !kernel_op)) e.invalid = 1;
  uint8_t* keep = NULL;
  if (op == 1 && !bad && pct(r, 70)) {
    keep = (uint8_t*)malloc((size_t)nrows);
    for (int64_t i = 0; i < nrows; ++i) keep[i] = pct(r, 70) ? (uint8_t)rng_range(r, 1, 255) : 0;
  }
  const fp_exec x = gen_exec(r, &e, 0);
  const fp_ragged_batch* bp = pct(r, 2) ? (e.invalid = 1, (const fp_ragged_batch*)NULL) : &b;
  e.nonfinite = nonfinite && !kernel_op;
  fp_status s = op == 0   ? fp_pairwise_distances(bp, (fp_metric)metric, x, out)
                : op == 1 ? fp_gm_scores(bp, (fp_metric)metric, keep, x, out)
                          : fp_kernel_scores(bp, (fp_kernel_criterion)metric, x, out);
  if (kernel_op && nonfinite && s == FP_ERR_NONFINITE) e.nonfinite = 1; /* kernel scores: undocumented */
  if (check_status(s, e)) {
    double* ref = (double*)malloc(sizeof(double) * (size_t)out_n);
    if (op == 0) ref_pairwise(&b, metric, ref);
    if (op == 1) ref_gm(&b, metric, keep, ref);
    for (int64_t l = 0, row = 0; op == 5 && l < L; row += rows[l], ++l) {
      const int k = (int)lround(sqrt((double)dims[l]));
      float *eig = (float*)malloc(sizeof(float) * (size_t)(rows[l] * 2 * k)),
            *sv = (float*)malloc(sizeof(float) * (size_t)(rows[l] * k));
      if (fp_small_eigvals(layers[l], rows[l], k, x, eig) || fp_small_svdvals(layers[l], rows[l], k, x, sv))
        FAIL("fp_small_eigvals / svdvals of the kernels failed: %s", fp_last_error());
      for (int64_t j = 0; j < rows[l]; ++j) {
        const float* K = layers[l] + j * k * k;
        if (!ref_all_finite(K, k * k)) { /* undocumented for kernel scores: any value */
          ref[row + j] = out[row + j];
          continue;
        }
        ref[row + j] = metric <= 2 ? ref_criterion(metric, K, k)
                                   : ref_criterion_from_spectrum(metric, eig + j * 2 * k, sv + j * k, k);
        const double t = ref_det_tol(K, k), d = fabs(ref_det(K, k));
        const double tol = metric == 1   ? t
                           : metric == 2 ? t * (2 * d + t)
                                         : 1e-6 * sqrt(ref_frobenius2(K, k));
        if (!ref_close(out[row + j], ref[row + j], 1e-5, tol + 1.5e-45))
          FAIL("criterion %d layer %lld (k = %d) kernel %lld: %.9g, expected %.9g", metric, (long long)l, k,
               (long long)j, out[row + j], ref[row + j]);
      }
      free(eig), free(sv);
    }
    for (int64_t i = 0; op < 2 && i < out_n; ++i)
      if (!ref_close(out[i], ref[i], REF_DISTANCE_RTOL, ref_distance_atol(metric) * (op ? 40 : 1))) {
        FAIL("metric %d, out[%lld] = %.9g, reference %.9g (profile %d)", metric, (long long)i, out[i], ref[i],
             profile);
        break;
      }
    free(ref);
  }
  free(data), free(out), free(keep);
  for (int l = 0; l < 3; ++l) free(blocks[l]);
}

/* ---- small-matrix ops --------------------------------------------------------------------------------- */
static void fuzz_small(ref_rng* r) {
  expect_t e = {0, 0, 0, 0};
  int n = (int)rng_range(r, 1, 7);
  int64_t count = rng_range(r, 0, 6);
  if (pct(r, 6)) n = (int[]){0, 8, -1, INT_MIN, INT_MAX, 100}[rng_next(r) % 6], e.invalid = 1;
  const int bad_count = pct(r, 5), huge = !bad_count && pct(r, 3);
  if (bad_count) count = (int64_t[]){-1, -100, INT64_MIN}[rng_next(r) % 3], e.invalid = 1;
  if (huge) count = rng_next(r) % 2 ? INT64_MAX / 2 : (int64_t)INT_MAX + 1;
  const int64_t per = op == 2 ? 2 * (int64_t)n : op == 3 ? n : 1, valid = !e.invalid && !huge;
  const int profile = gen_profile(r);
  float* m = gen_buffer(r, valid ? count * n * n : 0, profile, 0, NULL);
  float* out = (float*)malloc(sizeof(float) * (size_t)(valid && count ? count * per : 16));
  const float* mp = m;
  float* op_out = out;
  if (pct(r, 4) || (huge && !e.invalid && pct(r, 50)))
    mp = NULL;
  else if (pct(r, 4) || (huge && !e.invalid))
    op_out = NULL;
  if (!mp || !op_out) count > 0 ? (e.invalid = 1) : (e.may_invalid = 1);
  const fp_exec x = gen_exec(r, &e, 0);
  if (huge && !e.invalid && !e.unavailable) e.invalid = 1, n = 0; /* never a huge valid call */
  const fp_status s = op == 2   ? fp_small_eigvals(mp, count, n, x, op_out)
                      : op == 3 ? fp_small_svdvals(mp, count, n, x, op_out)
                                : fp_small_det(mp, count, n, x, op_out);
  if (check_status(s, e) && valid && mp && op_out)
    for (int64_t b = 0; b < count; ++b) {
      const float *a = m + b * n * n, *o = out + b * per;
      if (!ref_all_finite(a, n * n)) { /* documented: that matrix's results are NaN */
        for (int64_t i = 0; i < per; ++i)
          if (!isnan(o[i]))
            FAIL("matrix %lld has a NaN / Inf entry, out[%lld] = %g, not NaN", (long long)b, (long long)i,
                 o[i]);
        continue;
      }
      const double fro2 = ref_frobenius2(a, n), fro = sqrt(fro2), floor = n * 1.5e-45;
      if (op == 4 && !ref_close(o[0], ref_det(a, n), 1e-5, ref_det_tol(a, n)))
        FAIL("matrix %lld (n = %d): det %.9g, elimination %.9g", (long long)b, n, o[0], ref_det(a, n));
      double sum = 0, trace = 0, ss = 0;
      for (int i = 0; i < n; ++i) {
        trace += a[i * n + i];
        if (op == 3) {
          ss += (double)o[i] * o[i];
          if (!(o[i] >= 0) || (i && o[i] > o[i - 1]))
            FAIL("matrix %lld: singular values not descending >= 0", (long long)b);
        }
        if (op != 2) continue;
        sum += o[2 * i];
        if (!isfinite(o[2 * i]) || !isfinite(o[2 * i + 1]))
          FAIL("matrix %lld: non-finite eigenvalue", (long long)b);
        if (i && hypot(o[2 * i], o[2 * i + 1]) >
                     hypot(o[2 * i - 2], o[2 * i - 1]) * (1 + 1e-5) + 1e-6 * fro + floor)
          FAIL("matrix %lld: eigenvalue %d out of modulus order", (long long)b, i);
        if (o[2 * i + 1] > 0 && !(i + 1 < n && o[2 * i + 2] == o[2 * i] && o[2 * i + 3] == -o[2 * i + 1]))
          FAIL("matrix %lld: eigenvalue %d (%g, %g) without its conjugate next", (long long)b, i, o[2 * i],
               o[2 * i + 1]);
      }
      if (op == 2 && fabs(sum - trace) > 1e-5 * n * fro + floor)
        FAIL("matrix %lld (n = %d): sum of eigenvalues %.9g, trace %.9g", (long long)b, n, sum, trace);
      if (op == 3 && fabs(ss - fro2) > 1e-5 * fro2 + 4 * floor * fro)
        FAIL("matrix %lld (n = %d): sum of squared singular values %.9g, |A|_F^2 %.9g", (long long)b, n, ss,
             fro2);
    }
  free(m), free(out);
}

static void fuzz_info(ref_rng* r) {
  const int s = (int)rng_range(r, -3, 10), c = (int)rng_range(r, -2, 9), k = (int)rng_range(r, 1, 7);
  const int p = fp_kernel_criterion_power((fp_kernel_criterion)c, k);
  if (!fp_status_name((fp_status)s)) FAIL("fp_status_name(%d) NULL", s);
  if (p != (c < 0 || c > 7 ? -1 : c == 1 ? k : c == 2 ? 2 * k : 1))
    FAIL("fp_kernel_criterion_power(%d, %d) = %d", c, k, p);
  if (!fp_version()[0] || !fp_cuda_archs() || !fp_cpu_capability() || !fp_cpu_capability_reason()[0])
    FAIL("build facts");
}

static void set_repro(const char* what) {
  snprintf(repro, sizeof repro,
           "\ncrashed: seed %llu iteration %lld (%s); reproduce: fastprune_capi_fuzz 1 %llu %lld\n",
           (unsigned long long)seed, (long long)iteration, what, (unsigned long long)seed,
           (long long)iteration);
}

static void run_iteration(char* argv0) {
  ref_rng r = rng_make(seed, (uint64_t)iteration);
  const uint64_t u = rng_next(&r) % 1000;
  op = u < 15 ? 12 : (int)(u % 12);
  set_repro(op_names[op]);
  if (op == 12 && !child_mode) { /* the empty batch of huge images, in a child process */
    char s[32], i[32];
    snprintf(s, sizeof s, "%llu", (unsigned long long)seed);
    snprintf(i, sizeof i, "%lld", (long long)iteration);
    char* child[] = {argv0, (char*)"1", s, i, NULL};
    const int rc = ref_run_child(child, "FASTPRUNE_CAPI_FUZZ_CHILD=1");
    ++isolated;
    if (rc) FAIL("the child %s %d", rc > 128 ? "died of signal" : "exited with", rc > 128 ? rc - 128 : rc);
  } else if (op == 12) {
    ref_child_limits(30, (uint64_t)4 << 30);
    op = 6 + (int)(rng_next(&r) % 5);
    char what[96];
    snprintf(what, sizeof what, "%s on an empty batch of huge images", op_names[op]);
    set_repro(what);
    fuzz_conv(&r, 1);
  } else if (op <= 1 || op == 5) {
    fuzz_batch(&r);
  } else if (op <= 4) {
    fuzz_small(&r);
  } else if (op <= 10) {
    fuzz_conv(&r, 0);
  } else {
    fuzz_info(&r);
  }
}

int main(int argc, char** argv) {
  const int64_t iterations = argc > 1 ? atoll(argv[1]) : 2000, first = argc > 3 ? atoll(argv[3]) : 0;
  seed = argc > 2 ? strtoull(argv[2], NULL, 10) : 1;
  child_mode = getenv("FASTPRUNE_CAPI_FUZZ_CHILD") != NULL;
  cuda_usable = fp_cuda_device_check() == FP_OK;
  setvbuf(stdout, NULL, _IOLBF, 0);
  const int sigs[4] = {SIGSEGV, SIGABRT, SIGFPE, SIGBUS};
  for (int i = 0; i < 4; ++i) /* ASan reports memory faults itself */
    if (!REF_ASAN || sigs[i] == SIGABRT) signal(sigs[i], on_signal);
  for (iteration = first; iteration < first + iterations; ++iteration) run_iteration(argv[0]);
  if (child_mode) return failures ? 1 : 0;
  printf("fuzz: %lld iterations, seed %llu: %lld calls, %lld FP_OK, rejected:", (long long)iterations,
         (unsigned long long)seed, (long long)calls, (long long)ok_calls);
  for (int s = 1; s < 7; ++s)
    printf(" %s %lld%s", fp_status_name((fp_status)s), (long long)rejected[s], s < 6 ? "," : "");
  printf("; %lld in child processes; %lld failures\n", (long long)isolated, (long long)failures);
  printf("per entry point (FP_OK / rejected):");
  for (int o = 0; o < 11; ++o)
    printf(" %s %lld/%lld", op_names[o] + 3, (long long)per_op[o][0], (long long)per_op[o][1]);
  printf("\n");
  return failures ? 1 : 0;
}
