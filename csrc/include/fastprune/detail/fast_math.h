// Branch-free double-precision 1/sqrt, sqrt, 1/cbrt, asin and sin/cos of small angles, shared by the CPU and
// CUDA kernels (detail/small_closed_forms.h).
//
// Why not libm: the CPU kernels run the 3x3 closed forms on blocks of matrices under `#pragma omp simd`,
// and GCC vectorises no libm call without -ffast-math (not even sqrt, which may set errno unless
// -fno-math-errno is on the command line: GCC 12 ignores it in `#pragma GCC optimize`). These functions are
// straight-line arithmetic, selects and integer bit operations, so a loop over lanes becomes vector code;
// CUDA runs the same arithmetic one lane per thread.
//
// Accuracy (max error over the stated domain, measured on 4e6 random arguments against x87 long double
// libm, with and without FMA contraction; ulp = ulp of the double result): fm_rsqrt 2.2 ulp, fm_sqrt
// 0.85 ulp, fm_rcbrt 1.3 ulp (x fm_rcbrt(x)^2 as cbrt: 3.6 ulp), fm_asin 2.2 ulp, fm_sin_small 0.65 ulp,
// fm_cos_small 1.13 ulp. All far below what float32 results can show; none is correctly rounded, so results
// may differ from libm's in the last bit of the double before the final rounding to float.
#ifndef FASTPRUNE_DETAIL_FAST_MATH_H
#define FASTPRUNE_DETAIL_FAST_MATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "fastprune/detail/host_device.h"

FP_DETAIL_BEGIN

FP_LANE uint64_t fm_bits(double x) {
#if defined(__CUDA_ARCH__)
  return static_cast<uint64_t>(__double_as_longlong(x));
#else
  uint64_t u;
  memcpy(&u, &x, sizeof u);
  return u;
#endif
}

FP_LANE double fm_from_bits(uint64_t u) {
#if defined(__CUDA_ARCH__)
  return __longlong_as_double(static_cast<long long>(u));
#else
  double x;
  memcpy(&x, &u, sizeof x);
  return x;
#endif
}

// 2^e, exact, for -1022 <= e <= 1023 (built from the exponent field; replaces ldexp(1.0, e)).
FP_LANE double fm_pow2(int64_t e) {
  return fm_from_bits(static_cast<uint64_t>(e + 1023) << 52);
}

// frexp's exponent of a positive normal double m: m = f 2^e with f in [0.5, 1). Every float, denormals
// included, is a normal double, so this is frexp's exponent of any nonzero finite float.
FP_LANE int64_t fm_exponent(double m) {
  return static_cast<int64_t>(fm_bits(m) >> 52) - 1022;
}

// 1/sqrt(x) for finite x > 0. Guess from the halved exponent (the "magic constant", relative error
// <= 3.5%), then four Newton steps y <- y (3 - x y^2) / 2; the error squares each step (2e-3, 5e-6,
// 3e-11, then rounding). x below 2^-960 is scaled by 2^1000 first (and the result by 2^500), so the
// guess is never built from a denormal's bits. Max error 2.2 ulp. Cheaper than a division where the
// caller needs 1/sqrt anyway (x * fm_rsqrt(x) is sqrt(x) to 2 ulp).
FP_LANE double fm_rsqrt(double x) {
  const bool tiny = x < 0x1p-960;
  const double xs = x * (tiny ? 0x1p1000 : 1.0);
  const double half = 0.5 * xs;
  double y = fm_from_bits(0x5FE6EB50C7B537A9ull - (fm_bits(xs) >> 1));
  for (int i = 0; i < 4; ++i) y = y * (1.5 - half * y * y);
  return y * (tiny ? 0x1p500 : 1.0);
}

// sqrt(x) for finite x >= 0 (0 gives 0): three of fm_rsqrt's Newton steps (error 3e-11), s = x y, then
// one Heron correction s + y (x - s^2) / 2, which squares the error once more. Max error 0.85 ulp.
FP_LANE double fm_sqrt(double x) {
  const bool tiny = x < 0x1p-960;
  const double xs = x * (tiny ? 0x1p1000 : 1.0);
  double y = fm_from_bits(0x5FE6EB50C7B537A9ull - (fm_bits(xs) >> 1));
  for (int i = 0; i < 3; ++i) y = y * (1.5 - 0.5 * xs * y * y);
  double s = xs * y;
  s = s + 0.5 * y * (xs - s * s);
  s = s * (tiny ? 0x1p-500 : 1.0);
  return x > 0.0 ? s : 0.0;
}

// u (< 2^63) as a double, rounded once: the two 32-bit halves placed in the mantissas of 2^84 and 2^52.
// Integer and/or/shift only: a conversion instruction between 64-bit integers and doubles exists from
// AVX-512DQ on, and a SIMD loop with a static_cast between them stays scalar on AVX2 (and SSE2, NEON).
FP_LANE double fm_u64_to_double(uint64_t u) {
  const double high = fm_from_bits((u >> 32) | 0x4530000000000000ull) - 0x1p84;  // (u >> 32) 2^32, exact
  const double low = fm_from_bits((u & 0xFFFFFFFFull) | 0x4330000000000000ull) - 0x1p52;
  return high + low;
}

// t (|t| < 2^62) rounded to an integer, in the same way: each half through the 1.5 2^52 rounding constant
// (for |v| < 2^51, v + 1.5 2^52 holds round(v) in its low mantissa bits).
FP_LANE int64_t fm_round_to_int64(double t) {
  const double magic = 0x1.8p52;
  const double high = (t * 0x1p-32 + magic) - magic;  // round(t / 2^32)
  const double low = t - high * 0x1p32;               // exact, |low| <= 2^31
  const int64_t high_i = static_cast<int64_t>(fm_bits(high + magic) - fm_bits(magic));
  const int64_t low_i = static_cast<int64_t>(fm_bits(low + magic) - fm_bits(magic));
  return high_i * 0x100000000LL + low_i;
}

// x^(-1/3) for finite x > 0, without a division. Guess: minus a third of x's bit pattern plus a constant
// (the exponent divided by -3, relative error <= 3.5%; the division by 3 goes through double, which
// vectorises where 64-bit integer division does not, converted by fm_u64_to_double/fm_round_to_int64),
// then four Newton steps y <- y + y (1 - x y^3) / 3 (error 2e-3, 1e-5, 3e-10, then rounding). Max error
// 1.3 ulp; cbrt(x) = x y^2 to 3.6 ulp, and 1/cbrt(x) = y. x below 2^-960 is scaled by 2^999 first (and the
// result by 2^333).
FP_LANE double fm_rcbrt(double x) {
  const bool tiny = x < 0x1p-960;
  const double xs = x * (tiny ? 0x1p999 : 1.0);
  const double third = fm_u64_to_double(fm_bits(xs)) * (1.0 / 3.0);
  double y = fm_from_bits(static_cast<uint64_t>(0x553EF0FF289DD794LL - fm_round_to_int64(third)));
  for (int i = 0; i < 4; ++i) y = y + y * (1.0 - xs * y * y * y) * (1.0 / 3.0);
  return y * (tiny ? 0x1p333 : 1.0);
}

// asin(x) for |x| <= 1. |x| <= 1/2: asin(x) = x + x z g(z), z = x^2 in [0, 1/4]; |x| > 1/2:
// asin(|x|) = pi/2 - 2 asin(s), s = sqrt((1 - |x|) / 2) in [0, 1/2] (1 - |x| is exact), so one
// polynomial g on [0, 1/4] serves both (selected, not branched). g: degree-12 interpolant of
// (asin(sqrt z) - sqrt z) / z^(3/2) at Chebyshev nodes (fitted in 50-digit arithmetic), relative error
// of x + x z g(z) below 1 ulp. pi/2 is split into hi + lo so the subtraction keeps full precision.
// Max error 2.2 ulp (near |x| = 1/2, where the rounding of s and of pi/2 - 2 r add up).
// fm_asin in two halves, so that a caller can share the square root with other work:
// fm_asin_finish(x, sqrt(fm_asin_root_arg(x))) = fm_asin(x).
FP_LANE double fm_asin_root_arg(double x) {
  return 0.5 * (1.0 - fabs(x));
}

FP_LANE double fm_asin_finish(double x, double root) {
  const double a = fabs(x);
  const bool big = a > 0.5;
  const double z_big = 0.5 * (1.0 - a), z_small = a * a;
  const double z = big ? z_big : z_small;
  const double s = big ? root : a;
  double g = 0.028757851367421566;
  g = g * z - 0.014851887071247204;
  g = g * z + 0.01740087944269402;
  g = g * z + 0.005457506718640358;
  g = g * z + 0.01032281435018578;
  g = g * z + 0.011479177415184906;
  g = g * z + 0.013971212973552933;
  g = g * z + 0.017352392720869973;
  g = g * z + 0.02237217294214989;
  g = g * z + 0.030381944138531247;
  g = g * z + 0.04464285714635543;
  g = g * z + 0.07499999999998433;
  g = g * z + 0.16666666666666669;
  const double r = s + s * z * g;
  const double pio2_hi = 1.5707963267948966, pio2_lo = 6.123233995736766e-17;
  const double y_big = (pio2_hi - 2.0 * r) + pio2_lo;
  const double y = big ? y_big : r;
  return copysign(y, x);
}

FP_LANE double fm_asin(double x) {
  return fm_asin_finish(x, fm_sqrt(fm_asin_root_arg(x)));
}

// sin(t) for |t| <= pi/6: t + t^3 S(t^2), S a degree-5 Chebyshev interpolant (max error 1 ulp; degree 4
// would give 1.6 ulp); measured 0.65 ulp.
FP_LANE double fm_sin_small(double t) {
  const double z = t * t;
  double s = 1.5996267155772674e-10;
  s = s * z - 2.5051914884745128e-08;
  s = s * z + 2.755731894899418e-06;
  s = s * z - 0.0001984126984109317;
  s = s * z + 0.008333333333333292;
  s = s * z - 0.16666666666666666;
  return t + t * z * s;
}

// cos(t) for |t| <= pi/6: 1 - t^2/2 + t^4 C(t^2), C a degree-4 Chebyshev interpolant (max error 1.13 ulp).
FP_LANE double fm_cos_small(double t) {
  const double z = t * t;
  double c = 2.0798283499113305e-09;
  c = c * z - 2.7557131088269104e-07;
  c = c * z + 2.480158711742733e-05;
  c = c * z - 0.0013888888888825787;
  c = c * z + 0.04166666666666663;
  return (1.0 - 0.5 * z) + z * z * c;
}

FP_DETAIL_END

#endif  // FASTPRUNE_DETAIL_FAST_MATH_H
