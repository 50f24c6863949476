"""small_eigvals / small_svdvals / small_det against float64 NumPy (LAPACK), on well-conditioned and hard
matrix families, n = 1..7, with the invariants the eigenvalues must satisfy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import HAS_TRITON_ON_CPU
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fastprune.ops import small_det, small_eigvals, small_svdvals

BACKENDS = ["cpu", "torch"] + (["triton"] if HAS_TRITON_ON_CPU else [])
SIZES = list(range(1, 8))
# Triton's small-matrix kernels take n <= 3 (the backend refuses larger n, tested below).
CASES = [(backend, n) for backend in BACKENDS for n in SIZES if backend != "triton" or n <= 3]


def _match_error(got: np.ndarray, ref: np.ndarray) -> float:
    """Largest |got - ref| after matching the two eigenvalue multisets greedily by distance."""
    ref = list(ref)
    worst = 0.0
    for value in got:
        distances = [abs(value - r) for r in ref]
        best = int(np.argmin(distances))
        worst = max(worst, distances[best])
        ref.pop(best)
    return worst


def _elementary_symmetric(values: np.ndarray, degree: int) -> complex:
    from itertools import combinations

    return sum(np.prod(c) for c in combinations(values, degree))


def _principal_minor_sum(k: np.ndarray, degree: int) -> float:
    from itertools import combinations

    return sum(np.linalg.det(k[np.ix_(c, c)]) for c in combinations(range(len(k)), degree))


def _check_invariants(k32: np.ndarray, values: np.ndarray) -> None:
    """sum lambda = trace, prod lambda = det, e_2(lambda) = sum of 2x2 principal minors, each relative to
    ||K||^degree: 1e-6 n, about 15x the rounding of n float32 eigenvalues. ||K|| is floored at float32's
    smallest normal number: smaller eigenvalues are stored as float32 denormals, whose spacing (1.4e-45)
    is absolute, not relative."""
    k = k32.astype(np.float64)
    norm = max(np.linalg.norm(k), float(np.finfo(np.float32).tiny))
    n = len(k)
    for degree in sorted({1, 2, n}):
        if degree > n:
            continue
        expected = _principal_minor_sum(k, degree) if degree > 1 else np.trace(k)
        got = _elementary_symmetric(values.astype(np.complex128), degree)
        assert abs(got - expected) <= 1e-6 * norm**degree * max(1, n), (degree, got, expected, k32)


def _well_conditioned(n: int, count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, n, n)).astype(np.float32)


def _hard_family(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(n)
    eye = np.eye(n)
    jordan = eye * 0.7 + np.eye(n, k=1)  # one defective eigenvalue 0.7
    triangular = np.triu(rng.standard_normal((n, n)))
    rotation = np.eye(n)
    if n >= 2:
        c, s = np.cos(0.3), np.sin(0.3)
        rotation[:2, :2] = [[c, -s], [s, c]]
    rank_one = np.outer(rng.standard_normal(n), rng.standard_normal(n))
    random = rng.standard_normal((n, n))
    scales = np.diag(10.0 ** rng.uniform(-3, 3, n))
    family = [
        eye * 2.5,
        np.zeros((n, n)),
        jordan,
        triangular,
        rotation,
        rank_one,
        np.diag(np.arange(n) - 1.5),
        random * 1e-30,
        random * 1e30,
        random * 1e-40,
        scales @ random @ np.linalg.inv(scales),
        eye * 3.0 + 1e-7,
    ]
    return [m.astype(np.float32) for m in family]


@pytest.mark.parametrize("backend, n", CASES)
def test_eigvals_match_lapack_on_random_matrices(backend: str, n: int) -> None:
    k = _well_conditioned(n, 300, seed=n)
    got = small_eigvals(torch.from_numpy(k), backend=backend).numpy()
    assert got.dtype == np.complex64 and got.shape == (300, n)
    ref = np.linalg.eigvals(k.astype(np.float64))
    for m in range(len(k)):
        assert _match_error(got[m], ref[m]) <= 1e-5 * max(1.0, np.linalg.norm(k[m])), k[m]


@pytest.mark.parametrize("backend, n", CASES)
def test_eigvals_hard_families_are_finite_conjugate_and_keep_invariants(backend: str, n: int) -> None:
    for k in _hard_family(n):
        got = small_eigvals(torch.from_numpy(k), backend=backend).numpy()
        assert np.all(np.isfinite(got)), k
        complex_ones = got[got.imag != 0]
        for value in complex_ones:  # every complex eigenvalue has its exact conjugate
            assert np.any(got == np.conj(value)), got
        _check_invariants(k, got)


@pytest.mark.parametrize("n", SIZES)
def test_eigvals_order(n: int) -> None:
    got = small_eigvals(torch.from_numpy(_well_conditioned(n, 200, seed=40 + n))).numpy()
    for row in got:
        modulus = np.abs(row)
        assert np.all(np.diff(modulus) <= 1e-6 * max(1.0, modulus.max())), row
        for a, b in zip(row[:-1], row[1:]):
            if a == np.conj(b) and a.imag != 0:
                assert a.imag > 0, row


# det of the 1e30-scaled family overflows float32 by design; the Triton interpreter's NumPy cast warns.
@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@pytest.mark.parametrize("backend, n", CASES)
def test_svdvals_and_det(backend: str, n: int) -> None:
    k = np.concatenate([_well_conditioned(n, 200, seed=70 + n), np.stack(_hard_family(n))])
    x = torch.from_numpy(k)
    s = small_svdvals(x, backend=backend).numpy()
    d = small_det(x, backend=backend).numpy()
    k64 = k.astype(np.float64)
    s_ref = np.linalg.svd(k64, compute_uv=False)
    d_ref = np.linalg.det(k64)
    norms = np.maximum(np.linalg.norm(k64, axis=(1, 2)), np.finfo(np.float64).tiny)
    assert np.all(np.isfinite(s)) and np.all(np.diff(s, axis=1) <= 0)
    assert np.all(np.abs(s - s_ref) <= 1e-5 * norms[:, None])
    # A determinant past float32's range (entries ~1e30) must come back as the signed infinity.
    overflow = np.abs(d_ref) > np.finfo(np.float32).max
    assert np.array_equal(d[overflow], np.sign(d_ref[overflow]) * np.inf)
    fits = ~overflow
    assert np.all(np.abs(d[fits] - d_ref[fits]) <= 1e-5 * norms[fits] ** n + 1e-30)


def test_batch_shapes_empty_and_strided_views() -> None:
    assert small_eigvals(torch.empty(0, 3, 3)).shape == (0, 3)
    assert small_det(torch.empty(2, 0, 4, 4)).shape == (2, 0)
    base = torch.randn(6, 5, 20, 20)
    view = base[:, ::2, 3:6, 7:10]  # non-contiguous, large strides
    assert not view.is_contiguous()
    got = small_eigvals(view)
    assert got.shape == (6, 3, 3)
    torch.testing.assert_close(got, small_eigvals(view.contiguous()), rtol=0, atol=0)
    ref = np.linalg.eigvals(view.double().numpy())
    for g, r in zip(got.reshape(-1, 3).numpy(), ref.reshape(-1, 3)):
        assert _match_error(g, r) <= 1e-5 * max(1.0, np.abs(r).max() * 3)


def test_nonfinite_input_propagates_as_nan() -> None:
    x = torch.randn(4, 3, 3)
    x[1, 0, 2] = float("nan")
    x[2, 1, 1] = float("inf")
    got = small_eigvals(x)
    assert torch.isnan(got[1].real).all() and torch.isnan(got[2].real).all()
    assert torch.isfinite(got[0].real).all() and torch.isfinite(got[3].real).all()
    assert torch.isnan(small_svdvals(x)[1]).all()


def test_bad_input_errors() -> None:
    cases = [
        (torch.ones(3, 3, dtype=torch.int64), TypeError, r"x: expected float32.*or float64.*got torch.int64"),
        (torch.randn(3), ValueError, r"x: expected square matrices .* got shape \(3,\)"),
        (torch.randn(2, 3, 4), ValueError, r"x: expected square matrices"),
        (torch.randn(8, 8), ValueError, r"x: expected 1 <= n <= 7 .* got n = 8"),
        ("x", TypeError, r"x: expected a tensor"),
    ]
    for op in (small_eigvals, small_svdvals, small_det):
        for x, error, message in cases:
            with pytest.raises(error, match=message):
                op(x)
    with pytest.raises(
        ValueError, match=r"backend 'triton' .* its small_eigvals kernels take n <= 3, got n = 5"
    ):
        small_eigvals(torch.randn(2, 5, 5), backend="triton")


@settings(max_examples=200, deadline=None)
@given(arrays(np.float32, (3, 3), elements=st.floats(-1e3, 1e3, width=32)))
def test_invariants_hold_for_arbitrary_3x3(k: np.ndarray) -> None:
    got = small_eigvals(torch.from_numpy(k)).numpy()
    assert np.all(np.isfinite(got))
    _check_invariants(k, got)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 7), st.integers(0, 2**32 - 1), st.floats(-30, 30))
def test_invariants_hold_for_random_scaled_matrices(n: int, seed: int, log_scale: float) -> None:
    k = (np.random.default_rng(seed).standard_normal((n, n)) * 10.0**log_scale).astype(np.float32)
    got = small_eigvals(torch.from_numpy(k)).numpy()
    assert np.all(np.isfinite(got))
    _check_invariants(k, got)


@pytest.mark.parametrize("op", [small_eigvals, small_svdvals, small_det])
@pytest.mark.parametrize("backend", BACKENDS)
def test_opcheck(op, backend: str) -> None:
    x = torch.randn(5, 3, 3)
    torch.library.opcheck(getattr(torch.ops.fastprune, op.__name__).default, (x, backend))


@pytest.mark.parametrize("n", [2, 3])
def test_spectral_norm_closed_form_on_hard_families(n: int) -> None:
    """kernel_scores' spectral_norm takes a closed form for n <= 3: hold it to the SVD on every family."""
    from fastprune.ops import kernel_scores

    k = np.concatenate([_well_conditioned(n, 500, seed=90 + n), np.stack(_hard_family(n))])
    got = kernel_scores(torch.from_numpy(k)[:, None], "spectral_norm")[:, 0].numpy()
    ref = np.linalg.svd(k.astype(np.float64), compute_uv=False)[:, 0]
    fits = ref < np.finfo(np.float32).max
    assert np.all(np.abs(got[fits] - ref[fits]) <= 1e-6 * ref[fits] + 1e-45)
