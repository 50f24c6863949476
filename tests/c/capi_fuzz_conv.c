/* The convolutions of the fuzz harness (capi_fuzz.c): random shapes, compressed kernel lists, output
 * channels and pointers for fp_masked_conv2d_* and fp_conv2d_*; FP_OK results against the naive one. */
#include "capi_fuzz.h"

/* A shape (fields bad with probability ~2% each); huge: an empty batch of 2^30..2^31-1 sized images. */
static fp_conv2d_shape gen_shape(ref_rng* r, int huge) {
  int bad = 0;
  const int p = huge ? 0 : 2;
  fp_conv2d_shape s = {pct(r, 10) ? 0 : gen_size(r, 1, 2, p, &bad),
                       gen_size(r, 1, 6, p, &bad),
                       gen_size(r, 1, 9, p, &bad),
                       gen_size(r, 1, 9, p, &bad),
                       gen_size(r, 1, 6, p, &bad),
                       gen_size(r, 1, 4, p, &bad),
                       gen_size(r, 1, 4, p, &bad),
                       gen_size(r, 1, 3, p, &bad),
                       gen_size(r, 1, 3, p, &bad),
                       gen_size(r, 0, 2, p, &bad),
                       gen_size(r, 0, 2, p, &bad),
                       gen_size(r, 1, 2, p, &bad),
                       gen_size(r, 1, 2, p, &bad)};
  if (pct(r, 2)) s.batch = rng_next(r) % 2 ? INT64_MAX / 2 : -1; /* huge: with a NULL input, below */
  if (huge) {
    s.batch = 0;
    s.height = rng_range(r, (int64_t)1 << 30, INT_MAX);
    s.width = rng_range(r, (int64_t)1 << 30, INT_MAX);
    s.pad_h = rng_next(r) % 2 ? rng_range(r, 0, (int64_t)1 << 30) : s.pad_h;
  }
  return s;
}

/* Compressed kept kernels for O filters of C channels: valid, or with probability 15% broken one way. */
static void gen_lists(ref_rng* r, int64_t O, int64_t C, int32_t* rp, int32_t* col, int* invalid, int* null_rp,
                      int* null_col) {
  const double p = rng_unit(r);
  rp[0] = 0;
  for (int64_t o = 0; o < O; ++o) {
    rp[o + 1] = rp[o];
    for (int64_t c = 0; c < C; ++c)
      if (rng_unit(r) < p) col[rp[o + 1]++] = (int32_t)c;
  }
  if (!pct(r, 15)) return;
  const int64_t nnz = rp[O], o = rng_range(r, 0, O - 1);
  switch (rng_next(r) % 7) {
    case 0:
      *null_rp = 1, *invalid = 1;
      break;
    case 1:
      rp[0] = rng_next(r) % 2 ? 1 : -1, *invalid = 1;
      break;
    case 2: /* decreasing */
      rp[o + 1] = rp[o] - 1, *invalid = 1;
      break;
    case 3: /* more kernels in a filter than channels */
      for (int64_t q = o + 1; q <= O; ++q) rp[q] += (int32_t)C + 1;
      *invalid = 1;
      break;
    case 4:
      rp[O] = INT32_MAX, *invalid = 1;
      break;
    case 5:
      if (nnz) *null_col = 1, *invalid = 1;
      break;
    default: {
      if (nnz == 0) break;
      const int64_t j = rng_range(r, 0, nnz - 1);
      int64_t f = 0; /* the filter of kernel j */
      while (rp[f + 1] <= j) ++f;
      if (j > rp[f] && rng_next(r) % 2) { /* repeated or descending within the filter */
        col[j] = rng_next(r) % 2 ? col[j - 1] : col[j - 1] - 1;
      } else {
        col[j] =
            rng_next(r) % 2 ? (int32_t)C + (int32_t)rng_range(r, 0, 3) : -1 - (int32_t)rng_range(r, 0, 3);
      }
      *invalid = 1;
    }
  }
}

void fuzz_conv(ref_rng* r, int huge) {
  expect_t e = {0, 0, 0, 0};
  const int masked = op >= 6 && op <= 8, acc = op == 10;
  fp_conv2d_shape s = gen_shape(r, huge);
  ref_geom g = {0};
  const int geom = ref_geometry(&s, &g), huge_batch = geom && g.N > 2;
  if (!geom) e.invalid = 1;
  const int small = geom && !huge_batch && !huge; /* real buffers of the exact sizes */
  const int64_t O = s.out_channels >= 1 && s.out_channels <= 6 ? s.out_channels : 1;
  const int64_t C = s.in_channels >= 1 && s.in_channels <= 6 ? s.in_channels : 1,
                taps = geom ? g.kh * g.kw : 0;
  int32_t rp[8], col[64];
  int null_rp = 0, null_col = 0;
  if (masked) gen_lists(r, O, C, rp, col, &e.invalid, &null_rp, &null_col);
  const int lists_ok = masked && !e.invalid;
  const int64_t nnz = lists_ok ? rp[O] : 0;
  int64_t yc = O, oc[16];
  for (int64_t i = 0; i < 16; ++i) oc[i] = i;
  int null_oc = 0;
  if (acc) {
    yc = O + rng_range(r, 0, 3);
    for (int64_t i = 0; i < yc; ++i) { /* a random permutation of 0..yc-1; the first O are the targets */
      const int64_t j = rng_range(r, 0, i), t = oc[i];
      oc[i] = oc[j], oc[j] = t;
    }
    const int u = (int)(rng_next(r) % 100);
    if (u < 3)
      null_oc = 1, e.invalid = 1;
    else if (u < 6)
      yc = BAD[rng_next(r) % 6], e.invalid = 1;
    else if (u < 9 && O > 1)
      oc[rng_range(r, 1, O - 1)] = oc[0], e.invalid = 1;
    else if (u < 12)
      oc[rng_range(r, 0, O - 1)] = rng_next(r) % 2 ? yc + rng_range(r, 0, 2) : -1, e.invalid = 1;
    else if (u < 15 && O > 1) {
      yc = rng_range(r, 1, O - 1), e.invalid = 1;
      for (int64_t i = 0; i < O; ++i) oc[i] = rng_range(r, 0, yc - 1);
    }
  }
  const int valid = !e.invalid && small;
  const int64_t X = valid ? g.N * g.C * g.H * g.W : 0, P = valid ? g.Ho * g.Wo : 0;
  const int64_t Y = valid ? g.N * (acc ? yc : g.O) * P : 0, Wn = valid ? g.O * g.C * taps : 0;
  const int profile = (int)(rng_next(r) % 100) < 5 ? 3 : gen_profile(r) % 3;
  int nf[4] = {0, 0, 0, 0};
  float *x = gen_buffer(r, X, profile, 1, &nf[0]),
        *gy = gen_buffer(r, valid ? g.N * g.O * P : 0, profile, 1, &nf[1]);
  float* k = gen_buffer(r, masked ? nnz * taps : Wn, profile, 1, &nf[2]);
  float* bias = gen_buffer(r, valid ? g.O : 0, profile, 1, &nf[3]);
  const int nonfinite = nf[0] || nf[1] || nf[2] || nf[3]; /* undocumented for convolutions: status only */
  const int64_t out_n = op == 7 ? X : op == 8 ? nnz * taps : Y;
  float *out = gen_buffer(r, out_n, 0, 1, NULL), *before = gen_buffer(r, out_n, 0, 1, NULL);
  memcpy(before, out, sizeof(float) * (size_t)(out_n >= 1 && out_n <= (1 << 20) ? out_n : 16));
  /* NULL pointers: invalid for elements (N > 0: x, y; nnz > 0: kernels); for none, either status. */
  const float *xp = x, *gyp = gy, *kp = k, *bp = pct(r, 50) ? bias : NULL;
  float* outp = out;
  const int64_t n_elems = huge_batch ? 1 : geom ? g.N : 1;
#define MAYBE_NULL(ptr, elements) \
  if (pct(r, 3)) ptr = NULL, (elements) > 0 ? (e.invalid = 1) : (e.may_invalid = 1);
  if (op != 7) MAYBE_NULL(xp, n_elems);
  if (op == 7 || op == 8) MAYBE_NULL(gyp, n_elems);
  if (op != 8) MAYBE_NULL(kp, masked ? nnz : 1);
  MAYBE_NULL(outp, op == 8 ? nnz : n_elems);
  if (huge_batch)
    *(op == 7 ? &gyp : &xp) = NULL, e.invalid = 1; /* a valid shape whose tensors cannot exist */
  const fp_exec ex = gen_exec(r, &e, op >= 9);
  const fp_conv2d_shape* sp = pct(r, 2) ? (e.invalid = 1, (const fp_conv2d_shape*)NULL) : &s;
  const int32_t *rpp = null_rp ? NULL : rp, *colp = null_col || (nnz == 0 && pct(r, 50)) ? NULL : col;
  const int relu = (int[]){0, 1, -7, INT_MAX}[rng_next(r) % 4];
  fp_status st = FP_ERR_INTERNAL;
  if (op == 6) st = fp_masked_conv2d_forward(sp, xp, rpp, colp, kp, bp, ex, outp);
  if (op == 7) st = fp_masked_conv2d_backward_input(sp, gyp, rpp, colp, kp, ex, outp);
  if (op == 8) st = fp_masked_conv2d_backward_weight(sp, xp, gyp, rpp, colp, ex, outp);
  if (op == 9) st = fp_conv2d_forward(sp, xp, kp, bp, relu, ex, outp);
  if (op == 10) st = fp_conv2d_accumulate(sp, xp, kp, bp, null_oc ? NULL : oc, yc, relu, ex, outp);
  const int expect_ok = !e.invalid && !e.unavailable && !e.may_invalid;
  if (huge && expect_ok && st == FP_ERR_OUT_OF_MEMORY)
    ++calls, ++rejected[st]; /* acceptable for 2^60 floats */
  else if (check_status(st, e) && valid && !nonfinite && xp && gyp && outp && (kp || !masked || !nnz)) {
    float* w = (float*)malloc(sizeof(float) * (size_t)(g.O * g.C * taps + 1));
    if (masked)
      ref_dense_weight(&g, rp, col, k, w);
    else
      memcpy(w, k, sizeof(float) * (size_t)Wn);
    const int64_t n_ref = (X > g.O * g.C * taps ? X : g.O * g.C * taps) + g.N * g.O * P + 1;
    double *ref = (double*)malloc(sizeof(double) * (size_t)n_ref),
           *mag = (double*)malloc(sizeof(double) * (size_t)n_ref);
    double *ref2 = (double*)malloc(sizeof(double) * (size_t)n_ref),
           *mag2 = (double*)malloc(sizeof(double) * (size_t)n_ref);
    if (op == 7 || op == 8)
      ref_conv_backward(&g, x, gy, w, op == 7 ? ref : NULL, mag, op == 8 ? ref2 : NULL, mag2);
    else
      ref_conv_forward(&g, x, w, op == 6 || op >= 9 ? bp : NULL, ref, mag);
    for (int64_t i = 0; i < out_n; ++i) {
      double want, m;
      if (op == 7)
        want = ref[i], m = mag[i];
      else if (op == 8) {
        int64_t o = 0, j = i / taps;
        while (rp[o + 1] <= j) ++o;
        want = ref2[(o * g.C + col[j]) * taps + i % taps], m = mag2[(o * g.C + col[j]) * taps + i % taps];
      } else {
        const int64_t n = i / (P * (acc ? yc : g.O)), c = i / P % (acc ? yc : g.O);
        int64_t f = acc ? -1 : c;
        for (int64_t q = 0; acc && q < g.O; ++q)
          if (oc[q] == c) f = q;
        if (f < 0) { /* a channel of y that no filter adds into */
          if (memcmp(&out[i], &before[i], sizeof(float)))
            FAIL("y[%lld] changed, channel %lld not listed", (long long)i, (long long)c);
          continue;
        }
        want = ref[(n * g.O + f) * P + i % P] + (acc ? before[i] : 0.0),
        m = mag[(n * g.O + f) * P + i % P] + fabs(acc ? before[i] : 0.0);
        if (op >= 9 && relu && want < 0) want = 0.0;
      }
      if (!ref_conv_close(out[i], want, m)) {
        FAIL(
            "out[%lld] = %.9g, naive %.9g (N %lld C %lld %lldx%lld O %lld k %lldx%lld s %lld,%lld p "
            "%lld,%lld d %lld,%lld)",
            (long long)i, out[i], want, (long long)g.N, (long long)g.C, (long long)g.H, (long long)g.W,
            (long long)g.O, (long long)g.kh, (long long)g.kw, (long long)g.sh, (long long)g.sw,
            (long long)g.ph, (long long)g.pw, (long long)g.dh, (long long)g.dw);
        break;
      }
    }
    free(w), free(ref), free(mag), free(ref2), free(mag2);
  }
  free(x), free(gy), free(k), free(bias), free(out), free(before);
}
