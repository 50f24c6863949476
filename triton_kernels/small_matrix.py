"""Eigenvalues, singular values and determinants of small (n <= 3) real matrices, and the per-kernel
pruning criteria of a whole network in one launch (fp_small_eigvals / fp_small_svdvals / fp_small_det /
fp_kernel_scores for 1x1, 2x2 and 3x3 kernels).

Closed forms, vectorised across matrices: a program loads the n*n entries of BLOCK matrices as separate
[BLOCK] float64 vectors and follows csrc/include/fastprune/detail/small_matrix.h (sm_eig2, sm_eig3,
small_det) and kernel_criteria.h. Each matrix is first scaled by 2^-e (max |entry| in [0.5, 1); a power
of two is exact), so entries of 1e-30 or 1e30 neither underflow nor overflow; results are scaled back.
Only core tl math is used (sqrt, exp, log, cos): libdevice (acos, cbrt) does not run under the
interpreter, so acos is a series and cbrt exp/log plus a Newton step. NaN/Inf in a matrix: its results
are NaN (the entries are zeroed first, so no non-finite arithmetic happens at all).
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from ._ragged import check_batch, layer_metadata

SUPPORTED_MAX_N = 3
BLOCK = 128  # matrices per program: one per thread at 4 warps, ~30 float64 live values each
_OP_EIGVALS, _OP_SVDVALS, _OP_DET = 0, 1, 2


@triton.jit
def _pow2(e):
    """2^e as float64 for int64 e in [-1022, 1023], assembled from its bits (exact on every backend)."""
    return ((e + 1023) << 52).to(tl.float64, bitcast=True)


@triton.jit
def _exponent(m):
    """frexp exponent: e with m 2^-e in [0.5, 1) for normal float64 m > 0; 0 for m = 0."""
    return tl.where(m > 0.0, ((m.to(tl.int64, bitcast=True) >> 52) & 2047) - 1022, 0)


@triton.jit
def _entry(p, valid, E: tl.constexpr, N: tl.constexpr):
    """Entry E (row-major) of the N x N matrices at pointers p as float64; 0 for E >= N*N."""
    x = tl.zeros(p.shape, tl.float64)
    if E < N * N:
        x = tl.load(p + E, mask=valid, other=0.0).to(tl.float64)
    return x


@triton.jit
def _load_scaled(ptr, base, valid, N: tl.constexpr):
    """(a0..a8, e, ok): the entries times 2^-e with max |a| in [0.5, 1) (zeros past N*N), and whether
    all were finite. Non-finite matrices load as zeros (ok = False), so nothing downstream sees NaN."""
    p = ptr + base
    a0, a1, a2 = _entry(p, valid, 0, N), _entry(p, valid, 1, N), _entry(p, valid, 2, N)
    a3, a4, a5 = _entry(p, valid, 3, N), _entry(p, valid, 4, N), _entry(p, valid, 5, N)
    a6, a7, a8 = _entry(p, valid, 6, N), _entry(p, valid, 7, N), _entry(p, valid, 8, N)
    m = _absmax9(a0, a1, a2, a3, a4, a5, a6, a7, a8)
    ok = m <= 1.7976931348623157e308  # false for NaN and Inf
    e = _exponent(tl.where(ok, m, 0.0))
    s = tl.where(ok, _pow2(-e), 0.0)
    # where() before the product: 0 * Inf would be NaN.
    a0, a1, a2 = tl.where(ok, a0, 0.0) * s, tl.where(ok, a1, 0.0) * s, tl.where(ok, a2, 0.0) * s
    a3, a4, a5 = tl.where(ok, a3, 0.0) * s, tl.where(ok, a4, 0.0) * s, tl.where(ok, a5, 0.0) * s
    a6, a7, a8 = tl.where(ok, a6, 0.0) * s, tl.where(ok, a7, 0.0) * s, tl.where(ok, a8, 0.0) * s
    return a0, a1, a2, a3, a4, a5, a6, a7, a8, e, ok


@triton.jit
def _amax(x, y):
    """max(|x|, |y|), NaN if either is NaN (tl.maximum drops NaN on GPU unless told otherwise)."""
    return tl.maximum(tl.abs(x), tl.abs(y), propagate_nan=tl.PropagateNan.ALL)


@triton.jit
def _absmax9(a0, a1, a2, a3, a4, a5, a6, a7, a8):
    return _amax(_amax(_amax(a0, a1), _amax(a2, a3)), _amax(_amax(a4, a5), _amax(_amax(a6, a7), a8)))


@triton.jit
def _det3(a0, a1, a2, a3, a4, a5, a6, a7, a8):
    """Cofactor expansion along the first row, in sm_det3's order."""
    return a0 * (a4 * a8 - a5 * a7) - a1 * (a3 * a8 - a5 * a6) + a2 * (a3 * a7 - a4 * a6)


@triton.jit
def _det(a0, a1, a2, a3, a4, a5, a6, a7, a8, N: tl.constexpr):
    """det of the scaled N x N matrix (each 2x2 product of scaled floats is exact in float64)."""
    if N == 1:
        d = a0
    elif N == 2:
        d = a0 * a3 - a1 * a2
    else:
        d = _det3(a0, a1, a2, a3, a4, a5, a6, a7, a8)
    return d


@triton.jit
def _acos(c):
    """acos(c), c in [-1, 1], to float64 accuracy: acos |c| = pi/2 - asin |c| (|c| <= 1/2) or
    2 asin sqrt((1 - |c|)/2) (1 - |c| exact), asin x = sum_k c_k x^(2k+1) for x <= 1/2 with
    c_k / c_(k-1) = (2k-1)^2 / (2k (2k+1)); 26 terms leave < 1e-17 relative."""
    ac = tl.abs(c)
    x = tl.where(ac > 0.5, tl.sqrt(0.5 * (1.0 - ac)), ac)
    x2 = x * x
    term = x
    s = x
    for k in tl.static_range(1, 27):
        term = term * x2 * ((2 * k - 1) * (2 * k - 1) / ((2 * k) * (2 * k + 1)))
        s += term
    # Float literals, not module constexprs: `constexpr - tensor` does not promote to a float64 tensor.
    acos_abs = tl.where(ac > 0.5, 2.0 * s, 1.5707963267948966 - s)
    return tl.where(c < 0.0, 3.141592653589793 - acos_abs, acos_abs)


@triton.jit
def _cbrt(y):
    """Cube root of y > 0: exp(log(y)/3), then one Newton step to full float64 accuracy."""
    x = tl.exp(tl.log(y) / 3.0)
    return x - (x * x * x - y) / (3.0 * x * x)


@triton.jit
def _shifted_cubic(a0, a1, a2, a3, a4, a5, a6, a7, a8):
    """(p, q, tr, up): B = 3A - tr(A) I, scaled by 1/up (a power of two), has characteristic
    polynomial t^3 + p t + q (p = sum of its principal 2x2 minors, q = -det B) and lambda =
    (t up + tr) / 3. Taking p, q from B avoids the cancellation of A's coefficients; multiples of I and
    Jordan blocks give exact p, q, hence exact multiple roots (sm_eig3)."""
    tr = a0 + a4 + a8
    b0, b1, b2 = 3.0 * a0 - tr, 3.0 * a1, 3.0 * a2
    b3, b4, b5 = 3.0 * a3, 3.0 * a4 - tr, 3.0 * a5
    b6, b7, b8 = 3.0 * a6, 3.0 * a7, 3.0 * a8 - tr
    eb = _exponent(_absmax9(b0, b1, b2, b3, b4, b5, b6, b7, b8))
    s = _pow2(-eb)  # keeps p, q far from underflow for K = sI + (tiny B)
    b0, b1, b2, b3, b4, b5 = b0 * s, b1 * s, b2 * s, b3 * s, b4 * s, b5 * s
    b6, b7, b8 = b6 * s, b7 * s, b8 * s
    p = (b0 * b4 - b1 * b3) + (b0 * b8 - b2 * b6) + (b4 * b8 - b5 * b7)
    q = -_det3(b0, b1, b2, b3, b4, b5, b6, b7, b8)
    return p, q, tr, _pow2(eb)


@triton.jit
def _viete(p, q):
    """Roots t0 >= t1 >= t2 of t^3 + p t + q with three real roots: p = -3 r^2, t = 2 r cos(phi),
    cos(3 phi) = -q / (2 r^3) (clamped: rounding may step past +-1), phi in [0, pi/3]."""
    r = tl.sqrt(tl.maximum(-p / 3.0, 0.0))
    rs = tl.where(r > 0.0, r, 1.0)
    c = tl.minimum(tl.maximum((-0.5 * q / rs) / (rs * rs), -1.0), 1.0)
    phi = _acos(c) / 3.0
    # 2 pi / 3 inline: a float assigned to a local becomes a float32 tensor.
    r2 = 2.0 * r
    return r2 * tl.cos(phi), r2 * tl.cos(phi - 2.0943951023931955), r2 * tl.cos(phi + 2.0943951023931955)


@triton.jit
def _eig2(a, b, c, d):
    """Eigenvalues (r0, i0, r1, i1) of [[a, b], [c, d]]: p +- sqrt(q^2 + bc), p = (a+d)/2, q = (a-d)/2
    (no cancellation in the discriminant when a ~ d). Real: the larger root adds terms of equal sign,
    the smaller is det / larger. Complex: p + i w, p - i w with w > 0."""
    p = 0.5 * (a + d)
    q = 0.5 * (a - d)
    disc = q * q + b * c
    w = tl.sqrt(tl.abs(disc))
    z = p + tl.where(p < 0.0, -w, w)
    small = tl.where(z != 0.0, (a * d - b * c) / tl.where(z != 0.0, z, 1.0), 0.0)
    real = disc >= 0.0
    return tl.where(real, z, p), tl.where(real, 0.0, w), tl.where(real, small, p), tl.where(real, 0.0, -w)


@triton.jit
def _eig3(a0, a1, a2, a3, a4, a5, a6, a7, a8):
    """Eigenvalues (r0, i0, r1, i1, r2, i2) of a 3x3 matrix (sm_eig3): h = (q/2)^2 + (p/3)^3 <= 0 gives
    three real roots (Viete); otherwise Cardano's real root t1 = u - p/(3u), u^3 = -q/2 - sign(q) sqrt(h)
    (the larger cube, no cancellation), then the deflated quadratic t^2 + t1 t + c, c = -q/t1 = t1^2 + p
    (the quotient where the sum would cancel). A conjugate pair lands in slots 1, 2 as (x, +y), (x, -y)."""
    p, q, tr, up = _shifted_cubic(a0, a1, a2, a3, a4, a5, a6, a7, a8)
    h = 0.25 * q * q + p * p * p / 27.0
    v0, v1, v2 = _viete(p, q)
    cardano = h > 0.0
    cb = _cbrt(tl.where(cardano, 0.5 * tl.abs(q) + tl.sqrt(tl.where(cardano, h, 0.0)), 1.0))
    u = tl.where(q < 0.0, cb, -cb)
    t1 = u - p / (3.0 * u)
    t1s = tl.where(t1 != 0.0, t1, 1.0)
    c = tl.where((p < 0.0) & (t1 * t1 > -0.5 * p), -q / t1s, t1 * t1 + p)
    d = 0.25 * t1 * t1 - c
    w = tl.sqrt(tl.abs(d))
    big = -0.5 * t1 - tl.where(t1 < 0.0, -w, w)  # stable quadratic formula, as in _eig2
    small = tl.where(big != 0.0, c / tl.where(big != 0.0, big, 1.0), 0.0)
    pair = cardano & (d < 0.0)
    r1 = tl.where(cardano, tl.where(pair, -0.5 * t1, big), v1)
    r2 = tl.where(cardano, tl.where(pair, -0.5 * t1, small), v2)
    y = tl.where(pair, w * up / 3.0, 0.0)
    r0 = tl.where(cardano, t1, v0)
    return (r0 * up + tr) / 3.0, 0.0 * y, (r1 * up + tr) / 3.0, y, (r2 * up + tr) / 3.0, -y


@triton.jit
def _eig(a0, a1, a2, a3, a4, a5, a6, a7, a8, N: tl.constexpr):
    """Unsorted eigenvalues (r0, i0, r1, i1, r2, i2) of the scaled N x N matrix; slots >= N are 0."""
    zero = 0.0 * a0
    if N == 1:
        r0, i0, r1, i1, r2, i2 = a0, zero, zero, zero, zero, zero
    elif N == 2:
        r0, i0, r1, i1 = _eig2(a0, a1, a2, a3)
        r2, i2 = zero, zero
    else:
        r0, i0, r1, i1, r2, i2 = _eig3(a0, a1, a2, a3, a4, a5, a6, a7, a8)
    return r0, i0, r1, i1, r2, i2


@triton.jit
def _sq_minors(x0, x1, x2, y0, y1, y2):
    """Sum of the squared 2x2 minors of the rows x, y."""
    m01, m02, m12 = x0 * y1 - x1 * y0, x0 * y2 - x2 * y0, x1 * y2 - x2 * y1
    return m01 * m01 + m02 * m02 + m12 * m12


@triton.jit
def _svd(a0, a1, a2, a3, a4, a5, a6, a7, a8, N: tl.constexpr):
    """Singular values s0 >= s1 >= s2 of the scaled N x N matrix A (slots >= N are 0).

    N = 2: s = (sqrt((a+d)^2 + (b-c)^2) +- sqrt((a-d)^2 + (b+c)^2)) / 2, the smaller as |det| / s0.
    N = 3: l0 = s0^2 is the largest eigenvalue of G = A^T A (Viete; G is symmetric, its roots real), then
    l1, l2 from l1 l2 = det(A)^2 / l0 and l1 + l2 = (M2 - l1 l2) / l0, M2 = sum of the squared 2x2 minors
    of A = l0 l1 + l0 l2 + l1 l2 (Cauchy-Binet). Each minor is exact products rounded once, so unlike
    Viete's own l1, l2 (errors ~eps s0^2, i.e. ~1e-8 s0 in a tiny s2) small values keep accuracy."""
    zero = 0.0 * a0
    if N == 1:
        s0, s1, s2 = tl.abs(a0), zero, zero
    elif N == 2:
        sp = tl.sqrt((a0 + a3) * (a0 + a3) + (a1 - a2) * (a1 - a2))
        sm = tl.sqrt((a0 - a3) * (a0 - a3) + (a1 + a2) * (a1 + a2))
        s0 = 0.5 * (sp + sm)
        s1 = tl.minimum(tl.abs(a0 * a3 - a1 * a2) / tl.where(s0 > 0.0, s0, 1.0), s0)
        s2 = zero
    else:
        g0 = a0 * a0 + a3 * a3 + a6 * a6
        g1 = a0 * a1 + a3 * a4 + a6 * a7
        g2 = a0 * a2 + a3 * a5 + a6 * a8
        g4 = a1 * a1 + a4 * a4 + a7 * a7
        g5 = a1 * a2 + a4 * a5 + a7 * a8
        g8 = a2 * a2 + a5 * a5 + a8 * a8
        p, q, tr, up = _shifted_cubic(g0, g1, g2, g1, g4, g5, g2, g5, g8)
        t0, _, _ = _viete(p, q)
        l0 = tl.maximum((t0 * up + tr) / 3.0, 0.0)
        m2 = _sq_minors(a0, a1, a2, a3, a4, a5) + _sq_minors(a0, a1, a2, a6, a7, a8)
        m2 += _sq_minors(a3, a4, a5, a6, a7, a8)
        det = _det3(a0, a1, a2, a3, a4, a5, a6, a7, a8)
        l0s = tl.where(l0 > 0.0, l0, 1.0)  # A = 0: everything below is 0
        prod = det * det / l0s
        total = tl.maximum((m2 - prod) / l0s, 0.0)
        l1 = tl.minimum(0.5 * total + tl.sqrt(tl.maximum(0.25 * total * total - prod, 0.0)), l0)
        l2 = tl.minimum(tl.where(l1 > 0.0, prod / tl.where(l1 > 0.0, l1, 1.0), 0.0), l1)
        s0, s1, s2 = tl.sqrt(l0), tl.sqrt(l1), tl.sqrt(l2)
    return s0, s1, s2


@triton.jit
def _before(ar, ai, br, bi):
    """sm_eig_before on float32 values: descending modulus (in float64), real part, imaginary part."""
    ma = ar.to(tl.float64) * ar.to(tl.float64) + ai.to(tl.float64) * ai.to(tl.float64)
    mb = br.to(tl.float64) * br.to(tl.float64) + bi.to(tl.float64) * bi.to(tl.float64)
    return (ma > mb) | ((ma == mb) & ((ar > br) | ((ar == br) & (ai > bi))))


@triton.jit
def _swap_if(s, ar, ai, br, bi):
    return tl.where(s, br, ar), tl.where(s, bi, ai), tl.where(s, ar, br), tl.where(s, ai, bi)


@triton.jit
def _sort3(r0, i0, r1, i1, r2, i2):
    """Orders float32 eigenvalues from _eig3 like small_eigvals: a pair (slots 1, 2, i1 > 0) is one
    item placed before or after the real root; three reals get a stable bubble sort (strict swaps, as
    the C insertion sort). NaN compares false everywhere, so NaN rows pass through."""
    pair = i1 > 0.0
    first = pair & _before(r1, i1, r0, i0)  # (u0, u1, u2) -> (u1, u2, u0)
    r0, i0, r1, i1, r2, i2 = (
        tl.where(first, r1, r0), tl.where(first, i1, i0), tl.where(first, r2, r1),
        tl.where(first, i2, i1), tl.where(first, r0, r2), tl.where(first, i0, i2),
    )  # fmt: skip
    r0, i0, r1, i1 = _swap_if(~pair & _before(r1, i1, r0, i0), r0, i0, r1, i1)
    r1, i1, r2, i2 = _swap_if(~pair & _before(r2, i2, r1, i1), r1, i1, r2, i2)
    r0, i0, r1, i1 = _swap_if(~pair & _before(r1, i1, r0, i0), r0, i0, r1, i1)
    return r0, i0, r1, i1, r2, i2


@triton.jit
def _store3(ptr, base, valid, ok, v0, v1, v2, STRIDE: tl.constexpr, N: tl.constexpr):
    """Stores the first N of v0, v1, v2 at ptr + base + j * STRIDE; NaN for the non-finite matrices."""
    tl.store(ptr + base, tl.where(ok, v0, float("nan")), mask=valid)
    if N > 1:
        tl.store(ptr + base + STRIDE, tl.where(ok, v1, float("nan")), mask=valid)
    if N > 2:
        tl.store(ptr + base + 2 * STRIDE, tl.where(ok, v2, float("nan")), mask=valid)


@triton.jit
def _small_matrix_kernel(x_ptr, out_ptr, count, OP: tl.constexpr, N: tl.constexpr, BLOCK: tl.constexpr):
    """One program per BLOCK matrices of x (count, N, N): eigenvalues (count, N, 2) sorted,
    singular values (count, N) descending, or determinants (count,), float32."""
    rows = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    valid = rows < count
    a0, a1, a2, a3, a4, a5, a6, a7, a8, e, ok = _load_scaled(x_ptr, rows * (N * N), valid, N)
    up = _pow2(e)
    if OP == 0:
        r0, i0, r1, i1, r2, i2 = _eig(a0, a1, a2, a3, a4, a5, a6, a7, a8, N)
        # Round once to float32 (a pair stays exactly conjugate), then order on the rounded values.
        r0, i0, r1 = (r0 * up).to(tl.float32), (i0 * up).to(tl.float32), (r1 * up).to(tl.float32)
        i1, r2, i2 = (i1 * up).to(tl.float32), (r2 * up).to(tl.float32), (i2 * up).to(tl.float32)
        if N == 2:
            r0, i0, r1, i1 = _swap_if(_before(r1, i1, r0, i0), r0, i0, r1, i1)
        if N == 3:
            r0, i0, r1, i1, r2, i2 = _sort3(r0, i0, r1, i1, r2, i2)
        _store3(out_ptr, rows * (2 * N), valid, ok, r0, r1, r2, 2, N)
        _store3(out_ptr, rows * (2 * N) + 1, valid, ok, i0, i1, i2, 2, N)
    elif OP == 1:
        s0, s1, s2 = _svd(a0, a1, a2, a3, a4, a5, a6, a7, a8, N)
        s0, s1, s2 = (s0 * up).to(tl.float32), (s1 * up).to(tl.float32), (s2 * up).to(tl.float32)
        _store3(out_ptr, rows * N, valid, ok, s0, s1, s2, 1, N)
    else:
        d = _det(a0, a1, a2, a3, a4, a5, a6, a7, a8, N) * _pow2(N * e)
        tl.store(out_ptr + rows, tl.where(ok, d, float("nan")).to(tl.float32), mask=valid)


@triton.jit
def _criterion(ptr, base, valid, CRITERION: tl.constexpr, N: tl.constexpr):
    """c(K) of kernel_criteria.h for BLOCK N x N kernels at ptr + base, float32 [BLOCK]."""
    a0, a1, a2, a3, a4, a5, a6, a7, a8, e, ok = _load_scaled(ptr, base, valid, N)
    up = _pow2(e)
    if CRITERION == 0:  # mean |K|, summed in entry order (entries past N*N are 0 and add nothing)
        total = tl.abs(a0) + tl.abs(a1) + tl.abs(a2) + tl.abs(a3) + tl.abs(a4)
        v = ((total + tl.abs(a5) + tl.abs(a6) + tl.abs(a7) + tl.abs(a8)) * up / (N * N)).to(tl.float32)
    elif CRITERION == 1 or CRITERION == 2:
        # det rounded to float first, as small_det returns it; det_gram = det^2 ranks like |det|.
        d = (_det(a0, a1, a2, a3, a4, a5, a6, a7, a8, N) * _pow2(N * e)).to(tl.float32)
        v = tl.abs(d)
        if CRITERION == 2:
            v = (d.to(tl.float64) * d.to(tl.float64)).to(tl.float32)
    elif CRITERION == 7:
        s0, _, _ = _svd(a0, a1, a2, a3, a4, a5, a6, a7, a8, N)
        v = (s0 * up).to(tl.float32)
    else:  # 3..6: min / max of |lambda| or |Re lambda| over the float32-rounded eigenvalues
        r0, i0, r1, i1, r2, i2 = _eig(a0, a1, a2, a3, a4, a5, a6, a7, a8, N)
        r0, r1, r2 = (r0 * up).to(tl.float32), (r1 * up).to(tl.float32), (r2 * up).to(tl.float32)
        i0, i1, i2 = (i0 * up).to(tl.float32), (i1 * up).to(tl.float32), (i2 * up).to(tl.float32)
        if CRITERION == 4 or CRITERION == 6:
            v0, v1, v2 = tl.abs(r0), tl.abs(r1), tl.abs(r2)
        else:  # a complex eigenvalue counts by its modulus, taken in float64 (no overflow)
            v0 = tl.sqrt(r0.to(tl.float64) * r0 + i0.to(tl.float64) * i0).to(tl.float32)
            v1 = tl.sqrt(r1.to(tl.float64) * r1 + i1.to(tl.float64) * i1).to(tl.float32)
            v2 = tl.sqrt(r2.to(tl.float64) * r2 + i2.to(tl.float64) * i2).to(tl.float32)
        # Slots past N hold 0: fill them with v0, which changes neither min nor max.
        v1 = v1 if N > 1 else v0
        v2 = v2 if N > 2 else v0
        v = tl.minimum(tl.minimum(v0, v1), v2) if CRITERION <= 4 else tl.maximum(tl.maximum(v0, v1), v2)
    return tl.where(ok, v, float("nan"))


@triton.jit
def _kernel_scores_kernel(
    data_ptr, meta_ptr, blocks_ptr, out_ptr, CRITERION: tl.constexpr, BLOCK: tl.constexpr
):
    """One program per entry (layer, block) of the block table: BLOCK kernels of one layer. The layer
    metadata rows are _ragged.layer_metadata's (N_l, D_l = k_l^2, data_offset, row_offset, -)."""
    layer = tl.load(blocks_ptr + 2 * tl.program_id(0))
    block = tl.load(blocks_ptr + 2 * tl.program_id(0) + 1)
    n = tl.load(meta_ptr + layer * 5)
    d = tl.load(meta_ptr + layer * 5 + 1)
    data_off = tl.load(meta_ptr + layer * 5 + 2)
    row_off = tl.load(meta_ptr + layer * 5 + 3)
    rows = block * BLOCK + tl.arange(0, BLOCK)
    valid = rows < n
    base = data_off + rows * d
    # k is per layer, so a runtime branch; each arm is specialised for its k at compile time.
    if d == 1:
        score = _criterion(data_ptr, base, valid, CRITERION, 1)
    elif d == 4:
        score = _criterion(data_ptr, base, valid, CRITERION, 2)
    else:
        score = _criterion(data_ptr, base, valid, CRITERION, 3)
    tl.store(out_ptr + row_off + rows, score, mask=valid)


def _check_matrices(x: torch.Tensor) -> int:
    """n of a (count, n, n) float32 contiguous batch, 1 <= n <= SUPPORTED_MAX_N; ValueError otherwise."""
    square = isinstance(x, torch.Tensor) and x.dim() == 3 and x.shape[1] == x.shape[2]
    if not square or x.dtype != torch.float32 or not x.is_contiguous():
        raise ValueError("x must be a contiguous float32 tensor of square matrices, shape (count, n, n)")
    n = x.shape[1]
    if not 1 <= n <= SUPPORTED_MAX_N:
        raise ValueError(f"the Triton small-matrix kernels take n <= {SUPPORTED_MAX_N} (1 <= n), got n = {n}")
    return n


def _run(x: torch.Tensor, op: int, shape: tuple) -> torch.Tensor:
    n = _check_matrices(x)
    out = torch.empty(shape, dtype=torch.float32, device=x.device)
    if x.shape[0] > 0:
        _small_matrix_kernel[(triton.cdiv(x.shape[0], BLOCK),)](x, out, x.shape[0], OP=op, N=n, BLOCK=BLOCK)
    return out


def small_eigvals(x: torch.Tensor) -> torch.Tensor:
    """Eigenvalues of x (count, n, n) float32, n <= 3 -> (count, n, 2) float32 (re, im): per matrix by
    descending modulus, ties by descending real part, a conjugate pair as a + ib, a - ib (b > 0, exactly
    conjugate). |lambda - lambda_ref| <= 1e-5 max(1, ||K||_F) on well-conditioned matrices."""
    return _run(x, _OP_EIGVALS, (x.shape[0], x.shape[-1], 2) if x.dim() == 3 else ())


def small_svdvals(x: torch.Tensor) -> torch.Tensor:
    """Singular values of x (count, n, n) float32, n <= 3 -> (count, n) float32, descending; absolute
    error <= 1e-5 ||K||_F (the largest is relatively accurate)."""
    return _run(x, _OP_SVDVALS, (x.shape[0], x.shape[-1]) if x.dim() == 3 else ())


def small_det(x: torch.Tensor) -> torch.Tensor:
    """Determinants of x (count, n, n) float32, n <= 3 -> (count,) float32 (closed forms in float64)."""
    return _run(x, _OP_DET, (x.shape[0],) if x.dim() == 3 else ())


def kernel_scores(
    data: torch.Tensor, num_rows: list[int], row_dims: list[int], criterion: int
) -> torch.Tensor:
    """c(K) of every k x k kernel of a packed network (fp_kernel_scores), k <= 3, in one launch.

    Args:
        data: 1-D contiguous float32, layer after layer num_rows[l] kernels of row_dims[l] = k_l^2 weights.
        num_rows: kernels O_l * I_l >= 1 per layer.
        row_dims: k_l^2 per layer, k_l in 1..3.
        criterion: 0 mean |K|, 1 |det K|, 2 det(K)^2, 3 min |lambda|, 4 min |Re lambda|, 5 max |lambda|,
            6 max |Re lambda|, 7 largest singular value.

    Returns:
        1-D float32 of sum_l num_rows[l], layer after layer; NaN for a kernel with a NaN/Inf weight.

    Raises:
        ValueError: bad sizes, dtype or layout, k > 3 or row_dims not a square, or a bad criterion.
    """
    check_batch(data, num_rows, row_dims)
    if not isinstance(criterion, int) or isinstance(criterion, bool) or not 0 <= criterion <= 7:
        raise ValueError(f"criterion must be an fp_kernel_criterion id 0..7, got {criterion!r}")
    for d in row_dims:
        k = math.isqrt(int(d))
        if k * k != int(d) or k > SUPPORTED_MAX_N:
            raise ValueError(f"row_dims must be k^2 with k <= {SUPPORTED_MAX_N} (n <= 3 kernels), got {d}")
    num_rows = [int(n) for n in num_rows]
    meta = layer_metadata(num_rows, [int(d) for d in row_dims], data.device)
    blocks = torch.cat(
        [torch.stack([torch.full((triton.cdiv(n, BLOCK),), layer), torch.arange(triton.cdiv(n, BLOCK))], 1)
         for layer, n in enumerate(num_rows)]
    )  # fmt: skip
    blocks = blocks.to(torch.int64).contiguous().to(data.device)
    out = torch.empty(sum(num_rows), dtype=torch.float32, device=data.device)
    _kernel_scores_kernel[(blocks.shape[0],)](data, meta, blocks, out, CRITERION=criterion, BLOCK=BLOCK)
    return out
