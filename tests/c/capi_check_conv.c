/* The convolutions of fastprune.h, for capi_check.c: fp_masked_conv2d_forward / _backward_input /
 * _backward_weight against a naive masked convolution (and the adjoint identity <g, conv(x)> = <conv^T g,
 * x>), fp_conv2d_forward / fp_conv2d_accumulate against a naive dense one; invalid arguments; and probes, run
 * in a child process each, of calls that must return a status instead of crashing. */
#include "capi_check.h"

/* ---- masked convolution ------------------------------------------------------------------------------- */
typedef struct {
  const fp_conv2d_shape* s;
  const float *x, *gy, *k, *bias;
  const int32_t *rp, *col;
  fp_exec e;
  float* out;
} mc_args;

static const char* const mc_names[3] = {"fp_masked_conv2d_forward", "fp_masked_conv2d_backward_input",
                                        "fp_masked_conv2d_backward_weight"};

static fp_status mc_call(int op, mc_args a) {
  if (op == 0) return fp_masked_conv2d_forward(a.s, a.x, a.rp, a.col, a.k, a.bias, a.e, a.out);
  if (op == 1) return fp_masked_conv2d_backward_input(a.s, a.gy, a.rp, a.col, a.k, a.e, a.out);
  return fp_masked_conv2d_backward_weight(a.s, a.x, a.gy, a.rp, a.col, a.e, a.out);
}

/* Kept kernels: each (o, c) with probability p (row_ptr O + 1, col up to O * C). */
static void random_lists(ref_rng* r, int64_t O, int64_t C, double p, int32_t* row_ptr, int32_t* col) {
  row_ptr[0] = 0;
  for (int64_t o = 0; o < O; ++o) {
    row_ptr[o + 1] = row_ptr[o];
    for (int64_t c = 0; c < C; ++c)
      if (rng_unit(r) < p) col[row_ptr[o + 1]++] = (int32_t)c;
  }
}

static int compare(const char* what, const char* name, const float* got, const double* want,
                   const double* mag, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (!ref_conv_close(got[i], want[i], mag[i])) {
      CHECK(0, "%s: %s[%lld] = %.9g, naive %.9g (magnitude %g)", what, name, (long long)i, got[i], want[i],
            mag[i]);
      return 0;
    }
  return 1;
}

/* All three passes of one masked convolution against the naive one (bias when with_bias). */
static void masked_case(fp_conv2d_shape s, const int32_t* row_ptr, const int32_t* col, int with_bias,
                        const char* what) {
  ref_geom g;
  if (!ref_geometry(&s, &g)) {
    CHECK(0, "%s: bad test shape", what);
    return;
  }
  const int64_t taps = g.kh * g.kw, nnz = row_ptr[g.O], X = g.N * g.C * g.H * g.W,
                Y = g.N * g.O * g.Ho * g.Wo;
  float *x = fvec(X), *k = nnz ? fvec(nnz * taps) : NULL, *bias = with_bias ? fvec(g.O) : NULL, *gy = fvec(Y);
  float *y = fvec(Y), *y2 = fvec(Y), *gx = fvec(X), *gk = fvec(nnz * taps), *w = fvec(g.O * g.C * taps);
  double *ry = malloc(sizeof(double) * (size_t)(Y + 1)), *rym = malloc(sizeof(double) * (size_t)(Y + 1));
  double *rgx = malloc(sizeof(double) * (size_t)(X + 1)), *rgxm = malloc(sizeof(double) * (size_t)(X + 1));
  double *rgw = malloc(sizeof(double) * (size_t)(g.O * g.C * taps)),
         *rgwm = malloc(sizeof(double) * (size_t)(g.O * g.C * taps));
  ref_dense_weight(&g, row_ptr, col, k, w);
  const mc_args a = {&s, x, gy, k, bias, row_ptr, col == NULL && nnz == 0 ? NULL : col, CPU, y};
  EXPECT_OK(mc_call(0, a), what);
  ref_conv_forward(&g, x, w, bias, ry, rym);
  compare(what, "y", y, ry, rym, Y);
  mc_args again = a;
  again.out = y2;
  EXPECT_OK(mc_call(0, again), what);
  CHECK(!memcmp(y, y2, sizeof(float) * (size_t)Y), "%s: a second forward call differs", what);
  mc_args bi = a;
  bi.out = gx;
  EXPECT_OK(mc_call(1, bi), what);
  ref_conv_backward(&g, x, gy, w, rgx, rgxm, rgw, rgwm);
  compare(what, "grad_x", gx, rgx, rgxm, X);
  /* Adjoint identity on the library's own results: <g, conv(x)> = <conv^T g, x> (no bias). */
  again.bias = NULL;
  EXPECT_OK(mc_call(0, again), what);
  ref_conv_forward(&g, x, w, NULL, ry, rym);
  double lhs = 0, rhs = 0, scale = 0;
  for (int64_t i = 0; i < Y; ++i) lhs += (double)gy[i] * y2[i], scale += fabs(gy[i]) * rym[i];
  for (int64_t i = 0; i < X; ++i) rhs += (double)gx[i] * x[i];
  CHECK(fabs(lhs - rhs) <= 1e-4 * scale + 1e-30, "%s: <g, conv(x)> = %.9g, <conv^T g, x> = %.9g", what, lhs,
        rhs);
  mc_args bw = a;
  bw.out = gk;
  EXPECT_OK(mc_call(2, bw), what);
  for (int64_t o = 0; o < g.O; ++o)
    for (int64_t j = row_ptr[o]; j < row_ptr[o + 1]; ++j)
      if (!compare(what, "grad_kernels", gk + j * taps, rgw + (o * g.C + col[j]) * taps,
                   rgwm + (o * g.C + col[j]) * taps, taps))
        break;
  free(x), free(k), free(bias), free(gy), free(y), free(y2), free(gx), free(gk), free(w);
  free(ry), free(rym), free(rgx), free(rgxm), free(rgw), free(rgwm);
}

void check_masked_conv(void) {
  section = "masked conv2d";
  int32_t rp[16], col[64];
  /* N, C, H, W, O, kh, kw, sh, sw, ph, pw, dh, dw */
  const fp_conv2d_shape a = {2, 5, 7, 9, 4, 3, 2, 2, 1, 1, 2, 2, 1},
                        b = {2, 4, 8, 8, 5, 3, 3, 1, 1, 1, 1, 1, 1};
  const int32_t arp[5] = {0, 3, 3, 5, 10}, acol[10] = {0, 2, 3, 1, 4, 0, 1, 2, 3, 4};
  masked_case(a, arp, acol, 1, "kernel mask, stride 2x1, pad 1x2, dilation 2x1, bias");
  masked_case(a, arp, acol, 0, "kernel mask, stride 2x1, pad 1x2, dilation 2x1, no bias");
  const int32_t brp[6] = {0, 3, 3, 6, 9, 9}, bcol[9] = {0, 1, 3, 0, 1, 3, 0, 1, 3};
  masked_case(b, brp, bcol, 1, "filter and channel mask, 3x3 stride 1");
  const int32_t none[4] = {0, 0, 0, 0};
  const fp_conv2d_shape c = {1, 2, 4, 5, 3, 3, 3, 1, 1, 0, 0, 1, 1};
  masked_case(c, none, NULL, 1, "no kept kernel: y = bias");
  const fp_conv2d_shape shapes[5] = {{1, 3, 6, 7, 3, 3, 3, 1, 1, 1, 1, 1, 1},
                                     {1, 3, 8, 7, 3, 3, 3, 1, 1, 2, 2, 2, 2},
                                     {2, 3, 5, 5, 2, 1, 1, 2, 2, 0, 0, 1, 1},
                                     {1, 2, 3, 40, 2, 1, 5, 1, 1, 0, 2, 1, 1},
                                     {2, 6, 9, 9, 6, 3, 3, 1, 1, 1, 1, 1, 1}};
  for (int i = 0; i < 5; ++i) {
    random_lists(&rng, shapes[i].out_channels, shapes[i].in_channels, i == 4 ? 1.0 : 0.6, rp, col);
    masked_case(shapes[i], rp, col, i % 2, "random kernel mask");
  }
  float dummy[32] = {0}; /* grad_kernels: nnz * taps = 18 floats */
  const fp_conv2d_shape n0 = {0, 2, 4, 4, 2, 3, 3, 1, 1, 1, 1, 1, 1};
  const int32_t n0rp[3] = {0, 1, 2}, n0col[2] = {0, 1};
  for (int op = 0; op < 3; ++op) {
    const mc_args z = {&n0, dummy, dummy, dummy, NULL, n0rp, n0col, CPU, op == 2 ? dummy : NULL};
    mc_args zz = z;
    zz.out = dummy;
    EXPECT_OK(mc_call(op, zz), "batch 0");
  }

  /* Invalid arguments: N=1, C=3, 5x5, O=2, 3x3, stride 1, pad 1; filter 0 keeps channels 0, 2, filter 1
   * keeps 1. */
  const fp_conv2d_shape s = {1, 3, 5, 5, 2, 3, 3, 1, 1, 1, 1, 1, 1};
  const int32_t good_rp[3] = {0, 2, 3}, good_col[3] = {0, 2, 1};
  float *x = fvec(75), *k = fvec(27), *y = fvec(50), *gy = fvec(50), *gx = fvec(75), *gk = fvec(27);
  static const char* const fields[13] = {"batch",    "in_channels", "height",    "width",    "out_channels",
                                         "kernel_h", "kernel_w",    "stride_h",  "stride_w", "pad_h",
                                         "pad_w",    "dilation_h",  "dilation_w"};
  const struct {
    int32_t rp[3], col[3];
    const char* name;
  } lists[8] = {{{1, 2, 3}, {0, 2, 1}, "row_ptr[0]"}, {{0, 2, 1}, {0, 2, 1}, "row_ptr[2]"},
                {{0, 4, 5}, {0, 1, 2}, "row_ptr[1]"}, {{0, 2, 3}, {0, 3, 1}, "col[1]"},
                {{0, 2, 3}, {-1, 2, 1}, "col[0]"},    {{0, 2, 3}, {2, 0, 1}, "col[1]"},
                {{0, 2, 3}, {1, 1, 1}, "col[1]"},     {{-1, 0, 1}, {0, 1, 2}, "row_ptr[0]"}};
  for (int op = 0; op < 3; ++op) {
    section = mc_names[op];
    float* out = op == 0 ? y : op == 1 ? gx : gk;
    const mc_args good = {&s, x, gy, k, NULL, good_rp, good_col, CPU, out};
    mc_args t = good;
    EXPECT_OK(mc_call(op, good), "valid call");
    t.s = NULL;
    EXPECT_ERR(mc_call(op, t), FP_ERR_INVALID_ARGUMENT, "shape", "NULL shape");
    for (int f = 0; f < 13; ++f)
      for (int v = 0; v < 3; ++v) {
        fp_conv2d_shape bad = s;
        int64_t* field = &bad.batch + f;
        *field = v == 2 ? INT64_MAX / 2 : (f == 0 || f == 9 || f == 10 || v == 1) ? -1 : 0;
        if (v == 2 && f == 0) continue; /* a huge batch is valid as a shape (no such x exists) */
        char name[32], what[64];
        snprintf(name, sizeof name, "shape->%s", fields[f]);
        /* Beyond 2^31-1: the library's bound (csrc/capi_masked_conv2d.cpp); fastprune.h does not state it. */
        snprintf(what, sizeof what, "%s = %lld", name, (long long)*field);
        t = good, t.s = &bad;
        EXPECT_ERR(mc_call(op, t), FP_ERR_INVALID_ARGUMENT, name, what);
      }
    fp_conv2d_shape small = s;
    small.pad_h = 0, small.height = 2;
    t = good, t.s = &small;
    EXPECT_ERR(mc_call(op, t), FP_ERR_INVALID_ARGUMENT, "output size", "output height 0");
    small = s, small.dilation_w = 5;
    t.s = &small;
    EXPECT_ERR(mc_call(op, t), FP_ERR_INVALID_ARGUMENT, "output size", "dilated kernel wider than the input");
    t = good, t.rp = NULL;
    EXPECT_ERR(mc_call(op, t), FP_ERR_INVALID_ARGUMENT, "row_ptr", "NULL row_ptr");
    t = good, t.col = NULL;
    EXPECT_ERR(mc_call(op, t), FP_ERR_INVALID_ARGUMENT, "^col:", "NULL col with nnz > 0");
    for (int i = 0; i < 8; ++i) {
      t = good, t.rp = lists[i].rp, t.col = lists[i].col;
      EXPECT_ERR(mc_call(op, t), FP_ERR_INVALID_ARGUMENT, lists[i].name, lists[i].name);
    }
    const char* ptrs[3][3] = {{"^x:", "^kernels:", "^y:"},
                              {"^grad_y:", "^kernels:", "^grad_x:"},
                              {"^x:", "^grad_y:", "^grad_kernels:"}};
    for (int p = 0; p < 3; ++p) {
      t = good;
      if (op == 0) *(p == 0 ? &t.x : p == 1 ? &t.k : (const float**)&t.out) = NULL;
      if (op == 1) *(p == 0 ? &t.gy : p == 1 ? &t.k : (const float**)&t.out) = NULL;
      if (op == 2) *(p == 0 ? &t.x : p == 1 ? &t.gy : (const float**)&t.out) = NULL;
      EXPECT_ERR(mc_call(op, t), FP_ERR_INVALID_ARGUMENT, ptrs[op][p], ptrs[op][p] + 1);
    }
    t = good;
    EXPECT_BAD_EXEC((t.e = e, mc_call(op, t)), "exec", 0);
  }
  free(x), free(k), free(y), free(gy), free(gx), free(gk);
}

/* ---- dense convolution -------------------------------------------------------------------------------- */
/* y of one dense conv, relu or not, bias or not; accumulate: into channels oc of a y of yc channels. */
static void dense_case(fp_conv2d_shape s, int with_bias, int relu, const int64_t* oc, int64_t yc,
                       const char* what) {
  ref_geom g;
  if (!ref_geometry(&s, &g)) {
    CHECK(0, "%s: bad test shape", what);
    return;
  }
  const int64_t P = g.Ho * g.Wo, planes = oc ? yc : g.O, taps = g.kh * g.kw;
  float *x = fvec(g.N * g.C * g.H * g.W), *w = fvec(g.O * g.C * taps), *bias = with_bias ? fvec(g.O) : NULL;
  float *y = fvec(g.N * planes * P), *before = fvec(g.N * planes * P);
  double *ry = malloc(sizeof(double) * (size_t)(g.N * g.O * P + 1)),
         *rym = malloc(sizeof(double) * (size_t)(g.N * g.O * P + 1));
  memcpy(before, y, sizeof(float) * (size_t)(g.N * planes * P));
  if (oc)
    EXPECT_OK(fp_conv2d_accumulate(&s, x, w, bias, oc, yc, relu, CPU, y), what);
  else
    EXPECT_OK(fp_conv2d_forward(&s, x, w, bias, relu, CPU, y), what);
  ref_conv_forward(&g, x, w, bias, ry, rym);
  int bad = 0;
  for (int64_t n = 0; n < g.N; ++n)
    for (int64_t c = 0; c < planes; ++c) {
      int64_t o = oc ? -1 : c;
      for (int64_t f = 0; oc && f < g.O; ++f)
        if (oc[f] == c) o = f;
      for (int64_t p = 0; p < P && bad < 3; ++p) {
        const int64_t at = (n * planes + c) * P + p;
        if (o < 0) { /* a channel no filter adds into: untouched */
          bad += memcmp(&y[at], &before[at], sizeof(float)) != 0;
          CHECK(!memcmp(&y[at], &before[at], sizeof(float)), "%s: channel %lld (not listed) changed", what,
                (long long)c);
          continue;
        }
        double want = ry[(n * g.O + o) * P + p] + (oc ? before[at] : 0.0);
        want = relu && want < 0 ? 0.0 : want;
        const double mag = rym[(n * g.O + o) * P + p] + (oc ? fabs(before[at]) : 0.0);
        const int ok = ref_conv_close(y[at], want, mag) && (!relu || y[at] >= 0.0f);
        bad += !ok;
        CHECK(ok, "%s: y[%lld] = %.9g, naive %.9g", what, (long long)at, y[at], want);
      }
    }
  free(x), free(w), free(bias), free(y), free(before), free(ry), free(rym);
}

void check_dense_conv(void) {
  section = "dense conv2d";
  const fp_conv2d_shape a = {2, 3, 7, 7, 4, 3, 3, 1, 1, 1, 1, 1, 1},
                        b = {1, 2, 6, 9, 3, 2, 3, 2, 1, 1, 0, 2, 2};
  const fp_conv2d_shape n0 = {0, 3, 7, 7, 4, 3, 3, 1, 1, 1, 1, 1, 1};
  const int64_t oc[4] = {5, 0, 3, 6};
  for (int v = 0; v < 4; ++v) {
    dense_case(a, v & 1, v >> 1, NULL, 0, "fp_conv2d_forward 3x3");
    dense_case(b, v & 1, v >> 1, NULL, 0, "fp_conv2d_forward 2x3 stride 2x1 dilation 2");
    dense_case(a, v & 1, v >> 1, oc, 7, "fp_conv2d_accumulate into 7 channels");
    dense_case(b, v & 1, v >> 1, oc + 1, 7, "fp_conv2d_accumulate 2x3 into 7 channels");
  }
  dense_case(n0, 1, 1, NULL, 0, "fp_conv2d_forward batch 0");
  dense_case(n0, 1, 1, oc, 7, "fp_conv2d_accumulate batch 0");

  float *x = fvec(2 * 3 * 49), *w = fvec(4 * 3 * 9), *y = fvec(2 * 7 * 49);
  for (int acc = 0; acc < 2; ++acc) {
    section = acc ? "fp_conv2d_accumulate" : "fp_conv2d_forward";
#define DENSE(shape, x, w, oc, yc, e, y)                          \
  (acc ? fp_conv2d_accumulate(shape, x, w, NULL, oc, yc, 0, e, y) \
       : fp_conv2d_forward(shape, x, w, NULL, 0, e, y))
    EXPECT_ERR(DENSE(NULL, x, w, oc, 7, CPU, y), FP_ERR_INVALID_ARGUMENT, "shape", "NULL shape");
    fp_conv2d_shape bad = a;
    bad.in_channels = 0;
    EXPECT_ERR(DENSE(&bad, x, w, oc, 7, CPU, y), FP_ERR_INVALID_ARGUMENT, "shape->in_channels", "C = 0");
    bad = a, bad.stride_w = -2;
    EXPECT_ERR(DENSE(&bad, x, w, oc, 7, CPU, y), FP_ERR_INVALID_ARGUMENT, "shape->stride_w", "stride_w < 0");
    bad = a, bad.pad_h = -1;
    EXPECT_ERR(DENSE(&bad, x, w, oc, 7, CPU, y), FP_ERR_INVALID_ARGUMENT, "shape->pad_h", "pad_h < 0");
    bad = a, bad.batch = -1;
    EXPECT_ERR(DENSE(&bad, x, w, oc, 7, CPU, y), FP_ERR_INVALID_ARGUMENT, "shape->batch", "N < 0");
    bad = a, bad.kernel_h = 10;
    EXPECT_ERR(DENSE(&bad, x, w, oc, 7, CPU, y), FP_ERR_INVALID_ARGUMENT, "output size",
               "kernel taller than input");
    EXPECT_ERR(DENSE(&a, NULL, w, oc, 7, CPU, y), FP_ERR_INVALID_ARGUMENT, "^x:", "NULL x");
    EXPECT_ERR(DENSE(&a, x, NULL, oc, 7, CPU, y), FP_ERR_INVALID_ARGUMENT, "^weight:", "NULL weight");
    EXPECT_ERR(DENSE(&a, x, w, oc, 7, CPU, NULL), FP_ERR_INVALID_ARGUMENT, "^y:", "NULL y");
    EXPECT_BAD_EXEC(DENSE(&a, x, w, oc, 7, e, y), "exec (CPU only)", 1);
  }
  const int64_t dup[4] = {1, 2, 1, 3}, out_of_range[4] = {0, 7, 1, 2}, negative[4] = {-1, 0, 1, 2};
  EXPECT_ERR(fp_conv2d_accumulate(&a, x, w, NULL, NULL, 7, 0, CPU, y), FP_ERR_INVALID_ARGUMENT,
             "out_channels", "NULL out_channels");
  const int64_t bad_yc[3] = {0, -1, INT64_MAX / 2}; /* > 2^31-1: the library's bound, not in fastprune.h */
  for (int i = 0; i < 3; ++i)
    EXPECT_ERR(fp_conv2d_accumulate(&a, x, w, NULL, oc, bad_yc[i], 0, CPU, y), FP_ERR_INVALID_ARGUMENT,
               "y_channels", "bad y_channels");
  EXPECT_ERR(fp_conv2d_accumulate(&a, x, w, NULL, dup, 7, 0, CPU, y), FP_ERR_INVALID_ARGUMENT,
             "out_channels[2]", "dup");
  EXPECT_ERR(fp_conv2d_accumulate(&a, x, w, NULL, out_of_range, 7, 0, CPU, y), FP_ERR_INVALID_ARGUMENT,
             "out_channels[1]", "channel 7 of 7");
  EXPECT_ERR(fp_conv2d_accumulate(&a, x, w, NULL, negative, 7, 0, CPU, y), FP_ERR_INVALID_ARGUMENT,
             "out_channels[0]", "channel -1");
  EXPECT_ERR(fp_conv2d_accumulate(&a, x, w, NULL, oc + 1, 3, 0, CPU, y), FP_ERR_INVALID_ARGUMENT,
             "out_channels[", "y_channels 3 < 4 filters");
  free(x), free(w), free(y);
}

/* ---- probes ------------------------------------------------------------------------------------------- */
/* A hash of the bits of every convolution's results on fixed inputs: "Results are deterministic: identical
 * for every OpenMP thread count" (fastprune.h), compared across OMP_NUM_THREADS by capi_check.c. */
uint64_t conv_results_hash(void) {
  ref_rng r = rng_make(7, 7);
  uint64_t h = 1469598103934665603ull;
  const fp_conv2d_shape shapes[2] = {{4, 8, 12, 13, 8, 3, 3, 1, 1, 1, 1, 1, 1},
                                     {4, 8, 12, 13, 8, 3, 3, 2, 2, 1, 1, 1, 1}};
  for (int i = 0; i < 4; ++i) {
    const fp_conv2d_shape* s = &shapes[i % 2];
    ref_geom g = {0};
    ref_geometry(s, &g);
    int32_t rp[9], col[64];
    random_lists(&r, g.O, g.C, i < 2 ? 0.5 : 1.0, rp, col); /* kernel mask, then every kernel */
    const int64_t X = g.N * g.C * g.H * g.W, Y = g.N * g.O * g.Ho * g.Wo, K = rp[g.O] * 9, Wn = g.O * g.C * 9;
    float *x = malloc(sizeof(float) * (size_t)X), *gy = malloc(sizeof(float) * (size_t)Y),
          *k = malloc(sizeof(float) * (size_t)Wn);
    float *b = malloc(sizeof(float) * 8), *out = malloc(sizeof(float) * (size_t)(X + Y + K + Y));
    rng_fill(&r, x, X), rng_fill(&r, gy, Y), rng_fill(&r, k, Wn), rng_fill(&r, b, 8);
    fp_status st = fp_masked_conv2d_forward(s, x, rp, col, k, b, CPU, out);
    st |= fp_masked_conv2d_backward_input(s, gy, rp, col, k, CPU, out + Y);
    st |= fp_masked_conv2d_backward_weight(s, x, gy, rp, col, CPU, out + Y + X);
    st |= fp_conv2d_forward(s, x, k, b, 1, CPU, out + Y + X + K);
    const unsigned char* bytes = (const unsigned char*)out;
    for (size_t j = 0; j < sizeof(float) * (size_t)(X + Y + K + Y); ++j)
      h = (h ^ bytes[j]) * 1099511628211ull;
    h ^= (uint64_t)st;
    free(x), free(gy), free(k), free(b), free(out);
  }
  return h;
}

/* Valid calls on an empty batch (N = 0) of 2^30 x 2^30 images: nothing to compute, so FP_OK (or at worst
 * FP_ERR_OUT_OF_MEMORY: "no C++ exception may cross this boundary"); never a crash. */
const char* const conv_probes[] = {"masked_conv2d_forward",
                                   "masked_conv2d_backward_input",
                                   "masked_conv2d_backward_weight",
                                   "conv2d_forward",
                                   "conv2d_accumulate",
                                   NULL};

int run_conv_probe(const char* name) {
  ref_child_limits(60, (uint64_t)4 << 30);
  const fp_conv2d_shape s = {0, 2, (int64_t)1 << 30, (int64_t)1 << 30, 2, 3, 3, 2, 2, 1, 1, 1, 1};
  const int32_t rp[3] = {0, 1, 2}, col[2] = {0, 1};
  const int64_t oc[2] = {1, 0};
  float* buf = fvec(64);
  fp_status st = FP_ERR_INTERNAL;
  if (!strcmp(name, "masked_conv2d_forward"))
    st = fp_masked_conv2d_forward(&s, buf, rp, col, buf, buf, CPU, buf);
  if (!strcmp(name, "masked_conv2d_backward_input"))
    st = fp_masked_conv2d_backward_input(&s, buf, rp, col, buf, CPU, buf);
  if (!strcmp(name, "masked_conv2d_backward_weight"))
    st = fp_masked_conv2d_backward_weight(&s, buf, buf, rp, col, CPU, buf);
  if (!strcmp(name, "conv2d_forward")) st = fp_conv2d_forward(&s, buf, buf, buf, 1, CPU, buf);
  if (!strcmp(name, "conv2d_accumulate")) st = fp_conv2d_accumulate(&s, buf, buf, buf, oc, 2, 1, CPU, buf);
  printf("probe %s (N = 0, H = W = 2^30, 3x3 stride 2): %s \"%s\"\n", name, fp_status_name(st),
         fp_last_error());
  free(buf);
  return st == FP_OK || st == FP_ERR_OUT_OF_MEMORY ? 0 : 1;
}
