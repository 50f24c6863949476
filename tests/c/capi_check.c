/* Checks every fp_* entry point of fastprune.h: valid calls against naive float64 references (reference.h),
 * invalid ones for the documented status and a message naming the argument. One line per failure; exit 0
 * and "all checks passed" on success. Message names: fastprune.h promises a message "naming the offending
 * argument" for every failure; the exact spellings checked here ("filters->num_rows[1]", "shape->stride_w",
 * "exec.device", ...) are those of csrc/capi*.cpp. Usage: fastprune_capi_check [--probe NAME] (internal). */
#include "capi_check.h"

#include <pthread.h>

int failures, checks, cuda_usable;
const char* section = "";
ref_rng rng;

static void check_build_facts(void) {
  section = "build facts";
  CHECK(fp_version() && fp_version()[0], "fp_version() empty");
  CHECK(fp_abi_version() == FASTPRUNE_ABI_VERSION, "fp_abi_version() %d", fp_abi_version());
  CHECK(fp_cuda_compiled() == 0 || fp_cuda_compiled() == 1, "fp_cuda_compiled() %d", fp_cuda_compiled());
  CHECK(fp_cuda_archs() != NULL, "fp_cuda_archs() NULL");
  CHECK(fp_openmp_max_threads() >= 1, "fp_openmp_max_threads() %d", fp_openmp_max_threads());
  const char *cap = fp_cpu_capability(), *built = fp_cpu_capabilities_built(),
             *why = fp_cpu_capability_reason();
  CHECK(cap && (!strcmp(cap, "default") || !strcmp(cap, "avx2") || !strcmp(cap, "avx512")), "capability %s",
        cap);
  char list[64];
  snprintf(list, sizeof list, ",%s,", built ? built : "");
  char item[32];
  snprintf(item, sizeof item, ",%s,", cap ? cap : "?");
  CHECK(strstr(list, item) != NULL, "fp_cpu_capability() %s not in fp_cpu_capabilities_built() %s", cap,
        built);
  CHECK(why && why[0], "fp_cpu_capability_reason() empty");
  for (int s = 0; s <= 7; ++s) CHECK(fp_status_name((fp_status)s) != NULL, "fp_status_name(%d) NULL", s);
  CHECK(!strcmp(fp_status_name(FP_OK), "FP_OK") &&
            !strcmp(fp_status_name(FP_ERR_NONFINITE), "FP_ERR_NONFINITE"),
        "fp_status_name spelling");
  CHECK(fp_status_name((fp_status)-3) != NULL, "fp_status_name(-3) NULL");
  const fp_status dev = fp_cuda_device_check();
  cuda_usable = dev == FP_OK;
  if (!cuda_usable) EXPECT_ERR(dev, FP_ERR_UNAVAILABLE, NULL, "fp_cuda_device_check");
  if (!fp_cuda_compiled()) CHECK(!cuda_usable, "fp_cuda_device_check() FP_OK without CUDA compiled in");
  printf("fastprune %s ABI %d, CUDA compiled %d (archs \"%s\", device: %s), OpenMP threads %d, CPU %s\n",
         fp_version(), fp_abi_version(), fp_cuda_compiled(), fp_cuda_archs(), fp_status_name(dev),
         fp_openmp_max_threads(), cap);
}

/* ---- pairwise distances and gm scores ----------------------------------------------------------------- */
static fp_status scoring(int op, const fp_ragged_batch* b, int metric, const uint8_t* keep, fp_exec e,
                         float* out) {
  return op ? fp_gm_scores(b, (fp_metric)metric, keep, e, out)
            : fp_pairwise_distances(b, (fp_metric)metric, e, out);
}

/* Both ops, both forms (packed data and layer_data), every metric, against ref_pairwise / ref_gm. */
static void check_scoring_values(const fp_ragged_batch* packed, const fp_ragged_batch* per_layer,
                                 const uint8_t* keep, const char* what) {
  int64_t rows = 0, squares = 0;
  for (int64_t l = 0; l < packed->num_layers; ++l)
    rows += packed->num_rows[l], squares += packed->num_rows[l] * packed->num_rows[l];
  float* out = (float*)malloc(sizeof(float) * (size_t)squares);
  double* ref = (double*)malloc(sizeof(double) * (size_t)squares);
  for (int op = 0; op < 2; ++op)
    for (int metric = 0; metric < 4; ++metric)
      for (int form = 0; form < 2; ++form) {
        if (op == 0 && keep) continue;
        const fp_ragged_batch* b = form ? per_layer : packed;
        EXPECT_OK(scoring(op, b, metric, keep, CPU, out), what);
        if (op)
          ref_gm(b, metric, keep, ref);
        else
          ref_pairwise(b, metric, ref);
        int bad = 0;
        for (int64_t i = 0; i < (op ? rows : squares) && bad < 3; ++i)
          if (!ref_close(out[i], ref[i], REF_DISTANCE_RTOL, ref_distance_atol(metric) * (op ? 40 : 1))) {
            CHECK(0, "%s %s metric %d %s: out[%lld] = %.9g, reference %.9g", what,
                  op ? "gm_scores" : "pairwise", metric, form ? "layer_data" : "data", (long long)i, out[i],
                  ref[i]);
            ++bad;
          }
        for (int64_t l = 0, at = 0; op == 0 && l < b->num_layers; at += b->num_rows[l] * b->num_rows[l], ++l)
          for (int64_t i = 0, n = b->num_rows[l]; i < n; ++i) {
            CHECK(out[at + i * n + i] == 0.0f, "%s pairwise metric %d: diagonal %g", what, metric,
                  out[at + i * n + i]);
            for (int64_t j = 0; j < i; ++j)
              if (memcmp(&out[at + i * n + j], &out[at + j * n + i], sizeof(float)))
                CHECK(0, "%s pairwise metric %d: not mirrored at layer %lld (%lld, %lld)", what, metric,
                      (long long)l, (long long)i, (long long)j);
          }
      }
  free(out), free(ref);
}

static void check_scoring(void) {
  section = "pairwise_distances / gm_scores";
  int64_t num_rows[4] = {5, 1, 9, 300}, row_dims[4] = {7, 3, 33, 5};
  const float* layers[4];
  int64_t total = 0;
  for (int l = 0; l < 4; ++l) total += num_rows[l] * row_dims[l];
  float* data = fvec(total);
  for (int k = 0; k < 7; ++k)
    data[3 * 7 + k] = 2.0f * data[7 + k], data[4 * 7 + k] = 0.0f; /* 3 = 2 * 1; 4 = 0 */
  for (int64_t l = 0, off = 0; l < 4; off += num_rows[l] * row_dims[l], ++l) layers[l] = data + off;
  fp_ragged_batch packed = {data, NULL, 4, num_rows, row_dims},
                  per_layer = {NULL, layers, 4, num_rows, row_dims};
  check_scoring_values(&packed, &per_layer, NULL, "random layers");
  uint8_t keep[315];
  for (int i = 0; i < 315; ++i) keep[i] = (uint8_t)(rng_next(&rng) % 3 ? 1 + i % 200 : 0);
  check_scoring_values(&packed, &per_layer, keep, "random keep mask");
  memset(keep, 0, sizeof keep);
  /* One survivor per layer: it scores 0, the rest +inf. */
  keep[2] = keep[5] = keep[6 + 8] = keep[15 + 123] = 1;
  check_scoring_values(&packed, &per_layer, keep, "one survivor per layer");
  keep[2] = 0; /* layer 0 without survivors: every score +inf */
  check_scoring_values(&packed, &per_layer, keep, "no survivor in layer 0");
  /* Range: rows of 1e19..1e20 and 1e-25 have distances inside the float range (1e20, 1e-25 ...); only
   * squared distances beyond it (1e40, 1e-50) may round to inf or 0. */
  float range[12] = {1e20f, 0, 0, 0, 3e19f, -4e19f, /* layer 1 */ 1e-25f, 0, 0, 0, 3e-25f, 4e-25f};
  int64_t rr[1] = {3}, rd[1] = {2};
  for (int i = 0; i < 2; ++i) {
    const float* rl[1] = {range + 6 * i};
    fp_ragged_batch rp = {range + 6 * i, NULL, 1, rr, rd}, rpl = {NULL, rl, 1, rr, rd};
    check_scoring_values(&rp, &rpl, NULL, i ? "rows of 1e-25" : "rows of 1e20");
  }

  /* Invalid arguments, for both ops. */
  float out[128], nan_rows[12] = {0};
  int64_t bad_rows[2] = {5, 0}, neg_rows[2] = {-3, 1}, huge_rows[2] = {INT64_MAX / 2, 1};
  int64_t bad_dims[2] = {0, 3}, neg_dims[2] = {-1, 3};
  const float* null_layer[4] = {data, NULL, data, data};
  for (int op = 0; op < 2; ++op) {
    section = op ? "fp_gm_scores invalid" : "fp_pairwise_distances invalid";
    fp_ragged_batch b = packed;
    EXPECT_ERR(scoring(op, NULL, 0, NULL, CPU, out), FP_ERR_INVALID_ARGUMENT, "^filters:", "NULL filters");
    EXPECT_ERR(scoring(op, &b, 0, NULL, CPU, NULL), FP_ERR_INVALID_ARGUMENT, "^out:", "NULL out");
    b.data = NULL;
    EXPECT_ERR(scoring(op, &b, 0, NULL, CPU, out), FP_ERR_INVALID_ARGUMENT, "filters->data",
               "data, layer_data NULL");
    b.data = data, b.layer_data = layers;
    EXPECT_ERR(scoring(op, &b, 0, NULL, CPU, out), FP_ERR_INVALID_ARGUMENT, "filters->layer_data",
               "both set");
    b.layer_data = NULL;
    for (int64_t n = 0; n >= -1; --n) {
      b.num_layers = n;
      EXPECT_ERR(scoring(op, &b, 0, NULL, CPU, out), FP_ERR_INVALID_ARGUMENT, "filters->num_layers",
                 "num_layers");
    }
    b.num_layers = 2, b.num_rows = NULL;
    EXPECT_ERR(scoring(op, &b, 0, NULL, CPU, out), FP_ERR_INVALID_ARGUMENT, "filters->num_rows",
               "NULL num_rows");
    b.num_rows = num_rows, b.row_dims = NULL;
    EXPECT_ERR(scoring(op, &b, 0, NULL, CPU, out), FP_ERR_INVALID_ARGUMENT, "filters->row_dims",
               "NULL row_dims");
    b.row_dims = row_dims, b.num_rows = bad_rows;
    EXPECT_ERR(scoring(op, &b, 0, NULL, CPU, out), FP_ERR_INVALID_ARGUMENT, "filters->num_rows[1]",
               "N_1 = 0");
    b.num_rows = neg_rows;
    EXPECT_ERR(scoring(op, &b, 0, NULL, CPU, out), FP_ERR_INVALID_ARGUMENT, "filters->num_rows[0]",
               "N_0 < 0");
    /* Beyond the library's bound 2^31-1 (fastprune.h only says N_l >= 1; no such buffer exists). */
    b.num_rows = huge_rows;
    EXPECT_ERR(scoring(op, &b, 0, NULL, CPU, out), FP_ERR_INVALID_ARGUMENT, "filters->num_rows[0]",
               "N_0 huge");
    b.num_rows = num_rows, b.row_dims = bad_dims;
    EXPECT_ERR(scoring(op, &b, 0, NULL, CPU, out), FP_ERR_INVALID_ARGUMENT, "filters->row_dims[0]",
               "D_0 = 0");
    b.row_dims = neg_dims;
    EXPECT_ERR(scoring(op, &b, 0, NULL, CPU, out), FP_ERR_INVALID_ARGUMENT, "filters->row_dims[0]",
               "D_0 < 0");
    b.row_dims = row_dims, b.data = NULL, b.layer_data = null_layer, b.num_layers = 4;
    EXPECT_ERR(scoring(op, &b, 0, NULL, CPU, out), FP_ERR_INVALID_ARGUMENT, "filters->layer_data[1]",
               "NULL layer");
    b = packed, b.num_layers = 1;
    EXPECT_ERR(scoring(op, &b, -1, NULL, CPU, out), FP_ERR_INVALID_ARGUMENT, "^metric:", "metric -1");
    EXPECT_ERR(scoring(op, &b, 4, NULL, CPU, out), FP_ERR_INVALID_ARGUMENT, "^metric:", "metric 4");
    EXPECT_BAD_EXEC(scoring(op, &b, 0, NULL, e, out), "exec", 0);
    /* NaN / Inf in any filter (also a pruned one, also through layer_data): FP_ERR_NONFINITE. */
    int64_t nr[2] = {2, 3}, nd[2] = {3, 2};
    const float* nl[2] = {nan_rows, nan_rows + 6};
    const uint8_t keep_nan[5] = {1, 1, 1, 0, 1};
    const float bad_values[3] = {NAN, INFINITY, -INFINITY};
    for (int v = 0; v < 3; ++v) {
      nan_rows[8] = bad_values[v];
      fp_ragged_batch nb = {nan_rows, NULL, 2, nr, nd}, nbl = {NULL, nl, 2, nr, nd};
      EXPECT_ERR(scoring(op, &nb, v, NULL, CPU, out), FP_ERR_NONFINITE, "^filters:", "non-finite");
      EXPECT_ERR(scoring(op, &nbl, 3, NULL, CPU, out), FP_ERR_NONFINITE,
                 "^filters:", "non-finite layer_data");
      if (op)
        EXPECT_ERR(scoring(op, &nb, 2, keep_nan, CPU, out), FP_ERR_NONFINITE,
                   "^filters:", "non-finite pruned");
    }
  }
  free(data);
}

/* ---- small-matrix ops --------------------------------------------------------------------------------- */
typedef fp_status (*small_op)(const float*, int64_t, int, fp_exec, float*);
static int by_modulus_desc(const void* a, const void* b) {
  const double x = fabs(*(const float*)a), y = fabs(*(const float*)b);
  return x != y ? (x < y) - (x > y)
                : (*(const float*)a < *(const float*)b) - (*(const float*)a > *(const float*)b);
}

static void check_small(void) {
  section = "small eigvals / svdvals / det";
  const float diag[7] = {3.0f, -3.0f, 2.5f, -1.0f, 0.5f, 1.5f, -2.0f};
  float m[6 * 49], eig[6 * 14], sv[6 * 7], det[6];
  for (int n = 1; n <= 7; ++n) {
    /* Triangular: eigenvalues = the diagonal, by descending modulus, ties by descending real part. */
    for (int lower = 0; lower < 2; ++lower) {
      for (int r = 0; r < n; ++r)
        for (int c = 0; c < n; ++c)
          m[r * n + c] = r == c ? diag[r] : ((c > r) != lower ? rng_normal(&rng) : 0.0f);
      float want[7];
      memcpy(want, diag, sizeof(float) * (size_t)n);
      qsort(want, (size_t)n, sizeof(float), by_modulus_desc);
      EXPECT_OK(fp_small_eigvals(m, 1, n, CPU, eig), "triangular eigvals");
      for (int i = 0; i < n; ++i)
        CHECK(fabs(eig[2 * i] - want[i]) <= 1e-5 * 3 && fabs(eig[2 * i + 1]) <= 1e-5 * 3,
              "triangular n=%d lower=%d: eigenvalue %d = (%g, %g), expected %g", n, lower, i, eig[2 * i],
              eig[2 * i + 1], want[i]);
    }
    /* Diagonal with signs, and the same permuted into a generalised permutation: |d| descending. */
    float want[7];
    for (int i = 0; i < n; ++i) want[i] = fabsf(diag[i]);
    qsort(want, (size_t)n, sizeof(float), by_modulus_desc);
    memset(m, 0, sizeof(float) * 2 * 49);
    for (int r = 0; r < n; ++r) m[r * n + r] = diag[r], m[n * n + r * n + (r + 1) % n] = diag[r];
    EXPECT_OK(fp_small_svdvals(m, 2, n, CPU, sv), "diagonal svdvals");
    for (int i = 0; i < 2 * n; ++i)
      CHECK(fabs(sv[i] - want[i % n]) <= 3e-5, "signed diagonal n=%d%s: singular value %d = %g, expected %g",
            n, i < n ? "" : " (permuted)", i % n, sv[i], want[i % n]);
    /* Random batches: trace, det and Frobenius identities, ordering, conjugate pairs; det by elimination. */
    rng_fill(&rng, m, 6 * n * n);
    for (int k = 0; k < n; ++k) m[4 * n * n + n + k] = m[4 * n * n + k]; /* matrix 4 singular (for n > 1) */
    for (int k = 0; k < n * n; ++k)
      m[5 * n * n + k] = ldexpf(m[5 * n * n + k], 20); /* matrix 5 scaled by 2^20 */
    EXPECT_OK(fp_small_eigvals(m, 6, n, CPU, eig), "random eigvals");
    EXPECT_OK(fp_small_svdvals(m, 6, n, CPU, sv), "random svdvals");
    EXPECT_OK(fp_small_det(m, 6, n, CPU, det), "random det");
    for (int b = 0; b < 6; ++b) {
      const float *a = m + b * n * n, *e = eig + b * 2 * n, *s = sv + b * n;
      const double fro2 = ref_frobenius2(a, n), fro = sqrt(fro2), hd = ref_hadamard(a, n),
                   rdet = ref_det(a, n);
      double tr = 0, sum_re = 0, sum_im = 0, pr = 1, pi = 0, ss = 0, ps = 1;
      for (int i = 0; i < n; ++i) {
        tr += a[i * n + i], sum_re += e[2 * i], sum_im += e[2 * i + 1], ss += (double)s[i] * s[i], ps *= s[i];
        const double re = pr * e[2 * i] - pi * e[2 * i + 1];
        pi = pr * e[2 * i + 1] + pi * e[2 * i], pr = re;
        CHECK(s[i] >= 0 && (i == 0 || s[i] <= s[i - 1]), "n=%d #%d: singular values not descending >= 0", n,
              b);
        const double mod = hypot(e[2 * i], e[2 * i + 1]),
                     prev = i ? hypot(e[2 * i - 2], e[2 * i - 1]) : INFINITY;
        CHECK(mod <= prev * (1 + 1e-5) + 1e-6 * fro, "n=%d #%d: eigenvalue %d out of modulus order", n, b, i);
        if (e[2 * i + 1] > 0)
          CHECK(i + 1 < n && e[2 * i + 2] == e[2 * i] && e[2 * i + 3] == -e[2 * i + 1],
                "n=%d #%d: eigenvalue %d = (%g, %g) not followed by its conjugate", n, b, i, e[2 * i],
                e[2 * i + 1]);
        if (e[2 * i + 1] < 0) CHECK(i > 0 && e[2 * i - 1] == -e[2 * i + 1], "n=%d #%d: lone conjugate", n, b);
      }
      CHECK(fabs(sum_re - tr) <= 1e-5 * n * fro && fabs(sum_im) <= 1e-5 * n * fro,
            "n=%d #%d: sum of eigenvalues %g, trace %g", n, b, sum_re, tr);
      CHECK(fabs(pr - rdet) <= 1e-4 * pow(fro, n) && fabs(pi) <= 1e-4 * pow(fro, n),
            "n=%d #%d: product of eigenvalues (%g, %g), det %g", n, b, pr, pi, rdet);
      CHECK(fabs(ss - fro2) <= 1e-5 * fro2, "n=%d #%d: sum of squared singular values %g, |A|_F^2 %g", n, b,
            ss, fro2);
      CHECK(fabs(ps - fabs(rdet)) <= 1e-4 * hd, "n=%d #%d: product of singular values %g, |det| %g", n, b, ps,
            rdet);
      CHECK(ref_close(det[b], rdet, 1e-5, 1e-5 * hd), "n=%d #%d: det %.9g, elimination %.9g", n, b, det[b],
            rdet);
    }
    /* NaN / Inf: that matrix's results are all NaN; its neighbours are unaffected. */
    float solo_e[14], solo_s[7], solo_d[1];
    fp_small_eigvals(m + 2 * n * n, 1, n, CPU, solo_e), fp_small_svdvals(m + 2 * n * n, 1, n, CPU, solo_s);
    fp_small_det(m + 2 * n * n, 1, n, CPU, solo_d);
    m[n * n + n / 2] = n % 2 ? NAN : -INFINITY;
    EXPECT_OK(fp_small_eigvals(m, 3, n, CPU, eig), "eigvals with NaN");
    EXPECT_OK(fp_small_svdvals(m, 3, n, CPU, sv), "svdvals with NaN");
    EXPECT_OK(fp_small_det(m, 3, n, CPU, det), "det with NaN");
    int all_nan = isnan(det[1]), same = det[2] == solo_d[0];
    for (int i = 0; i < n; ++i) {
      all_nan &= isnan(eig[2 * n + 2 * i]) && isnan(eig[2 * n + 2 * i + 1]) && isnan(sv[n + i]);
      same &= eig[4 * n + 2 * i] == solo_e[2 * i] && eig[4 * n + 2 * i + 1] == solo_e[2 * i + 1] &&
              sv[2 * n + i] == solo_s[i];
    }
    CHECK(all_nan, "n=%d: a non-finite matrix's eigvals/svdvals/det are not all NaN", n);
    CHECK(same, "n=%d: a neighbour of a non-finite matrix changed", n);
  }
  /* Invalid arguments, for each op. */
  const small_op ops[3] = {fp_small_eigvals, fp_small_svdvals, fp_small_det};
  for (int o = 0; o < 3; ++o) {
    section = o == 0   ? "fp_small_eigvals invalid"
              : o == 1 ? "fp_small_svdvals invalid"
                       : "fp_small_det invalid";
    EXPECT_OK(ops[o](NULL, 0, 3, CPU, NULL), "count 0 with NULL pointers");
    EXPECT_ERR(ops[o](m, -1, 3, CPU, eig), FP_ERR_INVALID_ARGUMENT, "^count:", "count -1");
    const int bad_n[3] = {0, 8, -1};
    for (int i = 0; i < 3; ++i)
      EXPECT_ERR(ops[o](m, 1, bad_n[i], CPU, eig), FP_ERR_INVALID_ARGUMENT, "^n:", "bad n");
    EXPECT_ERR(ops[o](NULL, 1, 3, CPU, eig), FP_ERR_INVALID_ARGUMENT, "^matrices:", "NULL matrices");
    EXPECT_ERR(ops[o](m, 1, 3, CPU, NULL), FP_ERR_INVALID_ARGUMENT, "^out:", "NULL out");
    EXPECT_BAD_EXEC(ops[o](m, 1, 3, e, eig), "exec", 0);
  }
}

/* ---- kernel criteria and scores ----------------------------------------------------------------------- */
static void check_kernel_scores(void) {
  section = "fp_kernel_criterion_power";
  for (int c = 0; c < 8; ++c)
    for (int k = 1; k <= 7; ++k) {
      const int want = c == FP_CRITERION_DET ? k : c == FP_CRITERION_DET_GRAM ? 2 * k : 1;
      CHECK(fp_kernel_criterion_power((fp_kernel_criterion)c, k) == want,
            "criterion %d, k %d: %d, expected %d", c, k, fp_kernel_criterion_power((fp_kernel_criterion)c, k),
            want);
    }
  CHECK(fp_kernel_criterion_power((fp_kernel_criterion)-1, 3) == -1, "criterion -1 not -1");
  CHECK(fp_kernel_criterion_power((fp_kernel_criterion)8, 3) == -1, "criterion 8 not -1");

  section = "fp_kernel_scores";
  enum { L = 6 };
  const int ks[L] = {1, 2, 3, 4, 5, 7};
  int64_t rows[L] = {6, 5, 20, 3, 4, 3}, dims[L], total = 0, kernels = 0;
  for (int l = 0; l < L; ++l) dims[l] = ks[l] * ks[l], total += rows[l] * dims[l], kernels += rows[l];
  float *data = fvec(total), *out = fvec(kernels);
  const float* layers[L];
  for (int64_t l = 0, off = 0; l < L; off += rows[l] * dims[l], ++l) layers[l] = data + off;
  memset(data + 6 + 5 * 4, 0, sizeof(float) * 9); /* a zero 3x3 kernel */
  fp_ragged_batch packed = {data, NULL, L, rows, dims}, per_layer = {NULL, layers, L, rows, dims};
  for (int c = 0; c < 8; ++c)
    for (int form = 0; form < 2; ++form) {
      EXPECT_OK(fp_kernel_scores(form ? &per_layer : &packed, (fp_kernel_criterion)c, CPU, out),
                "kernel scores");
      for (int64_t l = 0, row = 0; l < L; row += rows[l], ++l)
        for (int64_t j = 0; j < rows[l]; ++j) {
          const int k = ks[l];
          const float* K = layers[l] + j * k * k;
          double want, rtol = 1e-5, atol = 1e-6 * sqrt(ref_frobenius2(K, k));
          if (c <= FP_CRITERION_DET_GRAM) {
            want = ref_criterion(c, K, k);
            const double hd = ref_hadamard(K, k);
            atol = c == FP_CRITERION_DET ? 1e-5 * hd : c == FP_CRITERION_DET_GRAM ? 3e-5 * hd * hd : 0.0;
          } else {
            float e[14], s[7];
            fp_small_eigvals(K, 1, k, CPU, e), fp_small_svdvals(K, 1, k, CPU, s);
            want = ref_criterion_from_spectrum(c, e, s, k);
          }
          CHECK(ref_close(out[row + j], want, rtol, atol),
                "criterion %d %s, layer %lld (k = %d) kernel %lld: %.9g, "
                "expected %.9g",
                c, form ? "layer_data" : "data", (long long)l, k, (long long)j, out[row + j], want);
        }
    }
  /* NaN / Inf kernels. fastprune.h documents FP_ERR_NONFINITE for "the input filters" and NaN propagation for
   * the small-matrix ops, but nothing for kernel scores: accepted are FP_ERR_NONFINITE, or FP_OK with a NaN
   * score for a NaN kernel (what fp_small_eigvals/svdvals give for it; a number would rank a NaN kernel as
   * if it had weights) and NaN or +inf for an Inf kernel; the finite neighbour keeps its score. */
  for (int k = 1; k <= 7; ++k)
    for (int v = 0; v < 2; ++v)
      for (int c = 0; c < 8; ++c) {
        float kk[2 * 49], got[2], alone;
        rng_fill(&rng, kk, 2 * k * k);
        int64_t r = 2, d = k * k, r1 = 1;
        fp_ragged_batch b = {kk, NULL, 1, &r, &d}, second = {kk + k * k, NULL, 1, &r1, &d};
        fp_kernel_scores(&second, (fp_kernel_criterion)c, CPU, &alone);
        kk[(k * k) / 2] = v ? INFINITY : NAN;
        const fp_status s = fp_kernel_scores(&b, (fp_kernel_criterion)c, CPU, got);
        if (s == FP_ERR_NONFINITE) {
          EXPECT_ERR(s, FP_ERR_NONFINITE, "^kernels:", "non-finite kernel");
          continue;
        }
        CHECK(s == FP_OK, "k=%d criterion %d %s kernel: %s", k, c, v ? "Inf" : "NaN", fp_status_name(s));
        CHECK(isnan(got[0]) || (v && got[0] == INFINITY),
              "k=%d criterion %d: a kernel with %s scores %g (expected NaN%s)", k, c, v ? "Inf" : "NaN",
              got[0], v ? " or +inf" : "");
        CHECK(got[1] == alone, "k=%d criterion %d: the neighbour of a non-finite kernel scores %g, alone %g",
              k, c, got[1], alone);
      }
  /* Invalid arguments. */
  fp_ragged_batch b = packed;
  int64_t zero_rows[L] = {6, 0, 20, 3, 4, 3}, bad_dims[4][2] = {{1, 5}, {1, 64}, {1, 0}, {1, -4}};
  const float* null_layer[L] = {data, data, NULL, data, data, data};
  EXPECT_ERR(fp_kernel_scores(NULL, 0, CPU, out), FP_ERR_INVALID_ARGUMENT, "^kernels:", "NULL kernels");
  EXPECT_ERR(fp_kernel_scores(&b, 0, CPU, NULL), FP_ERR_INVALID_ARGUMENT, "^out:", "NULL out");
  b.data = NULL;
  EXPECT_ERR(fp_kernel_scores(&b, 0, CPU, out), FP_ERR_INVALID_ARGUMENT, "kernels->data",
             "data, layer_data NULL");
  b.data = data, b.layer_data = layers;
  EXPECT_ERR(fp_kernel_scores(&b, 0, CPU, out), FP_ERR_INVALID_ARGUMENT, "kernels->layer_data", "both set");
  b = packed, b.num_layers = 0;
  EXPECT_ERR(fp_kernel_scores(&b, 0, CPU, out), FP_ERR_INVALID_ARGUMENT, "kernels->num_layers", "0 layers");
  b.num_layers = -2;
  EXPECT_ERR(fp_kernel_scores(&b, 0, CPU, out), FP_ERR_INVALID_ARGUMENT, "kernels->num_layers", "-2 layers");
  b = packed, b.num_rows = NULL;
  EXPECT_ERR(fp_kernel_scores(&b, 0, CPU, out), FP_ERR_INVALID_ARGUMENT, "kernels->num_rows",
             "NULL num_rows");
  b = packed, b.row_dims = NULL;
  EXPECT_ERR(fp_kernel_scores(&b, 0, CPU, out), FP_ERR_INVALID_ARGUMENT, "kernels->row_dims",
             "NULL row_dims");
  b = packed, b.num_rows = zero_rows;
  EXPECT_ERR(fp_kernel_scores(&b, 0, CPU, out), FP_ERR_INVALID_ARGUMENT, "kernels->num_rows[1]", "N_1 = 0");
  for (int i = 0; i < 4; ++i) { /* not k * k, k = 8, 0, negative */
    b = packed, b.num_layers = 2, b.row_dims = bad_dims[i];
    EXPECT_ERR(fp_kernel_scores(&b, 0, CPU, out), FP_ERR_INVALID_ARGUMENT, "kernels->row_dims[1]",
               "bad row_dims");
  }
  b = per_layer, b.layer_data = null_layer;
  EXPECT_ERR(fp_kernel_scores(&b, 0, CPU, out), FP_ERR_INVALID_ARGUMENT, "kernels->layer_data[2]",
             "NULL layer");
  EXPECT_ERR(fp_kernel_scores(&packed, (fp_kernel_criterion)-1, CPU, out), FP_ERR_INVALID_ARGUMENT,
             "^criterion:", "-1");
  EXPECT_ERR(fp_kernel_scores(&packed, (fp_kernel_criterion)8, CPU, out), FP_ERR_INVALID_ARGUMENT,
             "^criterion:", "8");
  EXPECT_BAD_EXEC(fp_kernel_scores(&packed, 0, e, out), "exec", 0);
  free(data), free(out);
}

/* ---- fp_last_error is per thread ---------------------------------------------------------------------- */
static void* other_thread(void* seen_empty) {
  *(int*)seen_empty = fp_last_error()[0] == 0;
  fp_small_det(NULL, 1, 3, CPU, NULL); /* fails on this thread only */
  return NULL;
}

static void check_thread_local(void) {
  section = "fp_last_error";
  float out;
  EXPECT_ERR(fp_small_det(&out, -1, 3, CPU, &out), FP_ERR_INVALID_ARGUMENT, "^count:", "count -1");
  int seen_empty = 0;
  pthread_t t;
  CHECK(pthread_create(&t, NULL, other_thread, &seen_empty) == 0 && pthread_join(t, NULL) == 0, "pthread");
  CHECK(seen_empty, "another thread sees this thread's message");
  CHECK(strstr(fp_last_error(), "count") != NULL, "this thread's message became \"%s\"", fp_last_error());
  EXPECT_OK(fp_small_det(NULL, 0, 3, CPU, NULL), "a success clears the message");
}

/* In a child process (ref_run_child): "determinism:HASH", "capability:NAME", or a conv probe. */
static int run_probe(const char* name) {
  if (!strncmp(name, "determinism:", 12)) {
    const unsigned long long h = (unsigned long long)conv_results_hash();
    if (h == strtoull(name + 12, NULL, 16)) return 0;
    printf("OMP_NUM_THREADS=%s: convolution results differ (hash %llx, parent %s)\n",
           getenv("OMP_NUM_THREADS"), h, name + 12);
    return 1;
  }
  if (!strncmp(name, "capability:", 11)) return strcmp(fp_cpu_capability(), name + 11) != 0;
  return run_conv_probe(name);
}

static void check_in_child(char* argv0, const char* probe, const char* assignment) {
  char* child[] = {argv0, (char*)"--probe", (char*)probe, NULL};
  const int rc = ref_run_child(child, assignment);
  CHECK(rc == 0, "%s with %s: the child %s %d", probe, assignment,
        rc > 128 ? "died of signal" : "exited with", rc > 128 ? rc - 128 : rc);
}

int main(int argc, char** argv) {
  if (argc == 3 && !strcmp(argv[1], "--probe")) return run_probe(argv[2]);
  setvbuf(stdout, NULL, _IOLBF, 0);
  rng = rng_make(20240917, 0);
  check_build_facts();
  check_scoring();
  check_small();
  check_kernel_scores();
  check_masked_conv();
  check_dense_conv();
  check_thread_local();
  section = "child processes";
  /* Calls that must return a status rather than crash or hang. */
  for (int p = 0; conv_probes[p]; ++p)
    check_in_child(argv[0], conv_probes[p], "FASTPRUNE_CAPI_CHECK_CHILD=1");
  /* Convolution results identical for every OpenMP thread count. */
  char probe[64];
  snprintf(probe, sizeof probe, "determinism:%llx", (unsigned long long)conv_results_hash());
  check_in_child(argv[0], probe, "OMP_NUM_THREADS=1");
  check_in_child(argv[0], probe, "OMP_NUM_THREADS=3");
  /* FASTPRUNE_CPU_CAPABILITY lowers the capability: "default" is always honoured. */
  check_in_child(argv[0], "capability:default", "FASTPRUNE_CPU_CAPABILITY=default");
  if (failures) {
    printf("%d of %d checks failed\n", failures, checks);
    return 1;
  }
  printf("all checks passed (%d checks)\n", checks);
  return 0;
}
