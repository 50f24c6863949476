"""small_eigvals / small_svdvals / small_det / kernel_scores on CUDA tensors (cuda and triton backends)
against float64 NumPy (LAPACK). GPU-only: skipped (and `cuda`-marked) without a GPU; the same kernels'
math is tested on the CPU by test_small_matrix_ops.py and test_kernel_scores.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import reference_kernel_scores, requires_cuda
from test_small_matrix_ops import _match_error

from fastprune.ops import CRITERIA, kernel_scores, small_det, small_eigvals, small_svdvals
from fastprune.ops.kernel_scores import criterion_power

# Triton's small-matrix kernels take n <= 3 (the backend refuses larger n).
CASES = [(backend, n) for backend in ("cuda", "triton") for n in range(1, 8) if backend == "cuda" or n <= 3]
# Relative to ||K||^degree, as the CPU tests: float32 results of a few dozen operations.
TOL = 1e-5


def _matrices(n: int, count: int = 257, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed + n)
    k = torch.randn(count, n, n, generator=gen)
    k[0] = 0.0  # zero matrix
    k[1] = torch.eye(n)  # repeated eigenvalue
    if n > 1:
        k[2, :, 0] = k[2, :, 1]  # singular
    return k


@requires_cuda
@pytest.mark.parametrize(("backend", "n"), CASES)
def test_small_matrix_ops_on_cuda_match_lapack(backend: str, n: int) -> None:
    k = _matrices(n)
    k64 = k.double().numpy()
    norms = np.maximum(np.linalg.norm(k64, axis=(1, 2)), 1e-30)
    eig = small_eigvals(k.cuda(), backend=backend)
    sv = small_svdvals(k.cuda(), backend=backend)
    det = small_det(k.cuda(), backend=backend)
    assert eig.is_cuda and sv.is_cuda and det.is_cuda
    eig, sv, det = eig.cpu().numpy(), sv.cpu().numpy(), det.cpu().numpy()
    for i in range(len(k)):
        assert _match_error(eig[i], np.linalg.eigvals(k64[i])) <= TOL * norms[i] * n, (backend, n, i)
        assert np.abs(sv[i] - np.linalg.svd(k64[i], compute_uv=False)).max() <= TOL * norms[i] * n
        assert abs(det[i] - np.linalg.det(k64[i])) <= TOL * max(norms[i], 1.0) ** n * n
    # the documented order: descending modulus (eigenvalues), descending (singular values)
    assert (np.diff(np.abs(eig), axis=1) <= 1e-6 * norms[:, None]).all()
    assert (np.diff(sv, axis=1) <= 0).all()


@requires_cuda
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("criterion", sorted(CRITERIA))
def test_kernel_scores_on_cuda_match_lapack(backend: str, criterion: str) -> None:
    gen = torch.Generator().manual_seed(5)
    sizes = (1, 3) if backend == "triton" else (1, 3, 5, 7)
    weights = [torch.randn(16, 8, k, k, generator=gen) for k in sizes]
    got = kernel_scores([w.cuda() for w in weights], criterion, backend=backend)
    for w, scores in zip(weights, got):
        assert scores.is_cuda and scores.shape == w.shape[:2]
        ref = reference_kernel_scores(w.numpy(), criterion)
        # the criterion's scale: ||K||^p (the mean |w| of "weight" is bounded by ||K|| too)
        scale = np.linalg.norm(w.double().numpy(), axis=(2, 3)) ** criterion_power(criterion, w.shape[-1])
        assert (np.abs(scores.cpu().double().numpy() - ref) <= TOL * (np.abs(ref) + scale)).all(), criterion
