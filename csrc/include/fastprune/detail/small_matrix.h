// Eigenvalues, determinant, singular values and spectral norm of one small real square matrix K (n x n,
// n = 1..7, float32, contiguous row-major: element (r, c) at k[r * n + c]), shared by the CPU and CUDA
// kernels. Computed in double in fixed-size local arrays, rounded to float once at the end.
//
// Scaling: every routine first multiplies K by 2^-e so that max |entry| is in [0.5, 1). A power of two is
// exact, so entries of 1e30, 1e-30 or float denormals neither overflow nor underflow in the products below;
// results are scaled back by 2^e (2^(n e) for the determinant). Non-finite input (a NaN or Inf entry):
// every output is NaN (status kSmallNonFinite). Outputs overflow to Inf only where the exact value would.
#ifndef FASTPRUNE_DETAIL_SMALL_MATRIX_H
#define FASTPRUNE_DETAIL_SMALL_MATRIX_H

#include <float.h>
#include <math.h>
#include <stdint.h>

#include "fastprune/detail/host_device.h"
#include "fastprune/detail/small_closed_forms.h"

FP_DETAIL_BEGIN

constexpr int kSmallMaxN = 7;
// Status codes of small_eigvals / small_svdvals.
constexpr int kSmallOk = 0;
constexpr int kSmallBadSize = 1;        // n outside 1..kSmallMaxN: nothing is written
constexpr int kSmallNonFinite = 2;      // NaN or Inf entry: every output is NaN
constexpr int kSmallNoConvergence = 3;  // iteration cap reached: outputs are finite but may be inaccurate

// Copies k into a scaled by 2^-e (max |a| in [0.5, 1), or a = 0). Returns false on a NaN or Inf entry.
FP_HOST_DEVICE bool sm_load_scaled(const float* k, int n, double* a, int* e) {
  double m = 0.0;
  for (int i = 0; i < n * n; ++i) {
    double v = fabs(static_cast<double>(k[i]));
    if (!(v <= DBL_MAX)) return false;  // NaN fails every comparison
    m = v > m ? v : m;
  }
  *e = 0;
  if (m > 0.0) frexp(m, e);
  double scale = ldexp(1.0, -*e);  // |e| <= 149, so the products below are exact
  for (int i = 0; i < n * n; ++i) a[i] = static_cast<double>(k[i]) * scale;
  return true;
}

// Eigenvalues of [[a, b], [c, d]] (float entries scaled by a power of two) are p +- sqrt(q^2 + bc) with
// p = (a + d)/2, q = (a - d)/2: no cancellation in the discriminant when a ~ d (unlike tr^2 - 4 det). Real
// case: the larger root adds terms of equal sign; the smaller is det / larger, as p - sign(p) sqrt(disc)
// would cancel. ad - bc is exact products rounded once, so the small root keeps relative accuracy.
FP_HOST_DEVICE void sm_eig2(double a, double b, double c, double d, double* wr, double* wi) {
  double p = 0.5 * (a + d), q = 0.5 * (a - d);
  double disc = q * q + b * c;
  if (disc >= 0.0) {
    double z = p + copysign(sqrt(disc), p);
    wr[0] = z, wr[1] = z != 0.0 ? (a * d - b * c) / z : 0.0;
    wi[0] = wi[1] = 0.0;
  } else {
    wr[0] = wr[1] = p;
    wi[0] = sqrt(-disc), wi[1] = -wi[0];
  }
}

FP_HOST_DEVICE void sm_swap(double& x, double& y) {
  double t = x;
  x = y, y = t;
}

// Balancing (EISPACK balanc). First, permutation similarities: a row with no off-diagonal entry in columns
// low..high (pass 0), or a column with none in rows low..high (pass 1), isolates its diagonal entry as an
// exact eigenvalue; it moves to the bottom (top) and the active block low..high shrinks. The result is block
// upper triangular, which Hessenberg reduction and QR preserve, so sparse or triangular-like matrices keep
// exact eigenvalues instead of the eps^(1/k) scatter of a k x k defective block. Then a diagonal similarity
// by powers of two (exact) evens out active row and column norms, so that the QR iteration's absolute
// errors, of order eps |H|, are small against the eigenvalues of badly scaled matrices.
FP_HOST_DEVICE void sm_balance(double (*a)[kSmallMaxN], int n) {
  int low = 0, high = n - 1;
  for (int pass = 0; pass < 2; ++pass) {
    for (int j = pass ? low : high; low <= j && j <= high; j += pass ? 1 : -1) {
      bool isolated = true;
      for (int i = low; i <= high; ++i) isolated = isolated && (i == j || (pass ? a[i][j] : a[j][i]) == 0.0);
      if (!isolated) continue;
      int to = pass ? low++ : high--;
      for (int k = 0; k < n; ++k) sm_swap(a[j][k], a[to][k]);
      for (int k = 0; k < n; ++k) sm_swap(a[k][j], a[k][to]);
      j = pass ? low - 1 : high + 1;  // restart the search on the smaller block
    }
  }
  bool done = false;
  for (int sweep = 0; sweep < 64 && !done; ++sweep) {  // the cap only guards termination (already certain)
    done = true;
    for (int i = low; i <= high; ++i) {
      double c = 0.0, r = 0.0;
      for (int j = low; j <= high; ++j) {
        if (j == i) continue;
        c += fabs(a[j][i]);
        r += fabs(a[i][j]);
      }
      if (c == 0.0 || r == 0.0) continue;
      double f = 1.0, sum = c + r;
      while (c < 0.5 * r) c *= 4.0, f *= 2.0;
      while (c > 2.0 * r) c *= 0.25, f *= 0.5;
      if ((c + r) / f < 0.95 * sum) {
        done = false;
        for (int j = 0; j < n; ++j) a[i][j] /= f;
        for (int j = 0; j < n; ++j) a[j][i] *= f;
      }
    }
  }
}

// Householder reduction to upper Hessenberg form: for column k, H = I - v v^T / (sigma - alpha x1) maps
// x = a[k+1.., k] to alpha e1 with alpha = -sign(x1) |x| (so v = x - alpha e1 has no cancellation); applied
// from both sides it is an orthogonal similarity.
FP_HOST_DEVICE void sm_hessenberg(double (*a)[kSmallMaxN], int n) {
  for (int k = 0; k + 2 < n; ++k) {
    double scale = 0.0;
    for (int i = k + 1; i < n; ++i) scale += fabs(a[i][k]);
    if (scale == 0.0) continue;
    double v[kSmallMaxN], sigma = 0.0;
    for (int i = k + 1; i < n; ++i) {
      v[i] = a[i][k] / scale;
      sigma += v[i] * v[i];
    }
    double alpha = -copysign(sqrt(sigma), v[k + 1]);
    double beta = 1.0 / (sigma - alpha * v[k + 1]);
    v[k + 1] -= alpha;
    for (int j = k + 1; j < n; ++j) {  // from the left: rows k+1..n-1
      double f = 0.0;
      for (int i = k + 1; i < n; ++i) f += v[i] * a[i][j];
      f *= beta;
      for (int i = k + 1; i < n; ++i) a[i][j] -= f * v[i];
    }
    for (int i = 0; i < n; ++i) {  // from the right: columns k+1..n-1
      double f = 0.0;
      for (int j = k + 1; j < n; ++j) f += a[i][j] * v[j];
      f *= beta;
      for (int j = k + 1; j < n; ++j) a[i][j] -= f * v[j];
    }
    a[k + 1][k] = alpha * scale;
    for (int i = k + 2; i < n; ++i) a[i][k] = 0.0;
  }
}

// Francis double-shift QR iteration on an upper Hessenberg matrix (EISPACK hqr, as in Numerical Recipes):
// implicit double steps with the eigenvalues of the trailing 2x2 block as shifts, deflating 1x1 and 2x2
// blocks from the bottom when a subdiagonal entry falls below eps times its diagonal neighbours. Every tenth
// iteration on one block uses an exceptional (ad hoc) shift to break cycles such as permutation matrices.
// After 30 n iterations in all it gives up (returns false) and reports the remaining block's diagonal.
FP_HOST_DEVICE bool sm_hqr(double (*a)[kSmallMaxN], int n, double* wr, double* wi) {
  double anorm = 0.0;
  for (int i = 0; i < n; ++i)
    for (int j = i > 0 ? i - 1 : 0; j < n; ++j) anorm += fabs(a[i][j]);
  double t = 0.0;  // sum of exceptional shifts already subtracted from the diagonal
  int nn = n - 1, its = 0, total = 0;
  while (nn >= 0) {
    int l = nn;
    for (; l > 0; --l) {
      double s = fabs(a[l - 1][l - 1]) + fabs(a[l][l]);
      if (fabs(a[l][l - 1]) <= DBL_EPSILON * (s == 0.0 ? anorm : s)) {
        a[l][l - 1] = 0.0;
        break;
      }
    }
    double x = a[nn][nn];
    if (l == nn) {  // 1x1 block deflated
      wr[nn] = x + t, wi[nn] = 0.0;
      nn -= 1, its = 0;
      continue;
    }
    double y = a[nn - 1][nn - 1], w = a[nn][nn - 1] * a[nn - 1][nn];
    if (l == nn - 1) {
      // 2x2 block deflated: eigenvalues x + p +- sqrt(p^2 + w), p = (y - x)/2, taken relative to x. Unlike
      // sm_eig2, no det / larger root: ad - bc of computed entries has an absolute error eps |ad|, huge
      // against the tiny roots of a nilpotent-like block.
      double p = 0.5 * (y - x), q = p * p + w, z = sqrt(fabs(q));
      x += t;
      if (q >= 0.0) {
        z = p + copysign(z, p);
        wr[nn - 1] = x + z;
        wr[nn] = z != 0.0 ? x - w / z : x + z;
        wi[nn - 1] = wi[nn] = 0.0;
      } else {
        wr[nn - 1] = wr[nn] = x + p;
        wi[nn - 1] = z, wi[nn] = -z;
      }
      nn -= 2, its = 0;
      continue;
    }
    if (++total > 30 * n) {
      for (int i = 0; i <= nn; ++i) wr[i] = a[i][i] + t, wi[i] = 0.0;
      return false;
    }
    if (its > 0 && its % 10 == 0) {
      t += x;
      for (int i = 0; i <= nn; ++i) a[i][i] -= x;
      double s = fabs(a[nn][nn - 1]) + fabs(a[nn - 1][nn - 2]);
      x = y = 0.75 * s;
      w = -0.4375 * s * s;
    }
    ++its;
    // Find the start m of the bulge: the first column of (H - s1)(H - s2) is (p, q, r, 0, ...) at row m;
    // start higher than l when a[m][m-1] is small enough that the step there decouples.
    int m = nn - 2;
    double p, q, r, z;
    for (;; --m) {
      z = a[m][m];
      r = x - z;
      double s = y - z;
      p = (r * s - w) / a[m + 1][m] + a[m][m + 1];
      q = a[m + 1][m + 1] - z - r - s;
      r = a[m + 2][m + 1];
      s = fabs(p) + fabs(q) + fabs(r);
      p /= s, q /= s, r /= s;
      if (m == l) break;
      double u = fabs(a[m][m - 1]) * (fabs(q) + fabs(r));
      double v = fabs(p) * (fabs(a[m - 1][m - 1]) + fabs(z) + fabs(a[m + 1][m + 1]));
      if (u <= DBL_EPSILON * v) break;
    }
    for (int i = m; i < nn - 1; ++i) {
      a[i + 2][i] = 0.0;
      if (i != m) a[i + 2][i - 1] = 0.0;
    }
    // Chase the bulge with 3x3 Householder reflectors.
    for (int k = m; k < nn; ++k) {
      if (k != m) {
        p = a[k][k - 1];
        q = a[k + 1][k - 1];
        r = k + 1 != nn ? a[k + 2][k - 1] : 0.0;
        x = fabs(p) + fabs(q) + fabs(r);
        if (x != 0.0) p /= x, q /= x, r /= x;
      }
      double s = copysign(sqrt(p * p + q * q + r * r), p);
      if (s == 0.0) continue;
      if (k == m) {
        if (l != m) a[k][k - 1] = -a[k][k - 1];
      } else {
        a[k][k - 1] = -s * x;
      }
      p += s;
      x = p / s, y = q / s, z = r / s;
      q /= p, r /= p;
      for (int j = k; j <= nn; ++j) {
        p = a[k][j] + q * a[k + 1][j];
        if (k + 1 != nn) {
          p += r * a[k + 2][j];
          a[k + 2][j] -= p * z;
        }
        a[k + 1][j] -= p * y;
        a[k][j] -= p * x;
      }
      int imax = nn < k + 3 ? nn : k + 3;
      for (int i = l; i <= imax; ++i) {
        p = x * a[i][k] + y * a[i][k + 1];
        if (k + 1 != nn) {
          p += z * a[i][k + 2];
          a[i][k + 2] -= p * r;
        }
        a[i][k + 1] -= p * q;
        a[i][k] -= p;
      }
    }
  }
  return true;
}

// Order of eigenvalues: descending modulus, then descending real part, then descending imaginary part.
// Compared on the rounded float values, so the order is a function of what is written.
FP_HOST_DEVICE bool sm_eig_before(float ar, float ai, float br, float bi) {
  double ma = static_cast<double>(ar) * ar + static_cast<double>(ai) * ai;
  double mb = static_cast<double>(br) * br + static_cast<double>(bi) * bi;
  if (ma != mb) return ma > mb;
  if (ar != br) return ar > br;
  return ai > bi;
}

// Eigenvalues of K (complex in general) into re[0..n), im[0..n), ordered as sm_eig_before says, except that
// each conjugate pair is kept adjacent and sorted as one item, a + ib then a - ib (b > 0): a tie in modulus
// and real part (a pair with tiny b next to a real a) never splits a pair. Pairs are exactly conjugate
// (equal re, opposite im). n = 1, 2: closed forms (sm_eig2); n = 3: the branch-free closed form of
// detail/small_closed_forms.h (sm3_eig_unordered, sm3_eig_order), the very code the CPU runs per SIMD lane;
// n = 4..7: balancing, Householder Hessenberg reduction, Francis QR (sm_hqr). Returns kSmallOk, or
// kSmallBadSize, kSmallNonFinite (all NaN) or kSmallNoConvergence (finite, possibly inaccurate values).
FP_HOST_DEVICE int small_eigvals(const float* k, int n, float* re, float* im) {
  if (n < 1 || n > kSmallMaxN) return kSmallBadSize;
  if (n == 3) {
    const bool finite = sm3_eig_unordered(k, re, im);
    sm3_eig_order(re, im);
    return finite ? kSmallOk : kSmallNonFinite;
  }
  double b[kSmallMaxN * kSmallMaxN], wr[kSmallMaxN], wi[kSmallMaxN];
  int e;
  if (!sm_load_scaled(k, n, b, &e)) {
    for (int i = 0; i < n; ++i) re[i] = im[i] = NAN;
    return kSmallNonFinite;
  }
  int status = kSmallOk;
  if (n == 1) {
    wr[0] = b[0], wi[0] = 0.0;
  } else if (n == 2) {
    sm_eig2(b[0], b[1], b[2], b[3], wr, wi);
  } else {
    double a[kSmallMaxN][kSmallMaxN];
    for (int i = 0; i < n * n; ++i) a[i / n][i % n] = b[i];
    sm_balance(a, n);
    sm_hessenberg(a, n);
    if (!sm_hqr(a, n, wr, wi)) status = kSmallNoConvergence;
  }
  // Scale back (exact) and round once to float (so pairs stay exactly conjugate). Insertion-sort the real
  // eigenvalues and upper halves a + ib of pairs (every solver emits wi = +b, -b, and rounding keeps the
  // set conjugate-closed), then write each a + ib followed by its a - ib.
  double scale = ldexp(1.0, e);
  float ur[kSmallMaxN], ui[kSmallMaxN];
  int units = 0;
  for (int i = 0; i < n; ++i) {
    float r = static_cast<float>(wr[i] * scale), m = static_cast<float>(wi[i] * scale);
    if (m < 0.0f) continue;
    int j = units++;
    for (; j > 0 && sm_eig_before(r, m, ur[j - 1], ui[j - 1]); --j) ur[j] = ur[j - 1], ui[j] = ui[j - 1];
    ur[j] = r, ui[j] = m;
  }
  for (int u = 0, i = 0; u < units; ++u) {
    re[i] = ur[u], im[i++] = ui[u];
    if (ui[u] > 0.0f) re[i] = ur[u], im[i++] = -ui[u];
  }
  return status;
}

// det K: closed forms for n <= 3 (each 2x2 product of scaled float entries is exact in double), Gaussian
// elimination with partial pivoting for n >= 4. NaN for non-finite input or n outside 1..7.
FP_HOST_DEVICE float small_det(const float* k, int n) {
  if (n < 1 || n > kSmallMaxN) return NAN;
  double a[kSmallMaxN * kSmallMaxN];
  int e;
  if (!sm_load_scaled(k, n, a, &e)) return NAN;
  double d;
  if (n == 1) {
    d = a[0];
  } else if (n == 2) {
    d = a[0] * a[3] - a[1] * a[2];
  } else if (n == 3) {
    d = sm_det3(a);
  } else {
    d = 1.0;
    for (int c = 0; c < n && d != 0.0; ++c) {
      int piv = c;
      for (int r = c + 1; r < n; ++r)
        if (fabs(a[r * n + c]) > fabs(a[piv * n + c])) piv = r;
      if (piv != c) {
        for (int j = c; j < n; ++j) sm_swap(a[c * n + j], a[piv * n + j]);
        d = -d;
      }
      double pv = a[c * n + c];
      d *= pv;
      if (pv == 0.0) break;
      for (int r = c + 1; r < n; ++r) {
        double f = a[r * n + c] / pv;
        for (int j = c + 1; j < n; ++j) a[r * n + j] -= f * a[c * n + j];
      }
    }
  }
  return static_cast<float>(ldexp(d, n * e));  // overflows to +-Inf only when the float result would
}

// Singular values of K, descending, by one-sided Jacobi (Hestenes): rotate column pairs (i, j) until every
// pair is orthogonal to n eps (K V = U S), then s_j = |column j|. eig(K^T K) would square the condition
// number and lose small s_j to absolute errors eps s_max^2; pairwise column rotations keep small singular
// values relatively accurate (Demmel & Veselic 1992). With alpha = |c_i|^2, beta = |c_j|^2,
// gamma = c_i . c_j, zeta = (beta - alpha) / (2 gamma), the tangent t = sign(zeta) / (|zeta| +
// sqrt(1 + zeta^2)) is the smaller root of t^2 + 2 zeta t - 1 = 0. Status as for small_eigvals.
FP_HOST_DEVICE int small_svdvals(const float* k, int n, float* s) {
  if (n < 1 || n > kSmallMaxN) return kSmallBadSize;
  double a[kSmallMaxN * kSmallMaxN];
  int e;
  if (!sm_load_scaled(k, n, a, &e)) {
    for (int i = 0; i < n; ++i) s[i] = NAN;
    return kSmallNonFinite;
  }
  const double tol = n * DBL_EPSILON;
  bool converged = n == 1;
  for (int sweep = 0; sweep < 30 && !converged; ++sweep) {
    converged = true;
    for (int i = 0; i + 1 < n; ++i) {
      for (int j = i + 1; j < n; ++j) {
        double alpha = 0.0, beta = 0.0, gamma = 0.0;
        for (int r = 0; r < n; ++r) {
          double x = a[r * n + i], y = a[r * n + j];
          alpha += x * x, beta += y * y, gamma += x * y;
        }
        if (alpha == 0.0 || beta == 0.0 || !(fabs(gamma) > tol * sqrt(alpha) * sqrt(beta))) continue;
        converged = false;
        double zeta = (beta - alpha) / (2.0 * gamma);
        double t = copysign(1.0, zeta) / (fabs(zeta) + hypot(1.0, zeta));
        double c = 1.0 / sqrt(1.0 + t * t), sn = c * t, ni = 0.0, nj = 0.0;
        for (int r = 0; r < n; ++r) {
          double x = a[r * n + i], y = a[r * n + j];
          a[r * n + i] = c * x - sn * y;
          a[r * n + j] = sn * x + c * y;
          ni += a[r * n + i] * a[r * n + i], nj += a[r * n + j] * a[r * n + j];
        }
        // Nearly parallel columns (rank deficiency): the shrunk column is now rounding noise of size eps
        // |smaller old column|, parallel to the other one through the rounding of sn, which further rotations
        // only shrink by eps per sweep (until underflow). Its true norm is below the noise: make it zero.
        double floor2 = tol * tol * (alpha < beta ? alpha : beta);
        for (int r = 0; r < n; ++r) {
          if (ni <= floor2) a[r * n + i] = 0.0;
          if (nj <= floor2) a[r * n + j] = 0.0;
        }
      }
    }
  }
  double scale = ldexp(1.0, e);
  for (int i = 0; i < n; ++i) {
    double norm2 = 0.0;
    for (int r = 0; r < n; ++r) norm2 += a[r * n + i] * a[r * n + i];
    float v = static_cast<float>(sqrt(norm2) * scale);
    int j = i;
    for (; j > 0 && v > s[j - 1]; --j) s[j] = s[j - 1];
    s[j] = v;
  }
  return converged ? kSmallOk : kSmallNoConvergence;
}

// Spectral norm |K|_2 = largest singular value (NaN for non-finite input or n outside 1..7).
// n <= 3: sqrt of the largest eigenvalue of K^T K in closed form (double holds the squares of any
// float without overflow or underflow; sm3_spectral_norm for n = 3); larger n: the Jacobi SVD.
FP_HOST_DEVICE float spectral_norm(const float* k, int n) {
  if (n == 1) return fabsf(k[0]);
  if (n == 3) return sm3_spectral_norm(k);
  if (n == 2) {
    double g[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0};  // K^T K, padded to 3x3
    for (int r = 0; r < n; ++r)
      for (int c = 0; c < n; ++c)
        for (int i = 0; i < n; ++i) g[r * 3 + c] += (double)k[i * n + r] * k[i * n + c];
    const double top = sym3_max_eig(g);
    // Non-finite input gives NaN, as small_svdvals does (the clamp below used to turn it into 0: C ABI fuzz).
    const double trace = g[0] + g[4];
    return trace - trace == 0.0 ? (float)fm_sqrt(top > 0.0 ? top : 0.0) : NAN;
  }
  float s[kSmallMaxN];
  return small_svdvals(k, n, s) == kSmallBadSize ? NAN : s[0];
}

struct EigExtremes {
  float min_abs;     // min |lambda|
  float min_abs_re;  // min |Re lambda|
  float max_abs;     // max |lambda| (spectral radius)
  float max_abs_re;  // max |Re lambda|
};

// Extremes over the eigenvalues re[i] + i im[i], i < n (n >= 1), as written by small_eigvals. The modulus is
// taken in double (no overflow for float parts). Any NaN eigenvalue makes every field NaN.
FP_HOST_DEVICE EigExtremes eig_extremes(const float* re, const float* im, int n) {
  EigExtremes x = {INFINITY, INFINITY, 0.0f, 0.0f};
  bool nan = false;
  for (int i = 0; i < n; ++i) {
    nan = nan | (re[i] != re[i]) | (im[i] != im[i]);
    const double r = re[i], m = im[i], m2 = r * r + m * m;
    const float mod = static_cast<float>(fm_sqrt(m2 == m2 ? m2 : 0.0)), ar = fabsf(re[i]);
    x.min_abs = mod < x.min_abs ? mod : x.min_abs;
    x.max_abs = mod > x.max_abs ? mod : x.max_abs;
    x.min_abs_re = ar < x.min_abs_re ? ar : x.min_abs_re;
    x.max_abs_re = ar > x.max_abs_re ? ar : x.max_abs_re;
  }
  x.min_abs = nan ? NAN : x.min_abs, x.min_abs_re = nan ? NAN : x.min_abs_re;
  x.max_abs = nan ? NAN : x.max_abs, x.max_abs_re = nan ? NAN : x.max_abs_re;
  return x;
}

FP_DETAIL_END

#endif  // FASTPRUNE_DETAIL_SMALL_MATRIX_H
