"""fastprune.ops.pairwise_distances against float64 SciPy references, on every backend."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import (
    CPU_BACKENDS,
    METRIC_NAMES,
    assert_close_rel,
    near_duplicate_family,
    reference_distances,
    requires_cuda,
    rows_of,
)

from fastprune.ops import pairwise_distances

# (N, D): N = 1, 2, primes; D from 1 up. Triton runs interpreted on the CPU, so it gets the small ones.
SHAPES = [(1, 5), (2, 1), (7, 13), (31, 144), (97, 37)]
TRITON_SHAPES = SHAPES[:4]


def _shapes_for(backend: str) -> list[tuple[int, int]]:
    return TRITON_SHAPES if backend == "triton" else SHAPES


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("metric", METRIC_NAMES)
def test_matches_float64_reference(backend: str, metric: str) -> None:
    gen = torch.Generator().manual_seed(1)
    for n, d in _shapes_for(backend):
        x = torch.randn(n, d, generator=gen) * 3.0
        got = pairwise_distances(x, metric, backend=backend)
        assert got.dtype == torch.float32 and got.shape == (n, n)
        assert torch.equal(got, got.T), "each pair computed once and mirrored"
        assert torch.all(got.diagonal() == 0)
        assert_close_rel(got, reference_distances(rows_of(x), metric), what=f"{backend} {metric} {n}x{d}")


@pytest.mark.parametrize("metric", METRIC_NAMES)
@pytest.mark.parametrize("n, d", [(1025, 64), (257, 4608)])
def test_large_layers_cpu(metric: str, n: int, d: int) -> None:
    """N = 1025 spans five 256-row tiles (partial last tile); D = 4608 is ResNet's widest 3x3 conv."""
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(n))
    got = pairwise_distances(x, metric, backend="cpu")
    assert_close_rel(got, reference_distances(rows_of(x), metric), what=f"cpu {metric} {n}x{d}")


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("metric", METRIC_NAMES)
def test_near_duplicate_filters(backend: str, metric: str) -> None:
    """Filters 1e-4 of their norm apart: the Gram form loses them in float32, fastprune must not."""
    d = 576 if backend == "triton" else 4608
    x = near_duplicate_family(17, d, seed=2)
    got = pairwise_distances(x, metric, backend=backend)
    assert_close_rel(got, reference_distances(rows_of(x), metric), what=f"{backend} {metric} near-duplicates")


def test_torch_cdist_matmul_mode_fails_where_fastprune_holds() -> None:
    """The motivating failure: torch.cdist's matmul mode on near-duplicates is far outside 1e-4."""
    x = near_duplicate_family(17, 4608, seed=3)
    expected = reference_distances(rows_of(x), "l2")
    off_diagonal = ~np.eye(len(expected), dtype=bool)
    lossy = torch.cdist(x, x, compute_mode="use_mm_for_euclid_dist").double().numpy()
    assert np.max(np.abs(lossy - expected)[off_diagonal] / expected[off_diagonal]) > 1e-2
    assert_close_rel(pairwise_distances(x, "l2", backend="cpu"), expected, what="cpu near-duplicates")


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_ragged_list_of_conv_weights(backend: str) -> None:
    gen = torch.Generator().manual_seed(4)
    weights = [
        torch.randn(16, 3, 3, 3, generator=gen),
        torch.randn(1, 8, 1, 1, generator=gen),
        torch.randn(11, 4, 5, 5, generator=gen),
        torch.randn(6, 7, generator=gen),
    ]
    got = pairwise_distances(weights, "l2", backend=backend)
    assert isinstance(got, list) and len(got) == len(weights)
    for index, (matrix, w) in enumerate(zip(got, weights)):
        assert_close_rel(matrix, reference_distances(rows_of(w), "l2"), what=f"{backend} layer {index}")


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_non_contiguous_and_half_inputs(backend: str) -> None:
    gen = torch.Generator().manual_seed(5)
    wide = torch.randn(12, 40, generator=gen)
    strided = wide[:, ::2]  # non-contiguous (12, 20)
    transposed = torch.randn(9, 12, generator=gen).T  # non-contiguous (12, 9)
    for x in (strided, transposed, wide.to(torch.float16), wide.to(torch.bfloat16)):
        got = pairwise_distances(x, "l1", backend=backend)
        assert got.dtype == torch.float32
        assert_close_rel(got, reference_distances(rows_of(x), "l1"), what=f"{backend} {x.dtype} {x.stride()}")


def test_cosine_zero_rows_are_at_distance_one() -> None:
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(6))
    x[1] = 0.0
    x[3] = 0.0
    for backend in CPU_BACKENDS:
        got = pairwise_distances(x, "cosine", backend=backend)
        assert got[1, 3] == 1.0 and got[1, 0] == 1.0 and got[4, 3] == 1.0 and got[1, 1] == 0.0


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_opcheck(backend: str) -> None:
    gen = torch.Generator().manual_seed(7)
    layers = [torch.randn(4, 7, generator=gen), torch.randn(6, 3, generator=gen)]
    torch.library.opcheck(torch.ops.fastprune.pairwise_distances.default, (layers, 0, backend))


@requires_cuda
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("metric", METRIC_NAMES)
def test_cuda_backends(backend: str, metric: str) -> None:
    gen = torch.Generator().manual_seed(8)
    weights = [
        torch.randn(n, d, generator=gen) for n, d in [(1, 3), (2, 9), (97, 37), (1025, 64), (64, 4608)]
    ]
    weights.append(near_duplicate_family(33, 4608, seed=9))
    got = pairwise_distances([w.cuda() for w in weights], metric, backend=backend)
    for matrix, w in zip(got, weights):
        assert matrix.is_cuda and torch.equal(matrix, matrix.T)
        assert_close_rel(
            matrix, reference_distances(rows_of(w), metric), what=f"{backend} {metric} {tuple(w.shape)}"
        )
