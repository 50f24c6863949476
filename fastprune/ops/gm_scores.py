"""gm_scores: geometric-median (FPGM) scores of every layer's filters, whole network in one call."""

from __future__ import annotations

from typing import Optional, Union

import torch

from fastprune.ops import _native_call, _reference
from fastprune.ops._library import register
from fastprune.ops._ragged import (
    Filters,
    Mask,
    check_finite,
    metric_id,
    pack,
    pack_mask,
    prepare_layers,
    select_float_backend,
    sizes,
    split_per_layer,
)


def _triton(rows: list[torch.Tensor], metric: int, keep_mask: Optional[torch.Tensor]) -> torch.Tensor:
    from fastprune.triton_kernels import gm_scores

    check_finite(rows)
    return gm_scores(pack(rows), *sizes(rows), metric, keep_mask)


def _torch(rows: list[torch.Tensor], metric: int, keep_mask: Optional[torch.Tensor]) -> torch.Tensor:
    check_finite(rows)
    return _reference.gm_scores(rows, metric, keep_mask)


def _native(rows: list[torch.Tensor], metric: int, keep_mask: Optional[torch.Tensor]) -> torch.Tensor:
    return _native_call.call("gm_scores", rows, metric, sum(r.shape[0] for r in rows), keep_mask)


_IMPLEMENTATIONS = {"cpu": _native, "cuda": _native, "triton": _triton, "torch": _torch}


def _implementation(
    layers: list[torch.Tensor], metric: int, keep_mask: Optional[torch.Tensor], backend: str
) -> torch.Tensor:
    """layers: (N_l, D_l) float32 contiguous; keep_mask None or (sum N_l,) uint8 -> (sum N_l,) float32
    scores, layer after layer. `backend` is a concrete backend name."""
    return _IMPLEMENTATIONS[backend](layers, metric, keep_mask)


def _fake(layers, metric, keep_mask, backend):
    return layers[0].new_empty(sum(r.shape[0] for r in layers))


register(
    "gm_scores",
    "(Tensor[] layers, int metric, Tensor? keep_mask, str backend) -> Tensor",
    _implementation,
    _fake,
)


def gm_scores(
    filters: Filters, metric: str = "l2", mask: Mask = None, *, backend: str = "auto"
) -> Union[torch.Tensor, list[torch.Tensor]]:
    """Geometric-median scores: the summed distance of each filter to the other kept filters of its layer.

        g_j = sum_{j' kept} d(F_j, F_j'),   F_j = W[j].flatten()

    with d as in :func:`fastprune.ops.pairwise_distances` ("l2", "l1", "cosine", "sqeuclidean"),
    computed without forming the N x N matrix. FPGM prunes the filters with the smallest g_j (closest
    to the geometric median, so most replaceable by the others).

    Mask-aware scoring: `mask` (True = kept) leaves pruned filters out of every sum and gives them
    +inf, so soft-pruned (zeroed) filters, which are at distance 0 from each other, no longer pull the
    scores or get re-selected as "closest to the median" every epoch. A layer with one kept filter
    scores it 0.

    Args:
        filters: one weight (N, C, k, k) or (N, D), or a list of them (one per layer), float32
            (float16/bfloat16 accepted, computed in float32; float64 computed and returned in float64, by
            the torch backend). A list is scored in one native call.
        metric: "l2" (FPGM's default), "l1", "cosine" or "sqeuclidean".
        mask: None (all kept), or a bool tensor of shape (N,) per layer (a list for a list input), on
            the filters' device.
        backend: "auto", "cpu", "cuda", "triton" or "torch" (see fastprune.backends).
    Returns:
        float32 (N,) scores (float64 for float64 filters), or a list of them; deterministic (bitwise
        identical across runs and thread counts).
    Raises:
        ValueError / TypeError naming the bad argument; ValueError for NaN/Inf weights.
    """
    metric_code = metric_id(metric)
    layers = prepare_layers(filters)
    keep_mask = pack_mask(mask, layers)
    name = select_float_backend(backend, layers.rows[0], "gm_scores")
    out = torch.ops.fastprune.gm_scores(layers.rows, metric_code, keep_mask, name)
    return split_per_layer(list(torch.split(out, [r.shape[0] for r in layers.rows])), layers.single)
