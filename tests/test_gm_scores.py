"""fastprune.ops.gm_scores against float64 SciPy references, on every backend, with and without masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import (
    CPU_BACKENDS,
    METRIC_NAMES,
    assert_close_rel,
    near_duplicate_family,
    outputs_per_thread_count,
    reference_gm_scores,
    requires_cuda,
    rows_of,
)

from fastprune.benchmarks.networks import NETWORKS
from fastprune.ops import gm_scores

SHAPES = [(1, 5), (2, 1), (7, 13), (31, 144), (97, 37)]
TRITON_SHAPES = SHAPES[:4]


def _masks(n: int) -> dict[str, torch.Tensor | None]:
    some = torch.ones(n, dtype=torch.bool)
    some[1::3] = False
    all_but_one = torch.zeros(n, dtype=torch.bool)
    all_but_one[n // 2] = True
    return {
        "all_kept_none": None,
        "all_kept": torch.ones(n, dtype=torch.bool),
        "some_pruned": some,
        "all_but_one_pruned": all_but_one,
    }


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("metric", METRIC_NAMES)
@pytest.mark.parametrize("mask_name", ["all_kept_none", "all_kept", "some_pruned", "all_but_one_pruned"])
def test_matches_float64_reference(backend: str, metric: str, mask_name: str) -> None:
    gen = torch.Generator().manual_seed(11)
    for n, d in TRITON_SHAPES if backend == "triton" else SHAPES:
        x = torch.randn(n, d, generator=gen)
        mask = _masks(n)[mask_name]
        got = gm_scores(x, metric, mask, backend=backend)
        assert got.dtype == torch.float32 and got.shape == (n,)
        keep = None if mask is None else mask.numpy()
        assert_close_rel(
            got, reference_gm_scores(rows_of(x), metric, keep), what=f"{backend} {metric} {n}x{d}"
        )


def test_all_but_one_pruned_scores_zero_and_inf() -> None:
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(12))
    keep = torch.tensor([False, False, True, False, False, False])
    for backend in CPU_BACKENDS:
        got = gm_scores(x, "l2", keep, backend=backend)
        assert got[2] == 0.0 and torch.all(torch.isinf(got[~keep]))


@pytest.mark.parametrize("metric", METRIC_NAMES)
def test_whole_resnet56_in_one_call(metric: str) -> None:
    gen = torch.Generator().manual_seed(13)
    weights = [torch.randn(shape, generator=gen) for shape in NETWORKS["resnet56"]]
    masks = [torch.rand(w.shape[0], generator=gen) > 0.4 for w in weights]
    got = gm_scores(weights, metric, masks, backend="cpu")
    assert isinstance(got, list) and len(got) == len(weights)
    for index, (scores, w, m) in enumerate(zip(got, weights, masks)):
        assert_close_rel(scores, reference_gm_scores(rows_of(w), metric, m.numpy()), what=f"layer {index}")


@pytest.mark.parametrize("metric", METRIC_NAMES)
@pytest.mark.parametrize("n, d", [(1025, 64), (257, 4608)])
def test_large_layers_cpu(metric: str, n: int, d: int) -> None:
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(n + d))
    mask = torch.rand(n, generator=torch.Generator().manual_seed(1)) > 0.3
    got = gm_scores(x, metric, mask, backend="cpu")
    assert_close_rel(got, reference_gm_scores(rows_of(x), metric, mask.numpy()), what=f"cpu {metric} {n}x{d}")


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("metric", METRIC_NAMES)
def test_near_duplicate_family(backend: str, metric: str) -> None:
    x = near_duplicate_family(33, 576 if backend == "triton" else 4608, seed=14)
    got = gm_scores(x, metric, backend=backend)
    expected = reference_gm_scores(rows_of(x), metric)
    assert_close_rel(got, expected, what=f"{backend} {metric} near-duplicates")
    # The ranking FPGM uses (smallest scores first) matches the exact one.
    assert torch.equal(
        torch.argsort(got, stable=True)[:5], torch.from_numpy(np.argsort(expected, kind="stable")[:5])
    )


def test_mask_aware_scores_ignore_zeroed_filters() -> None:
    """Soft-pruned filters are zero and at distance 0 from each other; with the mask they neither get
    re-selected (score +inf) nor change the survivors' scores."""
    x = torch.randn(20, 27, generator=torch.Generator().manual_seed(15))
    keep = torch.ones(20, dtype=torch.bool)
    keep[[3, 7, 11, 12]] = False
    zeroed = x.clone()
    zeroed[~keep] = 0.0
    for backend in CPU_BACKENDS:
        masked = gm_scores(zeroed, "l2", keep, backend=backend)
        survivors_only = gm_scores(x[keep], "l2", backend=backend)
        torch.testing.assert_close(masked[keep], survivors_only, rtol=1e-6, atol=0.0)
        assert torch.all(torch.isinf(masked[~keep]))
        unmasked = gm_scores(zeroed, "l2", backend=backend)
        assert set(torch.argsort(unmasked)[:4].tolist()) == {3, 7, 11, 12}, "the trap the mask avoids"


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_repeated_runs_are_bitwise_identical(backend: str) -> None:
    gen = torch.Generator().manual_seed(16)
    weights = [torch.randn(n, d, generator=gen) for n, d in [(40, 20), (3, 9), (70, 33)]]
    first = gm_scores(weights, "cosine", backend=backend)
    for _ in range(2):
        assert all(torch.equal(a, b) for a, b in zip(first, gm_scores(weights, "cosine", backend=backend)))


_THREAD_SCRIPT = """
import sys, torch
from fastprune.benchmarks.networks import NETWORKS
from fastprune.ops import gm_scores, pairwise_distances
gen = torch.Generator().manual_seed(17)
weights = [torch.randn(s, generator=gen) for s in NETWORKS["resnet56"]]
weights.append(torch.randn(600, 300, generator=gen))
parts = [torch.cat(gm_scores(weights, m, backend="cpu")) for m in ("l2", "l1", "cosine", "sqeuclidean")]
parts.append(pairwise_distances(weights[-1], "l2", backend="cpu").reshape(-1))
torch.save(torch.cat(parts), sys.argv[1])
"""


def test_cpu_bitwise_identical_across_openmp_thread_counts(tmp_path) -> None:
    one_thread, two_threads = outputs_per_thread_count(_THREAD_SCRIPT, tmp_path)
    assert torch.equal(one_thread, two_threads)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_opcheck(backend: str) -> None:
    gen = torch.Generator().manual_seed(18)
    layers = [torch.randn(4, 7, generator=gen), torch.randn(6, 3, generator=gen)]
    mask = torch.tensor([1, 0, 1, 1, 1, 1, 0, 1, 1, 1], dtype=torch.uint8)
    for keep in (None, mask):
        torch.library.opcheck(torch.ops.fastprune.gm_scores.default, (layers, 0, keep, backend))


@requires_cuda
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("metric", METRIC_NAMES)
def test_cuda_backends(backend: str, metric: str) -> None:
    gen = torch.Generator().manual_seed(19)
    weights = [
        torch.randn(n, d, generator=gen) for n, d in [(1, 3), (2, 9), (97, 37), (1025, 64), (64, 4608)]
    ]
    weights.append(near_duplicate_family(33, 4608, seed=20))
    masks = [torch.rand(w.shape[0], generator=gen) > 0.3 for w in weights]
    got = gm_scores([w.cuda() for w in weights], metric, [m.cuda() for m in masks], backend=backend)
    again = gm_scores([w.cuda() for w in weights], metric, [m.cuda() for m in masks], backend=backend)
    for scores, repeat, w, m in zip(got, again, weights, masks):
        assert scores.is_cuda and torch.equal(scores, repeat)
        assert_close_rel(
            scores, reference_gm_scores(rows_of(w), metric, m.numpy()), what=f"{backend} {metric}"
        )


def test_works_under_torch_compile() -> None:
    """Registered ops with fake implementations: a compiled training-loop helper gets the same scores."""
    gen = torch.Generator().manual_seed(22)
    weights = [torch.randn(8, 3, 3, 3, generator=gen), torch.randn(16, 8, 3, 3, generator=gen)]
    mask = [torch.ones(8, dtype=torch.bool), torch.rand(16, generator=gen) > 0.5]

    def score(ws, ms):
        return [s * 2.0 for s in gm_scores(ws, "l2", ms)]

    compiled = torch.compile(score, backend="aot_eager")
    for got, expected in zip(compiled(weights, mask), score(weights, mask)):
        assert torch.equal(got, expected)
