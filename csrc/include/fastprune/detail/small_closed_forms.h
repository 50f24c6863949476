// Closed forms for 3x3 (and padded 2x2) matrices, shared by the CPU and CUDA kernels: eigenvalues of a
// general 3x3 matrix, the largest eigenvalue of a symmetric 3x3 matrix (spectral norms), the 3x3
// determinant. Float32 in, double inside, float32 out.
//
// Branch-free by construction: both solution branches of the cubic are computed and one is selected,
// every special case (zero matrix, non-finite entries, a root of zero) is a select, and the elementary
// functions are detail/fast_math.h's polynomials. So the CPU kernels can run one matrix per SIMD lane
// under `#pragma omp simd` (csrc/cpu/small_blocks.h), and every matrix gets bitwise the same result
// whatever its position in a batch; CUDA runs the same functions one matrix per thread.
#ifndef FASTPRUNE_DETAIL_SMALL_CLOSED_FORMS_H
#define FASTPRUNE_DETAIL_SMALL_CLOSED_FORMS_H

#include <float.h>
#include <math.h>
#include <stdint.h>

#include "fastprune/detail/fast_math.h"
#include "fastprune/detail/host_device.h"

FP_DETAIL_BEGIN

FP_LANE double sm_det3(const double* a) {
  return a[0] * (a[4] * a[8] - a[5] * a[7]) - a[1] * (a[3] * a[8] - a[5] * a[6]) +
         a[2] * (a[3] * a[7] - a[4] * a[6]);
}

// Eigenvalues of the 3x3 float matrix k (row-major), unordered, as float (re, im): either three real
// values (im all 0), or a real re[0] and a pair re[1] + i im[1], re[2] - i im[2] with re[1] = re[2],
// im[1] = -im[2] > 0 (exactly conjugate). Returns false, and all NaN, on a NaN or Inf entry.
//
// Scaling: K is multiplied by 2^-e so that max |entry| is in [0.5, 1) (exact: entries of 1e30, 1e-30 or
// float denormals neither overflow nor underflow in the products below), and the shifted matrix below
// by a second power of two, for K = s I + (tiny B); results are scaled back exactly.
//
// The cubic: B = 3A - tr(A) I has trace 0 (the factor 3 keeps the shift exact for entries of similar
// magnitude, e.g. small integers), so its characteristic polynomial is the depressed cubic t^3 + p t + q
// with p = (sum of the principal 2x2 minors of B) and q = -det B, and lambda = (t + tr) / 3. Taking p, q
// from B itself avoids the cancellation in c1 - c2^2/3 of A's coefficients, and a multiple of I, a Jordan
// block or a repeated eigenvalue of an integer matrix give exact p, q, hence exact multiple roots.
// Principal minors are invariant under diagonal similarity term by term, so row/column scalings
// (D K D^-1) do not hurt. h = (q/2)^2 + (p/3)^3 <= 0 means three real roots.
//
// Three real roots (Viete): with p = -3 r^2, t = 2 r cos(phi) solves the cubic iff cos(3 phi) = c =
// -q / (2 r^3). With theta = asin(c) / 3 in [-pi/6, pi/6] (so acos(c) / 3 = pi/6 - theta) the roots are
//   r (sqrt3 cos theta + sin theta) >= -2 r sin theta >= r (sin theta - sqrt3 cos theta),
// which needs sin and cos on [-pi/6, pi/6] only and has no cancellation in the outer two (sqrt3 cos theta
// >= 1.5 > |sin theta|). Near a double root asin is ill-conditioned: the inherent sqrt(eps) sensitivity
// of a double eigenvalue, small in double against the float output.
// One real root (Cardano): t1 = u + v with u^3 = -q/2 - sign(q) sqrt(h) (the larger cube, no
// cancellation) and v = -p / (3u); the other two solve t^2 + t1 t + c = 0 with c = -q/t1 = t1^2 + p (the
// sum cancels only when p < 0 and t1^2 ~ -p; there t1 is not small and the quotient is accurate).
FP_LANE bool sm3_eig_unordered(const float* k, float* re, float* im) {
  double a[9], m = 0.0;
  bool finite = true;
  for (int i = 0; i < 9; ++i) {
    a[i] = static_cast<double>(k[i]);
    const double v = fabs(a[i]);
    finite = finite & (v <= DBL_MAX);  // NaN fails every comparison
    m = v > m ? v : m;
  }
  const int64_t e = finite & (m > 0.0) ? fm_exponent(m) : 0;
  const double down = fm_pow2(-e);
  for (int i = 0; i < 9; ++i) a[i] = finite ? a[i] * down : 0.0;  // a bad lane computes on zeros
  const double tr = a[0] + a[4] + a[8];
  double b[9] = {3.0 * a[0] - tr, 3.0 * a[1], 3.0 * a[2], 3.0 * a[3],     3.0 * a[4] - tr,
                 3.0 * a[5],      3.0 * a[6], 3.0 * a[7], 3.0 * a[8] - tr};
  double bmax = 0.0;
  for (int i = 0; i < 9; ++i) bmax = fabs(b[i]) > bmax ? fabs(b[i]) : bmax;
  const int64_t eb = bmax > 0.0 ? fm_exponent(bmax) : 0;
  const double down_b = fm_pow2(-eb);
  for (int i = 0; i < 9; ++i) b[i] *= down_b;
  const double p = (b[0] * b[4] - b[1] * b[3]) + (b[0] * b[8] - b[2] * b[6]) + (b[4] * b[8] - b[5] * b[7]);
  const double q = -sm_det3(b);
  // 108 h = 27 q^2 + 4 p^3, free of the division by 27: exactly 0 at exact double roots.
  const double h108 = 27.0 * q * q + 4.0 * p * p * p;
  const bool trig = h108 <= 0.0;
  // Both branches run on every lane; their square roots are shared (each lane needs one branch's): the
  // first is 1/r = 1/sqrt(-p/3) or sqrt(h), the second the one inside asin or sqrt(|d|).
  const double r2 = -p * (1.0 / 3.0), h = h108 * (1.0 / 108.0);
  const double arg1 = trig ? r2 : h;
  const double y1 = fm_rsqrt(arg1 > 0.0 ? arg1 : 1.0);
  const double root1 = arg1 > 0.0 ? arg1 * y1 : 0.0;

  // Three real roots (used where h <= 0, which implies p <= 0; r = 0 means p = q = 0, a triple root 0).
  const double r = root1;
  double c = -0.5 * q * (y1 * y1 * y1);
  c = r > 0.0 ? (c > 1.0 ? 1.0 : (c < -1.0 ? -1.0 : c)) : 0.0;  // rounding may leave [-1, 1]

  // One real root and a pair (used where h > 0; the guards only keep the other lanes free of 0/0).
  // u = -sign(q) cbrt(x) = -sign(q) x w^2 and 1/u = -sign(q) w with w = x^(-1/3): no division.
  const double x = 0.5 * fabs(q) + root1;
  const double w = fm_rcbrt(x > 0.0 ? x : 1.0);
  const double u = -copysign(x * w * w, q), inv_u = -copysign(w, q);
  const double t1 = u - p * (1.0 / 3.0) * inv_u;
  const double t1d = t1 != 0.0 ? t1 : 1.0;
  const double c2 = (p < 0.0) & (t1 * t1 > -0.5 * p) ? -q / t1d : t1 * t1 + p;
  const double d = 0.25 * t1 * t1 - c2;

  const double root2 = fm_sqrt(trig ? fm_asin_root_arg(c) : fabs(d));
  const double theta = fm_asin_finish(c, root2) * (1.0 / 3.0);
  const double sn = fm_sin_small(theta), cs3 = 1.7320508075688772 * fm_cos_small(theta);
  const double ta = r * (cs3 + sn), tm = -2.0 * r * sn, tb = r * (sn - cs3);

  const double sd = root2;
  const bool pair = d < 0.0;
  const double big = -0.5 * t1 - copysign(sd, t1);  // stable quadratic formula: larger root, then c / it
  const double small = big != 0.0 ? c2 / (big != 0.0 ? big : 1.0) : 0.0;

  const double t[3] = {trig ? ta : t1, trig ? tm : (pair ? -0.5 * t1 : big),
                       trig ? tb : (pair ? -0.5 * t1 : small)};
  const double ti = trig | !pair ? 0.0 : sd;
  // Undo the shift and both scalings (powers of two: exact) and round once to float.
  const double up = fm_pow2(e), up_b = fm_pow2(eb);
  // A bad lane is poisoned by adding NaN (+0.0 elsewhere), not by a select: GCC 12 then folds the NaN
  // into later comparisons as selects of masks of mixed widths, which it cannot vectorise.
  const float poison = finite ? 0.0f : NAN;
  for (int i = 0; i < 3; ++i) re[i] = static_cast<float>((t[i] * up_b + tr) * (1.0 / 3.0) * up) + poison;
  const float pi = static_cast<float>(ti * up_b * (1.0 / 3.0) * up);
  const bool split = pi > 0.0f;  // else a pair whose imaginary part rounds to 0: two reals
  im[0] = poison;
  im[1] = (split ? pi : 0.0f) + poison;
  im[2] = (split ? -pi : 0.0f) + poison;
  return finite;
}

// Puts real x, y in the order of small_eigvals: descending |v|, then descending v. The order is that of
// the integer key 2 bits(|v|) + (v > 0) (non-negative floats order as their bit patterns), one
// comparison: GCC 12 fails to vectorise the equivalent (|y| > |x|) | ((|y| == |x|) & (y > x)).
FP_LANE uint64_t sm_order_key(float v) {
  return 2 * fm_bits(static_cast<double>(fabsf(v))) + (v > 0.0f ? 1u : 0u);  // bits(|v|) < 2^63
}

// Compare-exchange of (value, key) pairs: the one with the larger key first.
FP_LANE void sm_order2(float& x, uint64_t& kx, float& y, uint64_t& ky) {
  const bool swap = ky > kx;
  const float x0 = x;
  const uint64_t k0 = kx;
  x = swap ? y : x, kx = swap ? ky : kx;
  y = swap ? x0 : y, ky = swap ? k0 : ky;
}

// Orders sm3_eig_unordered's values as small_eigvals documents: descending modulus, then descending real
// part, then descending imaginary part, a conjugate pair kept adjacent as a + ib, a - ib (b > 0) and
// placed as one item. Moduli compare exactly: |v| for a real float, a^2 + b^2 in double for a pair
// (squares of floats are exact in double). A function of the values only, not of their input order.
FP_LANE void sm3_eig_order(float* re, float* im) {
  // Three reals: a sorting network of compare-exchanges on (|v|, v).
  float v0 = re[0], v1 = re[1], v2 = re[2];
  uint64_t k0 = sm_order_key(v0), k1 = sm_order_key(v1), k2 = sm_order_key(v2);
  sm_order2(v0, k0, v1, k1);
  sm_order2(v1, k1, v2, k2);
  sm_order2(v0, k0, v1, k1);
  // A real root w and a pair a +- ib: the pair goes first iff a + ib comes before w + 0i.
  const float w = re[0], a = re[1], b = im[1];
  const double mp = static_cast<double>(a) * a + static_cast<double>(b) * b;
  const double mw = static_cast<double>(w) * w;
  const bool first = (mp > mw) | ((mp == mw) & (a >= w));  // a == w: b > 0 decides
  const bool pair = b > 0.0f;
  re[0] = pair ? (first ? a : w) : v0;
  re[1] = pair ? a : v1;
  re[2] = pair ? (first ? w : a) : v2;
  im[0] = pair ? (first ? b : 0.0f) : im[0];
  im[1] = pair ? (first ? -b : b) : im[1];
  im[2] = pair ? (first ? 0.0f : -b) : im[2];
}

// Largest eigenvalue of a symmetric positive semi-definite 3x3 matrix a (row-major, double; only the
// upper triangle is read), by the trigonometric closed form: with q = tr/3, B = (a - q I) / p,
// p = sqrt(|a - q I|_F^2 / 6) and r = det(B) / 2, lambda_max = q + 2p cos(acos(r) / 3)
// = q + p (sqrt3 cos theta + sin theta), theta = asin(r) / 3. The eigenvalue itself is perfectly
// conditioned; the formula loses to ~sqrt(eps) relative only where the two largest eigenvalues
// coincide (r = -1, asin ill-conditioned), far below float resolution.
FP_LANE double sym3_max_eig(const double* a) {
  const double off = a[1] * a[1] + a[2] * a[2] + a[5] * a[5];
  const double q = (a[0] + a[4] + a[8]) * (1.0 / 3.0);
  const double d0 = a[0] - q, d1 = a[4] - q, d2 = a[8] - q;
  const double p2 = d0 * d0 + d1 * d1 + d2 * d2 + 2.0 * off;
  const bool flat = !(p2 > 0.0);  // a = q I
  const double p2_6 = flat ? 1.0 : p2 * (1.0 / 6.0), inv_p = fm_rsqrt(p2_6), p = p2_6 * inv_p;
  const double det =
      d0 * (d1 * d2 - a[5] * a[5]) - a[1] * (a[1] * d2 - a[5] * a[2]) + a[2] * (a[1] * a[5] - d1 * a[2]);
  double r = 0.5 * det * (inv_p * inv_p * inv_p);
  r = r < -1.0 ? -1.0 : (r > 1.0 ? 1.0 : r);  // rounding may leave asin's domain
  const double theta = fm_asin(r) * (1.0 / 3.0);
  const double top = q + p * (1.7320508075688772 * fm_cos_small(theta) + fm_sin_small(theta));
  return flat ? q : top;
}

// |K|_2 of the 3x3 float matrix k: sqrt of the largest eigenvalue of K^T K, formed in double (products
// of floats are exact, no overflow or underflow for any float). NaN on a NaN or Inf entry.
FP_LANE float sm3_spectral_norm(const float* k) {
  double x[9];
  bool finite = true;
  for (int i = 0; i < 9; ++i) {
    x[i] = static_cast<double>(k[i]);
    finite = finite & (fabs(x[i]) <= DBL_MAX);
    x[i] = finite ? x[i] : 0.0;
  }
  double g[9];  // upper triangle of K^T K: g[r][c] = column r . column c
  g[0] = x[0] * x[0] + x[3] * x[3] + x[6] * x[6];
  g[1] = x[0] * x[1] + x[3] * x[4] + x[6] * x[7];
  g[2] = x[0] * x[2] + x[3] * x[5] + x[6] * x[8];
  g[4] = x[1] * x[1] + x[4] * x[4] + x[7] * x[7];
  g[5] = x[1] * x[2] + x[4] * x[5] + x[7] * x[8];
  g[8] = x[2] * x[2] + x[5] * x[5] + x[8] * x[8];
  g[3] = g[1], g[6] = g[2], g[7] = g[5];
  const double top = sym3_max_eig(g);
  return finite ? static_cast<float>(fm_sqrt(top > 0.0 ? top : 0.0)) : NAN;
}

// det of the 3x3 float matrix k in double, unscaled: every 2x2 product of floats is exact in double and
// no product of three floats leaves double's normal range, so this is bitwise what the power-of-two
// scaled evaluation gives. NaN on a NaN or Inf entry.
FP_LANE double sm3_det(const float* k) {
  double x[9];
  bool finite = true;
  for (int i = 0; i < 9; ++i) {
    x[i] = static_cast<double>(k[i]);
    finite = finite & (fabs(x[i]) <= DBL_MAX);
  }
  const double d = sm_det3(x);
  return finite ? d : NAN;
}

FP_DETAIL_END

#endif  // FASTPRUNE_DETAIL_SMALL_CLOSED_FORMS_H
