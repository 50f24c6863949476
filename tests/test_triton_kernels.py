"""Triton pairwise_distances / gm_scores against float64 references built from explicit differences.

Without CUDA the kernels run under the Triton interpreter on CPU tensors, so sizes stay small.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from conftest import assert_close_rel, reference_distances, rows_of

# conftest.py sets TRITON_INTERPRET=1 without CUDA before this import (@triton.jit picks interpreter or
# compiler when it decorates). triton is a test requirement: a missing install fails, it does not skip.
from fastprune.triton_kernels import gm_scores, pairwise_distances

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
METRICS = {"l2": 0, "l1": 1, "cosine": 2, "sqeuclidean": 3}
# N = 1, non-power-of-2 N, N spanning several 16- and 32-row tiles; D not a multiple of BLOCK_D.
MIXED_SHAPES = [(1, 3), (2, 5), (7, 9), (17, 33), (5, 70), (40, 20)]


def _pack(layers: list[torch.Tensor]) -> tuple[torch.Tensor, list[int], list[int]]:
    data = torch.cat([x.reshape(-1) for x in layers]).to(torch.float32).contiguous().to(DEVICE)
    return data, [x.shape[0] for x in layers], [x.shape[1] for x in layers]


def _mixed_layers(seed: int = 0) -> list[torch.Tensor]:
    """Random layers of different magnitudes; the 17 x 33 layer has a zero row and a duplicate pair."""
    gen = torch.Generator().manual_seed(seed)
    layers = [torch.randn(n, d, generator=gen) * 10.0 ** (i % 3 - 1) for i, (n, d) in enumerate(MIXED_SHAPES)]
    layers[3][4] = 0.0
    layers[3][9] = layers[3][2]
    return layers


def _near_duplicate_layers(seed: int = 1) -> list[torch.Tensor]:
    """Each layer one family: rows = base + 1e-4 |base| noise / sqrt(D), the pairs FPGM must rank."""
    gen = torch.Generator().manual_seed(seed)
    layers = []
    for n, d in [(3, 5), (17, 33), (6, 70), (35, 9)]:
        base = torch.randn(d, generator=gen, dtype=torch.float64)
        noise = torch.randn(n, d, generator=gen, dtype=torch.float64)
        layers.append(base + 1e-4 * base.norm() * noise / d**0.5)
    return layers


_NAMES = {code: name for name, code in METRICS.items()}


def _reference(layers: list[torch.Tensor], metric: int) -> list[np.ndarray]:
    """float64 N x N matrices (the shared SciPy reference) of the float32 rows the kernels see."""
    return [reference_distances(rows_of(x.float()), _NAMES[metric]) for x in layers]


def _split(flat: torch.Tensor, sizes: list[int]) -> list[torch.Tensor]:
    return list(torch.split(flat.cpu(), sizes))


@pytest.mark.parametrize("metric", METRICS.values(), ids=METRICS.keys())
@pytest.mark.parametrize("make_layers", [_mixed_layers, _near_duplicate_layers], ids=["mixed", "near_dup"])
def test_pairwise_matches_reference(metric: int, make_layers: Callable[[], list[torch.Tensor]]) -> None:
    layers = make_layers()
    data, num_rows, row_dims = _pack(layers)
    out = pairwise_distances(data, num_rows, row_dims, metric)
    assert out.dtype == torch.float32 and out.shape == (sum(n * n for n in num_rows),)
    for got, ref, n in zip(_split(out, [n * n for n in num_rows]), _reference(layers, metric), num_rows):
        got = got.view(n, n)
        assert torch.equal(got, got.T), "each pair is computed once and mirrored"
        assert torch.all(got.diagonal() == 0)
        assert_close_rel(got, ref)


def _masks(num_rows: list[int]) -> dict[str, torch.Tensor | None]:
    total = sum(num_rows)
    some = torch.ones(total, dtype=torch.bool)
    some[::3] = False
    one_per_layer = torch.zeros(total, dtype=torch.uint8)
    one_per_layer[torch.tensor([0, *num_rows[:-1]]).cumsum(0)] = 1
    return {"all_kept": None, "some_pruned": some, "one_kept_per_layer": one_per_layer}


@pytest.mark.parametrize("metric", METRICS.values(), ids=METRICS.keys())
@pytest.mark.parametrize("mask_name", ["all_kept", "some_pruned", "one_kept_per_layer"])
@pytest.mark.parametrize("make_layers", [_mixed_layers, _near_duplicate_layers], ids=["mixed", "near_dup"])
def test_gm_scores_match_reference(
    metric: int, mask_name: str, make_layers: Callable[[], list[torch.Tensor]]
) -> None:
    layers = make_layers()
    data, num_rows, row_dims = _pack(layers)
    mask = _masks(num_rows)[mask_name]
    scores = gm_scores(data, num_rows, row_dims, metric, None if mask is None else mask.to(DEVICE))
    assert scores.dtype == torch.float32 and scores.shape == (sum(num_rows),)
    kept = torch.ones(sum(num_rows), dtype=torch.bool) if mask is None else mask.bool()
    for got, ref, keep in zip(_split(scores, num_rows), _reference(layers, metric), _split(kept, num_rows)):
        assert torch.all(got[~keep] == float("inf"))
        keep_np = keep.numpy()
        assert_close_rel(got[keep], (ref * keep_np[None, :]).sum(1)[keep_np])


def test_runs_are_bitwise_identical() -> None:
    data, num_rows, row_dims = _pack(_mixed_layers(seed=3))
    mask = _masks(num_rows)["some_pruned"].to(DEVICE)
    for metric in (METRICS["l2"], METRICS["cosine"]):
        assert torch.equal(
            pairwise_distances(data, num_rows, row_dims, metric),
            pairwise_distances(data, num_rows, row_dims, metric),
        )
        assert torch.equal(
            gm_scores(data, num_rows, row_dims, metric, mask),
            gm_scores(data, num_rows, row_dims, metric, mask),
        )


def test_rejects_bad_arguments() -> None:
    data, num_rows, row_dims = _pack([torch.randn(3, 4)])
    with pytest.raises(ValueError, match="metric"):
        pairwise_distances(data, num_rows, row_dims, 4)
    with pytest.raises(ValueError, match="sum N_l"):
        pairwise_distances(data[:-1].contiguous(), num_rows, row_dims, 0)
    with pytest.raises(ValueError, match=">= 1"):
        gm_scores(data, [0, 3], [4, 4], 0, None)
    with pytest.raises(ValueError, match="keep_mask"):
        gm_scores(data, num_rows, row_dims, 0, torch.ones(4, dtype=torch.bool, device=DEVICE))
