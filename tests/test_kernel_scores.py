"""kernel_scores: every eigenvalue-based criterion against float64 NumPy, ragged networks in one call,
and the inclusions between the pruned sets that the criteria's definitions imply."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import HAS_TRITON_ON_CPU, reference_kernel_scores
from hypothesis import given, settings
from hypothesis import strategies as st

from fastprune.benchmarks.networks import NETWORKS
from fastprune.ops import CRITERIA, criterion_power, kernel_scores

BACKENDS = ["cpu", "torch"] + (["triton"] if HAS_TRITON_ON_CPU else [])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("criterion", list(CRITERIA))
def test_matches_float64_reference_on_ragged_layers(backend: str, criterion: str) -> None:
    gen = torch.Generator().manual_seed(3)
    shapes = [(8, 3, 3), (4, 5, 1), (6, 2, 5), (3, 3, 7), (2, 1, 2)]
    if backend == "triton":  # its closed forms take k <= 3
        shapes = [(o, i, k) for o, i, k in shapes if k <= 3]
    weights = [torch.randn(o, i, k, k, generator=gen) for o, i, k in shapes]
    got = kernel_scores(weights, criterion, backend=backend)
    assert isinstance(got, list) and len(got) == len(weights)
    for scores, w in zip(got, weights):
        assert scores.shape == w.shape[:2] and scores.dtype == torch.float32
        expected = reference_kernel_scores(w.numpy(), criterion)
        scale = np.abs(w.numpy()).max() ** (criterion_power(criterion, w.shape[-1]))
        np.testing.assert_allclose(scores.numpy(), expected, rtol=2e-5, atol=1e-5 * scale)


def test_one_by_one_kernels_reduce_to_abs_weight() -> None:
    w = torch.randn(7, 5, 1, 1)
    for criterion in CRITERIA:
        scores = kernel_scores(w, criterion)
        expected = w.abs()[..., 0, 0] ** (2 if criterion == "det_gram" else 1)
        torch.testing.assert_close(scores, expected, rtol=1e-6, atol=0)


def test_whole_resnet56_in_one_call_matches_per_layer() -> None:
    gen = torch.Generator().manual_seed(4)
    weights = [torch.randn(s, generator=gen) * 0.1 for s in NETWORKS["resnet56"]]
    together = kernel_scores(weights, "spectral_norm")
    for scores, w in zip(together, weights):
        assert torch.equal(scores, kernel_scores(w, "spectral_norm"))


# Pruned at the same t (c(K) < t ** power): each set contains the previous one.
CHAIN = ["spectral_norm", "spectral_radius", "det", "min_eig", "min_eig_real"]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([1, 2, 3, 5, 7]), st.floats(-3.0, 0.5))
def test_pruned_set_inclusions(seed: int, k: int, log_t: float) -> None:
    rng = np.random.default_rng(seed)
    w = torch.from_numpy((rng.standard_normal((16, 8, k, k)) * 10.0 ** rng.uniform(-2, 0)).astype(np.float32))
    t = 10.0**log_t
    pruned = {c: (kernel_scores(w, c).double() < t ** criterion_power(c, k)) for c in CRITERIA}
    for smaller, larger in zip(CHAIN[:-1], CHAIN[1:]):
        assert not (pruned[smaller] & ~pruned[larger]).any(), (smaller, larger)
    assert torch.equal(pruned["det"], pruned["det_gram"])
    assert not (pruned["spectral_norm"] & ~pruned["weight"]).any()


def test_bad_input_errors() -> None:
    with pytest.raises(ValueError, match=r"criterion: expected one of 'weight', 'det'"):
        kernel_scores(torch.randn(2, 2, 3, 3), "trace")
    with pytest.raises(
        ValueError, match=r"weights: expected a conv weight \(O, I, k, k\) with square kernels"
    ):
        kernel_scores(torch.randn(2, 2, 3, 4), "det")
    with pytest.raises(ValueError, match=r"weights\[1\]: expected a conv weight .* got shape \(2, 2, 9, 9\)"):
        kernel_scores([torch.randn(2, 2, 3, 3), torch.randn(2, 2, 9, 9)], "det")
    with pytest.raises(TypeError, match=r"weights: expected float32.*or float64.*got torch.int32"):
        kernel_scores(torch.ones(2, 2, 3, 3, dtype=torch.int32), "det")  # float64 is accepted: test_float64
    with pytest.raises(ValueError, match="weights: expected a conv weight .* or a non-empty list"):
        kernel_scores([], "det")


@pytest.mark.parametrize("backend", BACKENDS)
def test_opcheck(backend: str) -> None:
    layers = [torch.randn(6, 9), torch.randn(4, 1)]
    torch.library.opcheck(torch.ops.fastprune.kernel_scores.default, (layers, 3, backend))
