"""Triton small-matrix kernels (n <= 3) and kernel_scores against float64 NumPy references.

Without CUDA the kernels run under the Triton interpreter on CPU tensors, so batches stay small.
Accuracy bars: eigenvalues |lambda - lambda_ref| <= 1e-5 max(1, ||K||_F) (matched as multisets),
singular values 1e-5 ||K||_F, determinants 1e-5 ||K||_F^n; hard families must be finite and satisfy
trace = sum lambda and det = prod lambda to float32 accuracy relative to ||K||_F^p.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from conftest import reference_kernel_scores

# conftest.py sets TRITON_INTERPRET=1 without CUDA before this import (@triton.jit picks interpreter or
# compiler when it decorates). triton is a test requirement: a missing install fails, it does not skip.
from fastprune.triton_kernels.small_matrix import (
    SUPPORTED_MAX_N,
    kernel_scores,
    small_det,
    small_eigvals,
    small_svdvals,
)

from fastprune.ops import CRITERIA

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TOL = 1e-5


def _run(fn, x: torch.Tensor) -> np.ndarray:
    return fn(x.to(torch.float32).contiguous().to(DEVICE)).cpu().double().numpy()


def _eig(x: torch.Tensor) -> np.ndarray:
    out = _run(small_eigvals, x)
    return out[..., 0] + 1j * out[..., 1]


def _norms(x: torch.Tensor) -> np.ndarray:
    return np.linalg.norm(x.to(torch.float32).double().numpy(), axis=(1, 2))


def _multiset_error(got: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Per row, max |got - ref| under the best pairing (n <= 3: try every permutation)."""
    n = got.shape[1]
    return np.min([np.abs(got[:, list(p)] - ref).max(1) for p in itertools.permutations(range(n))], axis=0)


def _families(n: int) -> dict[str, torch.Tensor]:
    """Hard matrices of size n, each family a small batch."""
    gen = torch.Generator().manual_seed(n)
    eye = torch.eye(n)
    fams = {
        "identity_multiples": torch.stack([eye, -2.5 * eye, 1e-3 * eye]),
        "zero": torch.zeros(1, n, n),
        "diagonal": torch.diag_embed(torch.randn(4, n, generator=gen)),
        "triangular": torch.randn(4, n, n, generator=gen).triu(),
        "lower_triangular": torch.randn(4, n, n, generator=gen).tril(),
        "rank1": torch.randn(4, n, 1, generator=gen) @ torch.randn(4, 1, n, generator=gen),
    }
    if n >= 2:
        jordan = torch.stack([a * eye + torch.diag(torch.ones(n - 1), 1) for a in (1.5, -0.75, 0.0)])
        fams["jordan"] = torch.cat([jordan, jordan.transpose(1, 2)])
        theta = torch.tensor([0.3, 1.0, 3.0])
        c, s = theta.cos(), theta.sin()
        rot = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)
        fams["rotation"] = rot if n == 2 else torch.block_diag(rot[0], torch.ones(1, 1))[None].repeat(3, 1, 1)
        if n == 3:
            fams["rotation"][1] = fams["rotation"][1][[2, 0, 1]][:, [2, 0, 1]]  # rotation about another axis
            fams["rotation"][2] = torch.tensor([[0.0, 0, 1], [1, 0, 0], [0, 1, 0]])  # cyclic permutation
            fams["jordan_2_plus_1"] = torch.tensor([[[2.0, 1, 0], [0, 2, 0], [0, 0, -1]]])
    return fams


@pytest.mark.parametrize("n", [1, 2, 3])
def test_random_matrices_match_numpy(n: int) -> None:
    gen = torch.Generator().manual_seed(10 + n)
    # 200 rows: a full 128-matrix block plus a ragged one; a few magnitudes.
    x = torch.randn(200, n, n, generator=gen) * torch.tensor([1.0, 1e-3, 1e3]).repeat(67)[:200, None, None]
    xd = x.double().numpy()
    norm = _norms(x)
    err = _multiset_error(_eig(x), np.linalg.eigvals(xd))
    assert np.all(err <= TOL * np.maximum(1.0, norm))
    svd = _run(small_svdvals, x)
    assert np.all(np.abs(svd - np.linalg.svd(xd, compute_uv=False)).max(1) <= TOL * norm)
    assert np.all(np.diff(svd, axis=1) <= 0)
    assert np.all(np.abs(_run(small_det, x) - np.linalg.det(xd)) <= TOL * norm**n)


@pytest.mark.parametrize("n", [2, 3])
def test_well_conditioned_results_are_float32_accurate(n: int) -> None:
    """Far tighter than the 1e-5 bar: with float64 inside, symmetric eigenvalues (condition 1), all
    singular values and determinants are off by float32 rounding plus ~eps64 ||K||^p only. Catches
    float64 constants silently rounded to float32 inside the kernels."""
    gen = torch.Generator().manual_seed(20 + n)
    x = torch.randn(150, n, n, generator=gen)
    x = (x + x.transpose(1, 2)).float()
    xd = x.double().numpy()
    norm = _norms(x)
    ref = np.linalg.eigvalsh(xd)
    eig = _eig(x)
    assert np.all(eig.imag == 0)
    assert np.all(_multiset_error(eig.real, ref) <= 1.2e-7 * np.abs(ref).max(1) + 1e-13 * norm)
    assert np.all(np.abs(np.sort(eig.real, 1) - ref) <= 1.2e-7 * np.abs(ref) + 1e-13 * norm[:, None])
    x = torch.randn(150, n, n, generator=gen)
    xd = x.double().numpy()
    norm = _norms(x)
    ref = np.linalg.svd(xd, compute_uv=False)
    assert np.all(np.abs(_run(small_svdvals, x) - ref) <= 1e-6 * ref + 1e-13 * norm[:, None])
    ref = np.linalg.det(xd)
    assert np.all(np.abs(_run(small_det, x) - ref) <= 1.2e-7 * np.abs(ref) + 1e-13 * norm**n)


@pytest.mark.filterwarnings("ignore:overflow encountered in cast")  # det of 1e30 entries: Inf
@pytest.mark.parametrize("scale", [1.0, 1e-30, 1e30])
@pytest.mark.parametrize("n", [1, 2, 3])
def test_hard_families(n: int, scale: float) -> None:
    for name, fam in _families(n).items():
        x = (fam.double() * scale).float()
        xd = x.double().numpy()
        norm = _norms(x)
        eig = _eig(x)
        assert np.all(np.isfinite(eig)), name
        # trace = sum lambda, det = prod lambda (float64 products of the float32 outputs).
        assert np.all(np.abs(eig.sum(1) - np.trace(xd, axis1=1, axis2=2)) <= TOL * norm), name
        assert np.all(np.abs(eig.prod(1) - np.linalg.det(xd)) <= TOL * norm**n), name
        assert np.all(_multiset_error(eig, np.linalg.eigvals(xd)) <= 1e-3 * norm), (
            name
        )  # defective: eps^(1/n)
        svd = _run(small_svdvals, x)
        assert np.all(np.isfinite(svd)), name
        assert np.all(np.abs(svd - np.linalg.svd(xd, compute_uv=False)).max(1) <= TOL * norm), name
        det = _run(small_det, x)
        if scale == 1.0 or n == 1:  # |det| ~ 1e30^n overflows float32 (correctly Inf), ~1e-30^n flushes to 0
            assert np.all(np.abs(det - np.linalg.det(xd)) <= TOL * norm**n), name


def test_exact_eigenvalues_of_structured_matrices() -> None:
    """Multiples of I, Jordan blocks and diagonals come out exact (the shifted cubic has exact p, q)."""
    jordan3 = torch.tensor([[1.5, 1, 0], [0, 1.5, 1], [0, 0, 1.5]])
    assert np.array_equal(
        _eig(jordan3[None] * torch.tensor([1.0, 1e-30, 1e30])[:, None, None]).imag, np.zeros((3, 3))
    )
    assert np.array_equal(_eig(jordan3[None]).real, [[1.5, 1.5, 1.5]])
    assert np.array_equal(_eig(torch.tensor([[[-2.0, 1], [0, -2]]])).real, [[-2.0, -2.0]])
    assert np.array_equal(_eig(-3 * torch.eye(3)[None]).real, [[-3.0, -3.0, -3.0]])
    assert np.array_equal(_eig(torch.diag(torch.tensor([1.0, -3.0, 2.0]))[None]).real, [[-3.0, 2.0, 1.0]])


def test_small_values_keep_relative_accuracy() -> None:
    """No cancellation: the small root of a 2x2 is det / large root; small singular values of nearly
    singular kernels come from det and the 2x2 minors, not from eigenvalues of K^T K."""
    x = torch.tensor([[[1e7, 1.0], [0.5, 1e-7]]])
    small = np.abs(np.linalg.eigvals(x.double().numpy()[0])).min()  # ~5e-8, next to 1e7
    assert abs(_eig(x)[0, 1].real / small - 1) < 1e-6
    gen = torch.Generator().manual_seed(3)
    for n, noise in [(2, 1e-5), (3, 1e-4)]:
        x = torch.randn(20, n, 1, generator=gen) @ torch.randn(20, 1, n, generator=gen)
        x = (x + noise * torch.randn(20, n, n, generator=gen)).float()
        ref = np.linalg.svd(x.double().numpy(), compute_uv=False)  # smallest ~1e-6 |K|
        assert np.all(np.abs(_run(small_svdvals, x) / ref - 1) < 1e-6)


def _before_or_tie(a: complex, b: complex) -> bool:
    """The C ABI order on float32 values: descending modulus, then real part, then imaginary part."""
    ma, mb = abs(a) ** 2, abs(b) ** 2
    return ma > mb or (ma == mb and (a.real > b.real or (a.real == b.real and a.imag >= b.imag)))


def test_ordering() -> None:
    cases = {  # matrix -> expected (re, im) rows, exact
        ((-3.0, 0.0), (0.0, 3.0)): [(3, 0), (-3, 0)],  # equal modulus: larger real part first
        ((0.0, 1.0), (1.0, -(2.0**-24))): [(1, 0), (-1, 0)],  # -1 - 2^-25, 1 - 2^-25: tie once rounded
        ((1.0, -2.0), (2.0, 1.0)): [(1, 2), (1, -2)],  # conjugate pair: +b first
        ((1.0, 0, 0), (0, -2.0, 0), (0, 0, 2.0)): [(2, 0), (-2, 0), (1, 0)],
        ((1.0, -2, 0), (2, 1, 0), (0, 0, 5)): [(5, 0), (1, 2), (1, -2)],  # pair after a larger real root
        ((1.0, -2, 0), (2, 1, 0), (0, 0, 0.5)): [(1, 2), (1, -2), (0.5, 0)],  # pair first, kept together
        ((0.5, 0, 0), (0, 1, -2), (0, 2, 1)): [(1, 2), (1, -2), (0.5, 0)],
    }
    for matrix, expected in cases.items():
        got = _run(small_eigvals, torch.tensor(matrix)[None])[0]
        assert np.array_equal(got, np.array(expected, dtype=np.float64)), (matrix, got)
    # Property check on random matrices (many with complex pairs).
    x = torch.randn(150, 3, 3, generator=torch.Generator().manual_seed(5))
    for row in _eig(x):
        assert all(_before_or_tie(a, b) for a, b in zip(row[:-1], row[1:]))
        for j, z in enumerate(row):
            if z.imag > 0:  # +b is followed by its exact conjugate
                assert row[j + 1] == np.conj(z)
        assert np.sum(row.imag > 0) == np.sum(row.imag < 0)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_nonfinite_input_gives_nan(n: int) -> None:
    x = torch.randn(6, n, n, generator=torch.Generator().manual_seed(n))
    bad = x.clone()
    bad[1, 0, 0], bad[3, n - 1, n - 1], bad[4, 0, n - 1] = float("nan"), float("inf"), float("-inf")
    rows = torch.tensor([1, 3, 4])
    for fn in (small_eigvals, small_svdvals, small_det):
        clean, got = _run(fn, x), _run(fn, bad)
        assert np.all(np.isnan(got[rows])), fn.__name__
        keep = [0, 2, 5]
        assert np.array_equal(got[keep], clean[keep]), fn.__name__  # other rows unaffected


CRITERION_NAMES = {code: name for name, code in CRITERIA.items()}


def _ragged_layers() -> list[torch.Tensor]:
    """Conv weights (O, I, k, k) with k = 3, 1, 2, 3; the last spans two 128-kernel blocks and holds
    structured kernels (zero, identity, Jordan, rotation)."""
    gen = torch.Generator().manual_seed(7)
    layers = [
        torch.randn(o, i, k, k, generator=gen) for o, i, k in [(4, 3, 3), (5, 2, 1), (3, 3, 2), (2, 70, 3)]
    ]
    layers[3][0, :4] = torch.stack(
        [
            torch.zeros(3, 3),
            torch.eye(3),
            2 * torch.eye(3) + torch.diag(torch.ones(2), 1),
            _families(3)["rotation"][0],
        ]
    )
    layers[2] *= 1e-3
    return layers


@pytest.mark.parametrize("criterion", range(8))
def test_kernel_scores_all_criteria(criterion: int) -> None:
    layers = _ragged_layers()
    data = torch.cat([w.reshape(-1) for w in layers]).to(DEVICE)
    num_rows = [w.shape[0] * w.shape[1] for w in layers]
    row_dims = [w.shape[2] ** 2 for w in layers]
    got = kernel_scores(data, num_rows, row_dims, criterion).cpu().double().numpy()
    assert got.shape == (sum(num_rows),)
    start = 0
    for w, rows in zip(layers, num_rows):
        k = w.shape[2]
        kernels = w.reshape(-1, k, k).double().numpy()
        ref = reference_kernel_scores(kernels, CRITERION_NAMES[criterion])
        power = {1: k, 2: 2 * k}.get(criterion, 1)
        scale = np.maximum(1.0, np.linalg.norm(kernels, axis=(1, 2))) ** power
        assert np.all(np.abs(got[start : start + rows] - ref) <= TOL * scale + 1e-6 * np.abs(ref)), (
            k,
            criterion,
        )
        start += rows


def test_kernel_scores_nan_kernel() -> None:
    layers = [torch.randn(2, 2, 3, 3), torch.randn(3, 1, 1, 1)]
    layers[0][1, 0, 2, 2] = float("nan")
    layers[1][2, 0, 0, 0] = float("inf")
    data = torch.cat([w.reshape(-1) for w in layers]).to(DEVICE)
    for criterion in (0, 1, 3, 7):
        got = kernel_scores(data, [4, 3], [9, 1], criterion).cpu()
        assert torch.isnan(got).tolist() == [False, False, True, False, False, False, True]


def test_rejects_bad_arguments() -> None:
    assert SUPPORTED_MAX_N == 3
    with pytest.raises(ValueError, match="n <= 3"):
        small_eigvals(torch.zeros(2, 4, 4, device=DEVICE))
    with pytest.raises(ValueError, match="contiguous float32"):
        small_det(torch.zeros(2, 3, 3, dtype=torch.float64, device=DEVICE))
    assert small_svdvals(torch.zeros(0, 3, 3, device=DEVICE)).shape == (0, 3)
    data = torch.zeros(2 * 16, device=DEVICE)
    with pytest.raises(ValueError, match="n <= 3"):
        kernel_scores(data, [2], [16], 0)
    with pytest.raises(ValueError, match="k\\^2"):
        kernel_scores(torch.zeros(10, device=DEVICE), [2], [5], 0)
    with pytest.raises(ValueError, match="criterion"):
        kernel_scores(torch.zeros(9, device=DEVICE), [1], [9], 8)
