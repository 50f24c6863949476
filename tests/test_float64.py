"""float64 filters (issue 17, every dtype): gm_scores and pairwise_distances compute and return float64 (the
torch backend), matching SciPy's float64 distances to ~1e-12; 'auto' picks it, a float32 kernel named
explicitly is refused with the reason."""

import numpy as np
import pytest
import torch
from conftest import reference_distances

from fastprune.backends import BackendError
from fastprune.ops import gm_scores, pairwise_distances


@pytest.mark.parametrize("metric", ["l2", "l1", "cosine", "sqeuclidean"])
def test_float64_scores_and_distances_are_float64_exact(metric):
    gen = torch.Generator().manual_seed(0)
    layers = [
        torch.randn(12, 4, 3, 3, generator=gen, dtype=torch.float64),
        torch.randn(7, 30, generator=gen).double(),
    ]
    layers[0][5] = layers[0][4] + 1e-9  # near-duplicate filters: float32 could not resolve their distance
    scores = gm_scores(layers, metric)
    distances = pairwise_distances(layers, metric)
    for layer, score, dist in zip(layers, scores, distances):
        expected = reference_distances(layer.flatten(1).numpy(), metric)
        assert score.dtype == dist.dtype == torch.float64
        np.testing.assert_allclose(dist.numpy(), expected, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(score.numpy(), expected.sum(1), rtol=1e-10, atol=1e-12)
    if metric == "l2":
        assert 0 < float(distances[0][4, 5]) < 1e-7  # resolved, not rounded to 0 or to float32's floor


def test_mixed_list_is_computed_in_float64_and_float32_stays_float32():
    gen = torch.Generator().manual_seed(1)
    a, b = torch.randn(6, 8, generator=gen), torch.randn(5, 8, generator=gen).double()
    mixed = gm_scores([a, b])
    assert all(s.dtype == torch.float64 for s in mixed)
    assert torch.allclose(mixed[0], gm_scores(a.double()), rtol=1e-12)
    assert gm_scores(a).dtype == torch.float32


def test_a_float32_kernel_named_for_float64_filters_is_refused():
    with pytest.raises(
        BackendError,
        match="backend 'cpu' computes gm_scores in float32; float64 input is computed in float64",
    ):
        gm_scores(torch.randn(4, 9, dtype=torch.float64), backend="cpu")
    with pytest.raises(TypeError, match="expected float32, float16, bfloat16 or float64"):
        gm_scores(torch.randn(4, 9).to(torch.int32))


@pytest.mark.parametrize("criterion", ["weight", "det", "min_eig", "spectral_radius_real", "spectral_norm"])
def test_float64_kernel_scores(criterion):
    from fastprune.ops import kernel_scores

    gen = torch.Generator().manual_seed(2)
    weight = torch.randn(5, 4, 3, 3, generator=gen, dtype=torch.float64)
    scores = kernel_scores(weight, criterion)
    assert scores.dtype == torch.float64 and scores.shape == (5, 4)
    kernels = weight.numpy()
    for o, i in [(0, 0), (2, 3), (4, 1)]:
        k = kernels[o, i]
        expected = {
            "weight": np.abs(k).mean(),
            "det": abs(np.linalg.det(k)),
            "min_eig": np.abs(np.linalg.eigvals(k)).min(),
            "spectral_radius_real": np.abs(np.linalg.eigvals(k).real).max(),
            "spectral_norm": np.linalg.svd(k, compute_uv=False)[0],
        }[criterion]
        assert abs(float(scores[o, i]) - expected) <= 1e-12 * max(1.0, abs(expected))
    with pytest.raises(BackendError, match="backend 'cpu' computes kernel_scores in float32"):
        kernel_scores(weight, criterion, backend="cpu")
    assert kernel_scores(weight.float(), criterion).dtype == torch.float32


def test_float64_small_matrix_ops():
    from fastprune.ops import small_det, small_eigvals, small_svdvals

    gen = torch.Generator().manual_seed(3)
    x = torch.randn(6, 4, 4, generator=gen, dtype=torch.float64)
    eig, sv, det = small_eigvals(x), small_svdvals(x), small_det(x)
    assert (eig.dtype, sv.dtype, det.dtype) == (torch.complex128, torch.float64, torch.float64)
    for m in range(6):
        a = x[m].numpy()
        expected = np.linalg.eigvals(a)
        assert np.allclose(np.sort_complex(eig[m].numpy()), np.sort_complex(expected), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(sv[m].numpy(), np.linalg.svd(a, compute_uv=False), rtol=1e-12)
        np.testing.assert_allclose(float(det[m]), np.linalg.det(a), rtol=1e-12)
    with pytest.raises(BackendError, match="backend 'cpu' computes small_det in float32"):
        small_det(x, backend="cpu")
    assert small_det(x.float()).dtype == torch.float32 and small_eigvals(x.float()).dtype == torch.complex64
