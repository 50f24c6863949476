/* Shared helpers of the C ABI check (capi_check.c) and fuzz harness (capi_fuzz.c): a deterministic PRNG,
 * naive float64 references of every op of fastprune.h, tolerant comparisons, and a way to run one case in a
 * fresh child process (so a crash or hang in the library is reported instead of ending the run).
 * Everything is static inline: each program includes its own copy. */
#ifndef FASTPRUNE_TESTS_C_REFERENCE_H
#define FASTPRUNE_TESTS_C_REFERENCE_H

#include <fastprune/fastprune.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

#if defined(__SANITIZE_ADDRESS__)
#define REF_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define REF_ASAN 1
#endif
#endif
#ifndef REF_ASAN
#define REF_ASAN 0
#endif

/* ---- PRNG: splitmix64 --------------------------------------------------------------------------------- */
typedef struct {
  uint64_t state;
} ref_rng;

static inline uint64_t rng_next(ref_rng* r) {
  uint64_t z = (r->state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
static inline ref_rng rng_make(uint64_t seed, uint64_t stream) {
  ref_rng r = {seed * 0x2545F4914F6CDD1Dull + stream};
  rng_next(&r);
  return r;
}
/* Uniform in [0, 1). */
static inline double rng_unit(ref_rng* r) {
  return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}
/* Uniform integer in [lo, hi]. */
static inline int64_t rng_range(ref_rng* r, int64_t lo, int64_t hi) {
  return lo + (int64_t)(rng_next(r) % (uint64_t)(hi - lo + 1));
}
/* Roughly normal, in (-6, 6). */
static inline float rng_normal(ref_rng* r) {
  double s = 0.0;
  for (int i = 0; i < 12; ++i) s += rng_unit(r);
  return (float)(s - 6.0);
}
static inline void rng_fill(ref_rng* r, float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = rng_normal(r);
}

/* ---- comparisons -------------------------------------------------------------------------------------- */
/* got (float) against the exact want (double), allowing |got - want| <= atol + rtol |want|: NaN only for
 * NaN; an infinity only where a value of its sign beyond the float range is within that tolerance. */
static inline int ref_close(double got, double want, double rtol, double atol) {
  if (isnan(want) || isnan(got)) return isnan(want) && isnan(got);
  const double tol = atol + rtol * fabs(want);
  if (isinf(got)) return (got > 0 ? want + tol : -(want - tol)) >= (double)FLT_MAX * (1.0 - 1e-7);
  return fabs(got - want) <= tol;
}

static inline int ref_all_finite(const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (!isfinite(x[i])) return 0;
  return 1;
}

/* ---- distances ---------------------------------------------------------------------------------------- */
/* d(a, b) of fastprune.h's fp_metric, from direct differences in double. */
static inline double ref_distance(int metric, const float* a, const float* b, int64_t d) {
  double acc = 0.0, dot = 0.0, na = 0.0, nb = 0.0;
  for (int64_t k = 0; k < d; ++k) {
    const double x = a[k], y = b[k];
    acc += metric == FP_METRIC_L1 ? fabs(x - y) : (x - y) * (x - y);
    dot += x * y, na += x * x, nb += y * y;
  }
  if (metric == FP_METRIC_L2) return sqrt(acc);
  if (metric != FP_METRIC_COSINE) return acc;
  if (na == 0.0 || nb == 0.0) return 1.0; /* a zero row is at distance 1 from every other row */
  const double c = 1.0 - dot / (sqrt(na) * sqrt(nb));
  return c < 0.0 ? 0.0 : c;
}

/* Tolerance of one distance: relative 1e-4 (the project's stated tolerance against float64), plus an
 * absolute floor (1e-6 for cosine, which lies in [0, 2]; results below the float normal range otherwise). */
static inline double ref_distance_atol(int metric) {
  return metric == FP_METRIC_COSINE ? 1e-6 : 1e-30;
}
#define REF_DISTANCE_RTOL 1e-4

/* The start of every layer's rows in the packed or per-layer form. */
static inline const float* ref_layer(const fp_ragged_batch* b, int64_t l) {
  if (b->layer_data) return b->layer_data[l];
  int64_t off = 0;
  for (int64_t m = 0; m < l; ++m) off += b->num_rows[m] * b->row_dims[m];
  return b->data + off;
}

/* Full distance matrices (sum N_l^2 doubles). */
static inline void ref_pairwise(const fp_ragged_batch* b, int metric, double* out) {
  for (int64_t l = 0; l < b->num_layers; ++l) {
    const int64_t n = b->num_rows[l], d = b->row_dims[l];
    const float* x = ref_layer(b, l);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j)
        out[i * n + j] = i == j ? 0.0 : ref_distance(metric, x + i * d, x + j * d, d);
    out += n * n;
  }
}

/* gm scores (sum N_l doubles): sum over kept j' of d(F_j, F_j'), +INFINITY for pruned rows. mag[j] gets the
 * sum of |terms| (here equal to the score) for the tolerance. */
static inline void ref_gm(const fp_ragged_batch* b, int metric, const uint8_t* keep, double* out) {
  int64_t row = 0;
  for (int64_t l = 0; l < b->num_layers; ++l) {
    const int64_t n = b->num_rows[l], d = b->row_dims[l];
    const float* x = ref_layer(b, l);
    for (int64_t i = 0; i < n; ++i) {
      double s = 0.0;
      for (int64_t j = 0; j < n; ++j)
        if (j != i && (!keep || keep[row + j])) s += ref_distance(metric, x + i * d, x + j * d, d);
      out[row + i] = (!keep || keep[row + i]) ? s : INFINITY;
    }
    row += n;
  }
}

/* ---- small matrices ----------------------------------------------------------------------------------- */
/* Determinant by Gaussian elimination with complete pivoting, in long double: stable also for the badly
 * scaled matrices of the fuzz harness (1e18 entries next to 0.1, where partial pivoting loses everything). */
static inline double ref_det(const float* m, int n) {
  long double a[64], det = 1.0L;
  for (int i = 0; i < n * n; ++i) a[i] = m[i];
  for (int c = 0; c < n; ++c) {
    int pr = c, pc = c;
    for (int r = c; r < n; ++r)
      for (int k = c; k < n; ++k)
        if (fabsl(a[r * n + k]) > fabsl(a[pr * n + pc])) pr = r, pc = k;
    if (a[pr * n + pc] == 0.0L) return 0.0;
    for (int k = 0; pr != c && k < n; ++k) {
      const long double t = a[c * n + k];
      a[c * n + k] = a[pr * n + k], a[pr * n + k] = t;
    }
    for (int k = 0; pc != c && k < n; ++k) {
      const long double t = a[k * n + c];
      a[k * n + c] = a[k * n + pc], a[k * n + pc] = t;
    }
    det *= (pr != c) != (pc != c) ? -a[c * n + c] : a[c * n + c];
    for (int r = c + 1; r < n; ++r) {
      const long double f = a[r * n + c] / a[c * n + c];
      for (int k = c; k < n; ++k) a[r * n + k] -= f * a[c * n + k];
    }
  }
  return (double)det;
}

/* Hadamard's bound prod_r |row r|: |det| <= it. */
static inline double ref_hadamard(const float* m, int n) {
  double h = 1.0;
  for (int r = 0; r < n; ++r) {
    double s = 0.0;
    for (int c = 0; c < n; ++c) s += (double)m[r * n + c] * m[r * n + c];
    h *= sqrt(s);
  }
  return h;
}

/* Tolerance of a computed determinant: a normwise backward error |E| <= 1e-5 max|a_ij| (partial pivoting
 * in double, rounded to float, with room), moved through the cofactors (|C_ij| <= prod_{k != i} |row k|):
 * 1e-5 max|a| sum_i prod_{k != i} |row k| sqrt(n). Hadamard-relative for rows of similar norms; much wider
 * for rows of very different norms (1e18 next to 0.1), where elimination legitimately loses the result. */
static inline double ref_det_tol(const float* m, int n) {
  double rows[8], amax = 0.0, sum = 0.0;
  for (int r = 0; r < n; ++r) {
    double s = 0.0;
    for (int c = 0; c < n; ++c)
      s += (double)m[r * n + c] * m[r * n + c], amax = fmax(amax, fabs(m[r * n + c]));
    rows[r] = sqrt(s);
  }
  for (int i = 0; i < n; ++i) {
    double p = 1.0;
    for (int k = 0; k < n; ++k) p *= k == i ? 1.0 : rows[k];
    sum += p;
  }
  return 1e-5 * amax * sum * sqrt((double)n) + 1.5e-45;
}

static inline double ref_frobenius2(const float* m, int n) {
  double s = 0.0;
  for (int i = 0; i < n * n; ++i) s += (double)m[i] * m[i];
  return s;
}

/* c(K) of the criteria with a closed form: mean |K|, |det K|, det(K)^2. */
static inline double ref_criterion(int criterion, const float* k, int n) {
  if (criterion == FP_CRITERION_WEIGHT) {
    double s = 0.0;
    for (int i = 0; i < n * n; ++i) s += fabs((double)k[i]);
    return s / (n * n);
  }
  const double det = ref_det(k, n);
  return criterion == FP_CRITERION_DET ? fabs(det) : det * det;
}

/* The criteria from the eigenvalues (re, im: n floats each) or singular values of one kernel. */
static inline double ref_criterion_from_spectrum(int criterion, const float* eig, const float* sv, int n) {
  if (criterion == FP_CRITERION_SPECTRAL_NORM) return sv[0];
  const int least = criterion == FP_CRITERION_MIN_EIG || criterion == FP_CRITERION_MIN_EIG_REAL;
  const int modulus = criterion == FP_CRITERION_MIN_EIG || criterion == FP_CRITERION_SPECTRAL_RADIUS;
  double best = least ? INFINITY : 0.0;
  for (int i = 0; i < n; ++i) {
    const double re = eig[2 * i], im = eig[2 * i + 1];
    if (isnan(re) || isnan(im)) return NAN;
    const double v = modulus ? sqrt(re * re + im * im) : fabs(re);
    best = least ? fmin(best, v) : fmax(best, v);
  }
  return best;
}

/* ---- convolution -------------------------------------------------------------------------------------- */
typedef struct {
  int64_t N, C, H, W, O, kh, kw, sh, sw, ph, pw, dh, dw, Ho, Wo;
} ref_geom;

/* 1 when the shape is valid: the header's rules (N >= 0; C, H, W, O, kh, kw, strides, dilations >= 1;
 * pads >= 0; output size >= 1) plus the library's bound of 2^31-1 on every field but the batch (see
 * csrc/capi_masked_conv2d.cpp; fastprune.h does not state it). Fills g. */
static inline int ref_geometry(const fp_conv2d_shape* s, ref_geom* g) {
  if (!s || s->batch < 0) return 0;
  const int64_t f[12] = {s->in_channels, s->height,   s->width,      s->out_channels,
                         s->kernel_h,    s->kernel_w, s->stride_h,   s->stride_w,
                         s->pad_h,       s->pad_w,    s->dilation_h, s->dilation_w};
  for (int i = 0; i < 12; ++i)
    if (f[i] < (i == 8 || i == 9 ? 0 : 1) || f[i] > INT_MAX) return 0;
  const int64_t eh = s->dilation_h * (s->kernel_h - 1) + 1, ew = s->dilation_w * (s->kernel_w - 1) + 1;
  if (s->height + 2 * s->pad_h < eh || s->width + 2 * s->pad_w < ew) return 0;
  const ref_geom r = {s->batch,
                      s->in_channels,
                      s->height,
                      s->width,
                      s->out_channels,
                      s->kernel_h,
                      s->kernel_w,
                      s->stride_h,
                      s->stride_w,
                      s->pad_h,
                      s->pad_w,
                      s->dilation_h,
                      s->dilation_w,
                      (s->height + 2 * s->pad_h - eh) / s->stride_h + 1,
                      (s->width + 2 * s->pad_w - ew) / s->stride_w + 1};
  *g = r;
  return 1;
}

/* Input pixel read by output (oy, ox) through tap (ky, kx), or -1 in the padding. */
static inline int64_t ref_tap(const ref_geom* g, int64_t oy, int64_t ox, int64_t ky, int64_t kx) {
  const int64_t iy = oy * g->sh - g->ph + ky * g->dh, ix = ox * g->sw - g->pw + kx * g->dw;
  return (iy < 0 || iy >= g->H || ix < 0 || ix >= g->W) ? -1 : iy * g->W + ix;
}

/* Dense weight (O, C, kh, kw) of compressed kept kernels, zero elsewhere. */
static inline void ref_dense_weight(const ref_geom* g, const int32_t* row_ptr, const int32_t* col,
                                    const float* kernels, float* w) {
  const int64_t taps = g->kh * g->kw;
  memset(w, 0, sizeof(float) * (size_t)(g->O * g->C * taps));
  for (int64_t o = 0; o < g->O; ++o)
    for (int64_t j = row_ptr[o]; j < row_ptr[o + 1]; ++j)
      memcpy(w + (o * g->C + col[j]) * taps, kernels + j * taps, sizeof(float) * (size_t)taps);
}

/* y = conv(x, w) + bias in double; mag = sum of |terms| (for the tolerance). */
static inline void ref_conv_forward(const ref_geom* g, const float* x, const float* w, const float* bias,
                                    double* y, double* mag) {
  const int64_t P = g->Ho * g->Wo, taps = g->kh * g->kw;
  for (int64_t n = 0; n < g->N; ++n)
    for (int64_t o = 0; o < g->O; ++o)
      for (int64_t p = 0; p < P; ++p) {
        double s = bias ? bias[o] : 0.0, m = bias ? fabs(bias[o]) : 0.0;
        for (int64_t c = 0; c < g->C; ++c)
          for (int64_t t = 0; t < taps; ++t) {
            const int64_t i = ref_tap(g, p / g->Wo, p % g->Wo, t / g->kw, t % g->kw);
            if (i < 0) continue;
            const double v = (double)x[(n * g->C + c) * g->H * g->W + i] * w[(o * g->C + c) * taps + t];
            s += v, m += fabs(v);
          }
        y[(n * g->O + o) * P + p] = s, mag[(n * g->O + o) * P + p] = m;
      }
}

/* grad_x = conv^T(grad_y, w), and grad_w = sum x * grad_y (O, C, kh, kw), in double with magnitudes. */
static inline void ref_conv_backward(const ref_geom* g, const float* x, const float* gy, const float* w,
                                     double* gx, double* gx_mag, double* gw, double* gw_mag) {
  const int64_t P = g->Ho * g->Wo, taps = g->kh * g->kw, HW = g->H * g->W;
  if (gx) memset(gx, 0, sizeof(double) * (size_t)(g->N * g->C * HW));
  if (gx) memset(gx_mag, 0, sizeof(double) * (size_t)(g->N * g->C * HW));
  if (gw) memset(gw, 0, sizeof(double) * (size_t)(g->O * g->C * taps));
  if (gw) memset(gw_mag, 0, sizeof(double) * (size_t)(g->O * g->C * taps));
  for (int64_t n = 0; n < g->N; ++n)
    for (int64_t o = 0; o < g->O; ++o)
      for (int64_t p = 0; p < P; ++p)
        for (int64_t c = 0; c < g->C; ++c)
          for (int64_t t = 0; t < taps; ++t) {
            const int64_t i = ref_tap(g, p / g->Wo, p % g->Wo, t / g->kw, t % g->kw);
            if (i < 0) continue;
            const double d = gy[(n * g->O + o) * P + p];
            const int64_t xi = (n * g->C + c) * HW + i, wi = (o * g->C + c) * taps + t;
            if (gx) gx[xi] += d * w[wi], gx_mag[xi] += fabs(d * w[wi]);
            if (gw) gw[wi] += d * x[xi], gw_mag[wi] += fabs(d * x[xi]);
          }
}

/* Convolution results: relative 1e-4 of the magnitude of the summed terms (float accumulation, Winograd). */
static inline int ref_conv_close(float got, double want, double mag) {
  return ref_close(got, want, 1e-5, 1e-4 * mag + 1e-30);
}

/* ---- isolation ---------------------------------------------------------------------------------------- */
/* Runs this program again (/proc/self/exe) with argv and the environment plus `assignment` ("NAME=VALUE",
 * ahead of any NAME already there), and waits: returns its exit status, or 128 + the signal that ended it.
 * A fresh process, not fork(): libgomp's thread pool does not survive fork. */
static inline int ref_run_child(char* const* argv, const char* assignment) {
  int n = 0;
  while (environ[n]) ++n;
  char** env = (char**)calloc((size_t)n + 2, sizeof(char*));
  env[0] = (char*)assignment;
  for (int i = 0; i < n; ++i) env[i + 1] = environ[i];
  pid_t pid;
  int status = 0;
  const int rc = posix_spawn(&pid, "/proc/self/exe", NULL, NULL, argv, env);
  free(env);
  if (rc != 0) return 255;
  if (waitpid(pid, &status, 0) < 0) return 255;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* In the child: a hang ends it (SIGALRM) and, outside ASan (which needs the address space), an address
 * space limit keeps a runaway allocation from touching the machine's memory. */
static inline void ref_child_limits(unsigned seconds, uint64_t address_space_bytes) {
  alarm(seconds);
  if (!REF_ASAN) {
    struct rlimit lim = {(rlim_t)address_space_bytes, (rlim_t)address_space_bytes};
    setrlimit(RLIMIT_AS, &lim);
  }
}

static inline int ref_status_valid(fp_status s) {
  return s >= FP_OK && s <= FP_ERR_INTERNAL;
}

#endif /* FASTPRUNE_TESTS_C_REFERENCE_H */
