"""Property-based fuzzing of every public op of fastprune.ops and of fastprune.compact (issue 17, item 2).

Each property draws shapes, layouts, masks and values, runs the native cpu backend (or "auto") and compares
it with an independent float64 reference (SciPy/NumPy, float64 torch for convolutions and networks) under
the bound the op documents (conftest.RTOL = 1e-4 unless stated). Values are normal draws times 2^e, which
scales distances, eigenvalues and convolutions exactly: bounds are relative to the data's own scale, from
denormals (~1e-40) to ~1e30, short of float32 overflow; the bugs found are regression tests at the end.
FASTPRUNE_FUZZ_EXAMPLES=N runs every property with N examples instead of its default (make fuzz).
"""

from __future__ import annotations

import copy
import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import METRIC_NAMES, RTOL, assert_close_rel, reference_distances, reference_gm_scores, rows_of
from conftest import reference_kernel_scores as reference_criterion
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import linear_sum_assignment
from torch import nn

from fastprune import models, ops
from fastprune._native import native
from fastprune.compaction import apply_masks, compact

TINY = float(np.finfo(np.float32).smallest_subnormal)  # float32's denormal spacing, 1.4e-45
FLT_MAX = float(np.finfo(np.float32).max)
seeds, backends = st.integers(0, 2**32 - 1), st.sampled_from(["cpu", "auto"])
nonfinite = st.sampled_from([math.nan, math.inf, -math.inf])
FAMILIES = ["normal", "zeros", "duplicates", "mixed"]
MATRIX_FAMILIES = FAMILIES[:3] + ["equal_rows", "symmetric", "triangular", "antisymmetric", "permutation"]
SMALL_OPS = ["small_eigvals", "small_svdvals", "small_det"]


def fuzz(max_examples: int) -> settings:
    """A property's settings: `max_examples`, or FASTPRUNE_FUZZ_EXAMPLES when set; no deadline (timings on
    a shared machine are noise). The rest comes from the loaded profile (conftest: "ci" under CI)."""
    count = int(os.environ.get("FASTPRUNE_FUZZ_EXAMPLES") or max_examples)
    return settings(max_examples=count, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Examples run on one OpenMP thread: on 2 shared cores a descheduled second thread stalls every tiny
    op (test_bitwise_across_thread_counts compares 1 and 2 threads itself)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _values(seed: int, shape: tuple, family: str, exponent: int, x: np.ndarray | None = None) -> torch.Tensor:
    """float32 standard normal values (or x) of `shape` times 2^exponent. Along dim 0 (filters, images,
    matrices): "zeros" zeroes about half the slices, "duplicates" copies slice 0 over about half of them,
    "mixed" scales each by 2^-U{0..8}."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) if x is None else x
    pick = rng.random(len(x)) < 0.5
    if family == "zeros":
        x[pick] = 0.0
    elif family == "duplicates" and len(x):
        x[pick] = x[0]
    elif family == "mixed":
        x *= np.ldexp(1.0, -rng.integers(0, 9, len(x))).reshape(-1, *[1] * (x.ndim - 1))
    return torch.from_numpy(np.ldexp(x, exponent).astype(np.float32))


def _matrices(seed: int, batch: tuple, n: int, family: str, exponent: int) -> torch.Tensor:
    """(*batch, n, n) float32 matrices times 2^exponent: standard normal, or per matrix two equal rows
    (singular), symmetric (real spectrum), upper triangular, antisymmetric (pairs +-ib of equal modulus),
    a permutation (roots of unity: Francis QR's classic stall); or "zeros"/"duplicates" across the batch."""
    rng = np.random.default_rng(seed + 1)
    k = rng.standard_normal((*batch, n, n))
    if family == "equal_rows" and n > 1:
        k[..., 1, :] = k[..., 0, :]
    elif family in ("symmetric", "antisymmetric"):
        k = k + (1 if family == "symmetric" else -1) * np.swapaxes(k, -1, -2)
    elif family == "triangular":
        k = np.triu(k)
    elif family == "permutation":
        k = np.eye(n)[rng.permuted(np.tile(np.arange(n), (*batch, 1)), axis=-1)]
    return _values(seed, (), family, exponent, k.reshape(-1, n, n)).reshape(k.shape)


# The same values in other memory layouts; "expanded" broadcasts x[:1] over dim 0 (stride 0: copies of x[0]).
VIEWS = {
    "contiguous": lambda x: x,
    "rows": lambda x: x.reshape(len(x), -1),  # (N, D)
    "rows_transposed": lambda x: x.reshape(len(x), -1).T.contiguous().T,  # column-major (N, D)
    "channels_last": lambda x: x.contiguous(memory_format=torch.channels_last),
    "transposed": lambda x: x.transpose(-1, -2).contiguous().transpose(-1, -2),  # last two dims swapped
    "swapped": lambda x: x.transpose(0, 1).contiguous().transpose(0, 1),  # dims 0 and 1 swapped
    "strided": lambda x: torch.stack([x, torch.zeros_like(x)], dim=-1)[..., 0],  # every other float
    "expanded": lambda x: x[:1].expand_as(x),
}
LAYOUTS = st.sampled_from(["contiguous", "channels_last", "transposed", "swapped", "strided", "expanded"])


def _layout(x: torch.Tensor, layout: str) -> torch.Tensor:
    return VIEWS[layout](x)


def _mask(kind: str, shape: tuple, seed: int) -> torch.Tensor | None:
    """A keep-mask (True = kept): "none" (None), "all", "empty", "random" or "one" (exactly one survivor)."""
    if kind == "none":
        return None
    rng = np.random.default_rng(seed)
    keep = rng.random(shape) < 0.5 if kind == "random" else np.full(shape, kind == "all")
    if kind == "one":
        keep.flat[rng.integers(keep.size)] = True
    return torch.from_numpy(keep)


def _call(op, layers: list, *args, **kwargs) -> list:
    """op on one tensor (one layer) or on the list of layers; per-layer results as a list either way."""
    out = op(layers if len(layers) > 1 else layers[0], *args, **kwargs)
    return out if len(layers) > 1 else [out]


# ---- filter scoring: pairwise_distances, gm_scores ---------------------------------------------------

# 2^e per metric: 2^100 ~ 1e30 down to denormals (2^-133 ~ 1e-40) for l1 (exact sums) and cosine (scale-free),
# to 2^-100 ~ 1e-30 for l2 (a distance rounded to a denormal has an absolute error, not 1e-4 relative);
# sqeuclidean within 2^+-50: its results (squares, times D, summed over N for gm) stay normal floats.
EXPONENTS = {"l1": (-133, 100), "cosine": (-133, 100), "l2": (-100, 100), "sqeuclidean": (-50, 50)}
KINDS = ["all", "empty", "random", "one"]
MASKS = st.sampled_from(["none", *KINDS])


@st.composite
def filter_layers(draw) -> tuple:
    """(layers, metric, 1 / the factor 2^e scales the metric's distances by, seed): 1 to 3 conv weights
    (N <= 40, C <= 6, k <= 3) in one layout and value family."""
    metric = draw(st.sampled_from(METRIC_NAMES))
    exponent, seed = draw(st.integers(*EXPONENTS[metric]), label="exponent"), draw(seeds)
    family, layout = draw(st.sampled_from(FAMILIES)), draw(st.sampled_from(list(VIEWS)))
    shapes = draw(st.lists(st.tuples(*(st.integers(1, m) for m in (40, 6, 3))), min_size=1, max_size=3))
    layers = [_values(seed + i, (n, c, k, k), family, exponent) for i, (n, c, k) in enumerate(shapes)]
    power = {"l1": 1, "l2": 1, "sqeuclidean": 2}.get(metric, 0)
    return [_layout(x, layout) for x in layers], metric, math.ldexp(1.0, -exponent * power), seed


@fuzz(60)
@given(filters=filter_layers(), backend=backends)
def test_pairwise_distances_match_float64(filters, backend) -> None:
    """Each layer's matrix within RTOL (relative, 2^e undone) of SciPy's float64 per-pair distances, exactly
    symmetric with an exactly zero diagonal (documented: each pair is computed once and mirrored)."""
    layers, metric, scale, _ = filters
    for i, (got, x) in enumerate(zip(_call(ops.pairwise_distances, layers, metric, backend=backend), layers)):
        assert got.dtype == torch.float32 and torch.equal(got, got.T) and torch.all(got.diagonal() == 0)
        expected = reference_distances(rows_of(x), metric) * scale
        assert_close_rel(got.double() * scale, expected, what=f"layer {i}")


@fuzz(60)
@given(filters=filter_layers(), kind=MASKS, backend=backends)
def test_gm_scores_match_float64(filters, kind, backend) -> None:
    """g_j = sum over kept j' of d(F_j, F_j') within RTOL of the float64 sum (relative, 2^e undone); pruned
    filters exactly +inf, a lone survivor 0 (assert_close_rel checks the inf pattern and the zeros)."""
    layers, metric, scale, seed = filters
    masks = [_mask(kind, (x.shape[0],), seed + i) for i, x in enumerate(layers)]
    mask = None if kind == "none" else (masks if len(layers) > 1 else masks[0])
    got = _call(ops.gm_scores, layers, metric, mask, backend=backend)
    for i, (scores, x, keep) in enumerate(zip(got, layers, masks)):
        expected = reference_gm_scores(rows_of(x), metric, None if keep is None else keep.numpy())
        assert_close_rel(scores.double() * scale, expected * scale, what=f"layer {i}")


@fuzz(40)
@given(op=st.sampled_from(["gm_scores", "pairwise_distances"]), metric=st.sampled_from(METRIC_NAMES),
       bad=nonfinite, backend=st.sampled_from(["cpu", "torch", "auto"]), data=st.data())  # fmt: skip
def test_scoring_ops_refuse_nonfinite(op, metric, bad, backend, data) -> None:
    """NaN/Inf anywhere is refused on every backend by a ValueError naming `filters`, the layer and the
    filter (README: scores of non-finite weights are meaningless)."""
    shapes = data.draw(st.lists(st.tuples(st.integers(1, 12), st.integers(1, 12)), min_size=1, max_size=3))
    layer = data.draw(st.integers(0, len(shapes) - 1), label="layer")
    row, col = (data.draw(st.integers(0, size - 1)) for size in shapes[layer])
    layers = [_values(i, shape, "normal", 0) for i, shape in enumerate(shapes)]
    layers[layer][row, col] = bad
    with pytest.raises(ValueError, match=rf"filters: layer {layer}, filter {row} contains NaN or Inf"):
        _call(getattr(ops, op), layers, metric, backend=backend)


# ---- small-matrix ops and kernel scores ----------------------------------------------------------------


@st.composite
def matrix_batches(draw) -> tuple:
    """(x, its float64 (count, n, n) copy, their Frobenius norms): (*batch, n, n) matrices, 1 <= n <= 7,
    batch dims of 0..3, entries 2^-133 (denormal) to 2^100."""
    batch = tuple(draw(st.lists(st.integers(0, 3), max_size=3), label="batch"))
    n, family = draw(st.integers(1, 7), label="n"), draw(st.sampled_from(MATRIX_FAMILIES))
    x = _matrices(draw(seeds), batch, n, family, draw(st.integers(-133, 100), label="exponent"))
    x = _layout(x, draw(st.sampled_from(["contiguous", "transposed", "strided", "expanded"])))
    k = x.double().numpy().reshape(-1, n, n)
    return x, k, np.linalg.norm(k, axis=(1, 2))


@fuzz(60)
@given(batch=matrix_batches(), backend=backends)
def test_small_eigvals_match_lapack(batch, backend) -> None:
    """Eigenvalues, matched one-to-one with LAPACK's float64 ones, within the documented 1e-5 ||K||_F (taken
    relative: the op works in double on the float32 entries; + 4 denormal spacings for denormal results).
    Order: descending modulus (1e-6 slack: equal moduli rounded to float32), every complex pair adjacent
    as a + ib, a - ib with b > 0, exactly conjugate."""
    (x, k, norms), n = batch, batch[0].shape[-1]
    got = ops.small_eigvals(x, backend=backend)
    assert got.dtype == torch.complex64 and got.shape == x.shape[:-1]
    for values, ref, norm in zip(got.numpy().reshape(-1, n).astype(complex), np.linalg.eigvals(k), norms):
        cost = np.abs(values[:, None] - ref[None, :])
        assert cost[linear_sum_assignment(cost)].max() <= 1e-5 * norm + 4 * TINY, (values, ref)
        modulus, upper = np.abs(values), np.flatnonzero(values.imag > 0)
        assert np.all(np.diff(modulus) <= 1e-6 * modulus.max() + 2 * TINY), values
        assert np.count_nonzero(values.imag < 0) == len(upper), values
        assert all(i + 1 < n and values[i + 1] == np.conj(values[i]) for i in upper), values


@fuzz(60)
@given(batch=matrix_batches(), backend=backends)
def test_small_svdvals_match_lapack(batch, backend) -> None:
    """Singular values within 1e-5 ||K||_F (+ 4 denormal spacings) of LAPACK's float64 ones (each is
    1-Lipschitz in K: the error scales with ||K||, not with the value), exactly non-increasing."""
    x, k, norms = batch
    got = ops.small_svdvals(x, backend=backend)
    assert got.dtype == torch.float32 and got.shape == x.shape[:-1]
    error = np.abs(got.double().numpy().reshape(k.shape[:2]) - np.linalg.svd(k, compute_uv=False))
    assert np.all(error <= 1e-5 * norms[:, None] + 4 * TINY) and torch.all(got.diff(dim=-1) <= 0)


@fuzz(60)
@given(batch=matrix_batches(), backend=backends)
def test_small_det_matches_lapack(batch, backend) -> None:
    """det K within 1e-5 ||K||_F^n (+ 4 denormal spacings) of LAPACK's float64 one (elimination in double
    is backward stable: the error scales with ||K||^n, not |det|); surely past float32's range: the signed
    infinity; possibly past it (FLT_MAX within the bound): infinite or within the bound."""
    x, k, norms = batch
    got = ops.small_det(x, backend=backend)
    assert got.dtype == torch.float32 and got.shape == x.shape[:-2]
    got, ref, bound = got.double().numpy().reshape(-1), np.linalg.det(k), 1e-5 * norms ** k.shape[-1]
    bound += 4 * TINY
    over, fits = np.abs(ref) - bound > FLT_MAX, np.abs(ref) + bound < FLT_MAX
    assert np.array_equal(got[over], np.sign(ref[over]) * np.inf)
    assert np.all((np.abs(got - ref) <= bound) | (np.isinf(got) & ~fits)), (got, ref)


@fuzz(60)
@given(criterion=st.sampled_from(list(ops.CRITERIA)), family=st.sampled_from(MATRIX_FAMILIES), seed=seeds,
       layout=LAYOUTS, backend=backends, data=st.data())  # fmt: skip
def test_kernel_scores_match_float64(criterion, family, seed, layout, backend, data) -> None:
    """c(K) of every kernel of 1 to 3 layers within 2e-5 |c| + 1e-5 ||K||_F^p of NumPy's float64 criterion,
    p its power (the eigenvalue accuracy 1e-5 ||K||_F raised to the criterion's degree; + 4 denormal
    spacings). 2^e stays below 2^(100 / p) (largest p of the layers): c stays in float32's range."""
    shapes = data.draw(st.lists(st.tuples(*(st.integers(1, m) for m in (6, 6, 7))), min_size=1, max_size=3))
    exponent = data.draw(st.integers(-133, 100 // max(ops.criterion_power(criterion, k) for *_, k in shapes)))
    ws = [_layout(_matrices(seed + i, s[:2], s[2], family, exponent), layout) for i, s in enumerate(shapes)]
    for scores, w in zip(_call(ops.kernel_scores, ws, criterion, backend=backend), ws):
        assert scores.dtype == torch.float32 and scores.shape == w.shape[:2]
        k = w.double().numpy()
        ref, norms = reference_criterion(k, criterion), np.linalg.norm(k, axis=(2, 3))
        bound = 2e-5 * np.abs(ref) + 1e-5 * norms ** ops.criterion_power(criterion, k.shape[-1]) + 4 * TINY
        assert np.all(np.abs(scores.double().numpy() - ref) <= bound), (scores, ref)


@fuzz(40)
@given(op=st.sampled_from(SMALL_OPS + list(ops.CRITERIA)), count=st.integers(1, 6), n=st.integers(1, 7),
       bad=nonfinite, seed=seeds, backend=backends, data=st.data())  # fmt: skip
def test_nonfinite_matrices_propagate(op, count, n, bad, seed, backend, data) -> None:
    """NaN/Inf in one matrix (a kernel, for kernel_scores' criteria) make its results NaN (fastprune.h: they
    propagate, nothing fails); kernel_scores gives NaN for NaN and a non-finite score for Inf (mean |K| and
    1x1 |w| are +inf). Every other matrix's result is bitwise that of the batch with the bad one zeroed."""
    index, row, col = (data.draw(st.integers(0, m - 1)) for m in (count, n, n))
    x = _matrices(seed, (count,), n, "normal", 0)
    clean = x.clone()
    clean[index] = 0.0
    x[index, row, col] = bad

    def run(t: torch.Tensor) -> torch.Tensor:
        if op in SMALL_OPS:
            return getattr(ops, op)(t, backend=backend)
        return ops.kernel_scores(t[:, None], op, backend=backend)[:, 0]  # (count, 1, n, n) weight

    got, others = run(x), torch.arange(count) != index
    assert torch.equal(got[others], run(clean)[others])
    if op in SMALL_OPS or math.isnan(bad):
        assert torch.isnan(got[index].real if got.is_complex() else got[index]).all(), got[index]
    else:
        assert not torch.isfinite(got[index]).any(), got[index]


# ---- convolutions ------------------------------------------------------------------------------------


@st.composite
def conv_inputs(draw, grouped: bool = False, large: bool = False, exponents=(-133, 100)) -> tuple:
    """((N, C, O, (kh, kw), stride, padding, dilation, groups), x, weight, bias or None) with a positive
    output size; products x * w (and the bias) 2^e with e in `exponents`, w itself 2^(-20..20)."""
    groups = draw(st.integers(1, 3)) if grouped else 1
    c, o = (groups * draw(st.integers(1, top // groups)) for top in ((16, 20) if large else (12, 13)))
    kernel = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    geometry = [(draw(st.integers(a, b)), draw(st.integers(a, b))) for a, b in ((1, 3), (0, 2), (1, 2))]
    (_, padding, dilation), high = geometry, 40 if large else 20
    low = [max(1, dilation[a] * (kernel[a] - 1) + 1 - 2 * padding[a]) for a in range(2)]
    size = tuple(draw(st.integers(low[a], max(low[a], high))) for a in range(2))
    n, seed, family = draw(st.integers(0, 3)), draw(seeds), draw(st.sampled_from(FAMILIES))
    e_prod, e_w = draw(st.integers(*exponents), label="e_prod"), draw(st.integers(-20, 20), label="e_w")
    x = _values(seed, (n, c, *size), family, e_prod - e_w)
    w = _values(seed + 1, (o, c // groups, *kernel), "normal", e_w)
    bias = _values(seed + 2, (o,), "normal", e_prod) if draw(st.booleans()) else None
    return (n, c, o, kernel, *geometry, groups), x, w, bias


def _conv64(x, w, b, geometry, groups=1, grad_y=None, f=lambda t: t):
    """float64 F.conv2d of f(x), f(w), f(b) and, given grad_y, the gradients for f(grad_y): [y, dx, dw, db].
    f = abs gives, per output, the sum of |terms| that float32 accumulation errors scale with."""
    x, w, b = (
        None if t is None else f(t.detach().double()).requires_grad_(grad_y is not None) for t in (x, w, b)
    )
    y = F.conv2d(x, w, b, *geometry, groups)
    if grad_y is not None:
        y.backward(f(grad_y.double()))
    return [y.detach()] + ([None if t is None else t.grad for t in (x, w, b)] if grad_y is not None else [])


def _assert_conv_close(got: torch.Tensor, ref: torch.Tensor, absolute: torch.Tensor, taps: int, what) -> None:
    """max |got - ref| <= RTOL max |ref| (the convolution tests' bound) + 1e-6 max sum |terms| (16 float32
    ulps of it: where the terms cancel, float32 sums err relative to them, not to the result) + taps
    denormal spacings (the absolute rounding of sums of `taps` denormal terms)."""
    assert got.dtype == torch.float32 and got.shape == ref.shape, what
    if ref.numel():
        err, scale = float((got.double() - ref).abs().max()), float(ref.abs().max())
        bound = RTOL * scale + 1e-6 * float(absolute.max()) + taps * TINY
        assert err <= bound, f"{what}: {err:.3e} > {RTOL} * {scale:.3e} + ..."


MASK_KINDS = st.tuples(st.sampled_from(["filter", "kernel"]), st.sampled_from(KINDS))


@fuzz(50)
@given(inputs=conv_inputs(), layout=LAYOUTS, weight_layout=LAYOUTS, relu=st.booleans(), backend=backends)
def test_conv2d_matches_float64(inputs, layout, weight_layout, relu, backend) -> None:
    """conv2d (+ bias, + ReLU) against float64 F.conv2d of the same float32 inputs, x and weight in any
    layout, products from denormal (2^-133) to 2^100 (ReLU is 1-Lipschitz: the same bound holds)."""
    (_, c, _, kernel, *geometry, _), x, w, b = inputs
    x, w = _layout(x, layout), _layout(w, weight_layout)
    got = ops.conv2d(x, w, b, *geometry, relu=relu, backend=backend)
    ref, absolute = _conv64(x, w, b, geometry)[0], _conv64(x, w, b, geometry, f=torch.abs)[0]
    _assert_conv_close(got, ref.clamp_min(0) if relu else ref, absolute, c * kernel[0] * kernel[1] + 1, "y")


@fuzz(50)
@given(grad=st.booleans(), mask_kind=MASK_KINDS, layout=LAYOUTS, seed=seeds, backend=backends, data=st.data())
def test_masked_conv2d_matches_float64(grad, mask_kind, layout, seed, backend, data) -> None:
    """y = conv2d(x, W * M, b, ..., groups) against float64 F.conv2d for filter and kernel masks (all kept,
    none, random, one survivor); a pruned filter outputs exactly its bias. With grad: dL/dx, dL/dW, dL/db
    against float64 autograd (products within 2^+-60, so gradients stay in range), masked dL/dW exactly 0."""
    exponents = (-60, 60) if grad else (-133, 100)
    (n, c, o, kernel, *geometry, groups), x, w, b = data.draw(conv_inputs(True, exponents=exponents))
    x = _layout(x, layout)
    mask = _mask(mask_kind[1], (o,) if mask_kind[0] == "filter" else (o, c // groups), seed)
    kept = (mask[:, None] if mask.dim() == 1 else mask).expand(o, c // groups)
    xg, wg, bg = (None if t is None else t.detach().requires_grad_(grad) for t in (x, w, b))
    got = ops.masked_conv2d(xg, wg, mask, bg, *geometry, groups, backend=backend)
    grad_y = _values(seed, tuple(got.shape), "normal", 0) if grad else None
    wm = w * kept[:, :, None, None]
    ref, absolute = (_conv64(x, wm, b, geometry, groups, grad_y, f) for f in (lambda t: t, torch.abs))
    _assert_conv_close(got.detach(), ref[0], absolute[0], c // groups * kernel[0] * kernel[1] + 1, "y")
    pruned = ~kept.any(dim=1)
    expected = (torch.zeros(o) if b is None else b)[pruned].view(1, -1, 1, 1).expand_as(got[:, pruned])
    assert torch.equal(got.detach()[:, pruned], expected)
    if grad:
        got.backward(grad_y)
        terms = max(n * got.shape[2] * got.shape[3], o * kernel[0] * kernel[1]) + 1
        for name, mine, theirs, bound in zip("xwb", (xg, wg, bg), ref[1:], absolute[1:]):
            if mine is not None:  # dL/dW against d/d(W * M): the same on kept entries, 0 on masked ones
                _assert_conv_close(mine.grad, theirs * kept[:, :, None, None] if name == "w" else theirs,
                                   bound, terms, f"grad {name}")  # fmt: skip
        assert torch.all(wg.grad[~kept] == 0)


@fuzz(30)
@given(op=st.sampled_from(["gm_scores", "pairwise_distances", "conv2d", "masked_conv2d"]), seed=seeds,
       metric=st.sampled_from(METRIC_NAMES), mask_kind=MASK_KINDS, data=st.data())  # fmt: skip
def test_bitwise_across_thread_counts(op, seed, metric, mask_kind, data) -> None:
    """Bitwise-equal results on 1 and 2 OpenMP threads, as documented: gm_scores, pairwise_distances (a tile
    per thread, fixed summation order; N up to 300 spans two 256-row tiles), conv2d and masked_conv2d with
    its gradients (fastprune.h; batch-1 layers over 2^20 MACs split tiles across threads)."""
    if op in ("gm_scores", "pairwise_distances"):
        x = _values(seed, (data.draw(st.integers(1, 300)), data.draw(st.integers(1, 40))), "normal", 0)
        args = (metric, _mask(mask_kind[1], (len(x),), seed)) if op == "gm_scores" else (metric,)
    else:
        (_, c, o, _, *geometry, _), x, w, b = data.draw(conv_inputs(large=True, exponents=(0, 0)))
        mask = _mask(mask_kind[1], (o,) if mask_kind[0] == "filter" else (o, c), seed)

    def run() -> list[torch.Tensor]:
        assert native().build_info()["openmp_max_threads"] == torch.get_num_threads()
        if op in ("gm_scores", "pairwise_distances"):
            return [getattr(ops, op)(x, *args, backend="cpu")]
        if op == "conv2d":
            return [ops.conv2d(x, w, b, *geometry, relu=True, backend="cpu")]
        xg, wg = x.clone().requires_grad_(), w.clone().requires_grad_()
        y = ops.masked_conv2d(xg, wg, mask, b, *geometry, backend="cpu")
        return [y.detach(), *torch.autograd.grad(y, (xg, wg), _values(seed, tuple(y.shape), "normal", 0))]

    before, results = torch.get_num_threads(), []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)  # torch and libfastprune share one OpenMP runtime
            results.append(run())
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(one, two) for one, two in zip(*results))


# ---- compaction --------------------------------------------------------------------------------------


def _random_resnet8(seed: int) -> nn.Module:
    """fastprune's CIFAR ResNet-8 (7 convs, option-A shortcuts) in eval mode with random weights (scaled by
    1/sqrt(fan-in)) and BN statistics, so the BN constants of removed filters matter."""
    model, rng = models.CifarResNet(8).eval(), np.random.default_rng(seed)
    for name, t in model.state_dict().items():  # detached tensors sharing the parameters' storage
        if t.is_floating_point():
            v = rng.standard_normal(tuple(t.shape))
            if name.endswith("running_var"):
                v = 0.5 + 0.5 * np.abs(v)
            elif t.dim() > 1:
                v = v / np.sqrt(t[0].numel())
            else:
                v = 0.3 * v + name.endswith(("1.weight", "2.weight"))  # BN scales ~1, the rest ~0.3
            t.copy_(torch.from_numpy(v))
    return model


@fuzz(20)
@given(kinds=st.lists(st.sampled_from(KINDS), min_size=7, max_size=7),
       kernel_conv=st.integers(-1, 6), batch=st.integers(1, 2), size=st.integers(4, 12),
       layout=st.sampled_from(["contiguous", "channels_last"]), seed=seeds)  # fmt: skip
def test_compact_and_inference_form_match_float64(kinds, kernel_conv, batch, size, layout, seed) -> None:
    """compact(model, filter_masks, kernel_masks) and its for_inference() form (BN folded, convs by
    fastprune.ops.conv2d) give the masked model's float64 output within RTOL of its scale (float32 through
    8 layers: ~1e-6), for masks keeping all, some, one or no filter of each conv; `model` is not modified."""
    model = _random_resnet8(seed)
    convs = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    filters = {n: _mask(k, (m.out_channels,), seed + i) for i, ((n, m), k) in enumerate(zip(convs, kinds))}
    name, conv = convs[kernel_conv]
    kernels = {name: _mask("random", tuple(conv.weight.shape[:2]), seed)} if kernel_conv >= 0 else {}
    before = copy.deepcopy(model.state_dict())
    small = compact(model, filter_masks=filters, kernel_masks=kernels)
    x = _layout(_values(seed, (batch, 3, size, size), "normal", 0), layout)
    with torch.no_grad():
        ref = apply_masks(copy.deepcopy(model).double(), filters, kernels)(x.double())
        for what, net in (("compact", small), ("inference form", small.for_inference())):
            got = net(x)
            assert got.dtype == torch.float32 and got.shape == ref.shape
            assert float((got.double() - ref).abs().max()) <= RTOL * float(ref.abs().max()), what
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# ---- bugs found by fuzzing, fixed; kept as regression tests ----------------------------------------


# found by fuzzing: the cpu kernels took l2 from float32 squares (Gram form), so a distance whose square
# underflows float32 (below ~1e-19) lost its precision: rows 1e-30 apart came out identical (0, not 1e-30).
# Fixed meanwhile in distance.h (kGramMinSqNorm, found by the C ABI fuzz harness too): a plain regression.
@pytest.mark.parametrize("op", ["pairwise_distances", "gm_scores"])
def test_l2_underflow_regression(op: str) -> None:
    got = getattr(ops, op)(torch.tensor([[0.0], [1e-30]]), "l2", backend="cpu").reshape(-1)[1]
    assert abs(float(got) - 1e-30) <= RTOL * 1e-30


# found by fuzzing: spectral_norm's closed form for 2x2 kernels clamped the top eigenvalue of K^T K with
# `top > 0.0 ? top : 0.0` (small_matrix.h), turning NaN into 0.0 against fastprune.h (NaN propagates): a
# diverged kernel scored 0 and was silently pruned. Fixed meanwhile in small_matrix.h: a plain regression.
def test_spectral_norm_nan_regression() -> None:
    w = torch.tensor([[[[math.nan, 0.0], [0.0, 1.0]]]])
    assert torch.isnan(ops.kernel_scores(w, "spectral_norm", backend="cpu")).all()


# found by fuzzing: small_det of one unbatched (n, n) matrix raised TypeError (_small_matrix.run reshaped the
# (1,) result by out.reshape(*x.shape[:-2], *out.shape[1:]), i.e. reshape()). Fixed meanwhile: a regression.
def test_small_det_unbatched_regression() -> None:
    assert float(ops.small_det(torch.tensor([[2.0, 1.0], [1.0, 3.0]]), backend="cpu")) == 5.0


# found by fuzzing: masked_conv2d's cpu weight gradient read freed memory for a non-contiguous x
# (channels_last, strided, expanded): cpu_backward passed address(x.contiguous()), a temporary freed before
# the kernel ran. Seen: [nan, nan], elsewhere 0, 1.4e-45 or 1e37. Fixed meanwhile: a plain regression.
def test_masked_conv2d_weight_grad_regression() -> None:
    x = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]]).contiguous(memory_format=torch.channels_last)
    w = torch.ones(1, 2, 1, 1, requires_grad=True)
    ops.masked_conv2d(x, w, torch.tensor([True]), backend="cpu").sum().backward()
    assert w.grad.flatten().tolist() == [3.0, 7.0]
