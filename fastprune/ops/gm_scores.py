"""gm_scores: geometric-median (FPGM) scores of every layer's filters, whole network in one call."""

from __future__ import annotations

from typing import Optional, Union

import torch

from fastprune.backends import select_backend
from fastprune.ops import _native_call, _reference
from fastprune.ops._ragged import Filters, Mask, check_finite, metric_id, pack_filters, pack_mask, split_per_layer


def _triton(data, num_rows, row_dims, metric, keep_mask):
    check_finite(data, num_rows, row_dims)
    from fastprune.triton_kernels import gm_scores

    return gm_scores(data, num_rows, row_dims, metric, keep_mask)


def _torch(data, num_rows, row_dims, metric, keep_mask):
    check_finite(data, num_rows, row_dims)
    return _reference.gm_scores(data, num_rows, row_dims, metric, keep_mask)


def _native(data, num_rows, row_dims, metric, keep_mask):
    return _native_call.call("gm_scores", data, num_rows, row_dims, metric, sum(num_rows), keep_mask)


_IMPLEMENTATIONS = {"cpu": _native, "cuda": _native, "triton": _triton, "torch": _torch}


@torch.library.custom_op("fastprune::gm_scores", mutates_args=())
def gm_scores_packed(
    data: torch.Tensor,
    num_rows: list[int],
    row_dims: list[int],
    metric: int,
    keep_mask: Optional[torch.Tensor],
    backend: str,
) -> torch.Tensor:
    """Packed form: data (sum N_l D_l,) float32, keep_mask None or (sum N_l,) uint8 -> (sum N_l,)
    float32 scores, layer after layer. `backend` is a concrete backend name."""
    return _IMPLEMENTATIONS[backend](data, num_rows, row_dims, metric, keep_mask)


@gm_scores_packed.register_fake
def _(data, num_rows, row_dims, metric, keep_mask, backend):
    return data.new_empty(sum(num_rows))


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
            (float16/bfloat16 accepted, computed in float32). A list is scored in one native call.
        metric: "l2" (FPGM's default), "l1", "cosine" or "sqeuclidean".
        mask: None (all kept), or a bool tensor of shape (N,) per layer (a list for a list input), on
            the filters' device.
        backend: "auto", "cpu", "cuda", "triton" or "torch" (see fastprune.backends).
    Returns:
        float32 (N,) scores, or a list of them; deterministic (bitwise identical across runs and
        thread counts).
    Raises:
        ValueError / TypeError naming the bad argument; ValueError for NaN/Inf weights.
    """
    metric_code = metric_id(metric)
    packed = pack_filters(filters)
    keep_mask = pack_mask(mask, packed)
    name = select_backend(backend, packed.device.type, "gm_scores")
    out = torch.ops.fastprune.gm_scores(packed.data, packed.num_rows, packed.row_dims, metric_code, keep_mask, name)
    return split_per_layer(out, packed.num_rows, packed.single)
