"""Batched 3x3 eigenvalues (the eigenvalue criteria's inner loop): fastprune against torch.linalg.eigvals."""

import pytest
import torch

from fastprune.ops import small_det, small_eigvals, small_svdvals


@pytest.fixture(scope="module", params=[10_000, 1_000_000])
def matrices(request):
    return torch.randn(request.param, 3, 3, generator=torch.Generator().manual_seed(0))


@pytest.mark.benchmark(group="small_eigvals")
@pytest.mark.parametrize("fn", [small_eigvals, torch.linalg.eigvals], ids=["fastprune", "torch"])
def test_eigvals(benchmark, matrices, fn):
    benchmark(fn, matrices)


@pytest.mark.benchmark(group="small_svdvals")
@pytest.mark.parametrize("fn", [small_svdvals, torch.linalg.svdvals], ids=["fastprune", "torch"])
def test_svdvals(benchmark, matrices, fn):
    benchmark(fn, matrices)


@pytest.mark.benchmark(group="small_det")
@pytest.mark.parametrize("fn", [small_det, torch.linalg.det], ids=["fastprune", "torch"])
def test_det(benchmark, matrices, fn):
    benchmark(fn, matrices)
