"""Geometric-median (FPGM) scores of a ragged batch without forming N x N (fp_gm_scores)."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._ragged import load_tile, prepare, tile_distances


@triton.jit
def _gm_partials_kernel(
    data_ptr,
    scales_ptr,
    meta_ptr,
    tiles_ptr,
    keep_ptr,
    partials_ptr,
    num_slots,
    METRIC: tl.constexpr,
    BLOCK: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """One program per tile-table entry (layer, I, J), J >= I.

    With w_ab = d(F_a, F_b) for kept a, b (0 otherwise), writes in float64
        partials[row_off + a, J] = sum_{b in tile J} w_ab   for a in tile I,
        partials[row_off + b, I] = sum_{a in tile I} w_ab   for b in tile J (J > I only),
    so every (row, other-side tile) slot has exactly one writer: no atomics, deterministic."""
    tile_i, tile_j, rows_i, rows_j, n, d, data_off, row_off, _ = load_tile(
        tiles_ptr, meta_ptr, tl.program_id(0), BLOCK
    )
    dist = tile_distances(
        data_ptr, scales_ptr, rows_i, rows_j, n, d, data_off, row_off, METRIC, BLOCK, BLOCK_D
    ).to(tl.float64)
    valid_i = rows_i < n
    valid_j = rows_j < n
    keep_i = tl.load(keep_ptr + row_off + rows_i, mask=valid_i, other=0) != 0
    keep_j = tl.load(keep_ptr + row_off + rows_j, mask=valid_j, other=0) != 0
    # Padding rows load as not kept, so they drop out with the pruned ones.
    dist = tl.where(keep_i[:, None] & keep_j[None, :], dist, 0.0)
    tl.store(partials_ptr + (row_off + rows_i) * num_slots + tile_j, tl.sum(dist, axis=1), mask=valid_i)
    # A diagonal tile's row sums already cover both orders of each of its pairs. (tile_j != tile_i is
    # tested per element: the interpreter mis-types masks combined from a tensor and a scalar bool.)
    tl.store(
        partials_ptr + (row_off + rows_j) * num_slots + tile_i,
        tl.sum(dist, axis=0),
        mask=valid_j & (rows_j // BLOCK != tile_i),
    )


def gm_scores(
    data: torch.Tensor,
    num_rows: list[int],
    row_dims: list[int],
    metric: int,
    keep_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """FPGM scores g_j = sum over kept j' != j of d(F_j, F_j'), per layer, for a packed ragged batch.

    Args:
        data, num_rows, row_dims, metric: as for `pairwise_distances`.
        keep_mask: None (all kept) or a bool / uint8 tensor of sum_l N_l on data's device, nonzero =
            kept. Pruned filters are left out of every sum and score +inf.

    Returns:
        1-D float32 of sum_l N_l; layer l's scores start at sum_{m<l} N_m. Bitwise reproducible:
        tile programs write float64 partial sums to fixed slots, reduced in a fixed order.

    Raises:
        ValueError: bad sizes, dtype, layout, metric or mask, or non-finite data.
    """
    launch = prepare(data, num_rows, row_dims, metric)
    if keep_mask is None:
        keep = torch.ones(launch.total_rows, dtype=torch.uint8, device=data.device)
    else:
        if keep_mask.dtype not in (torch.bool, torch.uint8) or keep_mask.shape != (launch.total_rows,):
            raise ValueError(
                f"keep_mask must be a bool or uint8 tensor of shape ({launch.total_rows},), "
                f"got {keep_mask.dtype} {tuple(keep_mask.shape)}"
            )
        if keep_mask.device != data.device:
            raise ValueError(f"keep_mask is on {keep_mask.device}, data on {data.device}")
        keep = keep_mask.to(torch.uint8).contiguous()
    # Slots past a layer's own tile count are never written and must add 0.
    partials = torch.zeros(launch.total_rows, launch.max_tiles, dtype=torch.float64, device=data.device)
    _gm_partials_kernel[(launch.tiles.shape[0],)](
        data,
        launch.scales,
        launch.meta,
        launch.tiles,
        keep,
        partials,
        launch.max_tiles,
        METRIC=metric,
        BLOCK=launch.block,
        BLOCK_D=launch.block_d,
    )
    scores = partials.sum(dim=1).to(torch.float32)  # fixed-order reduction, no atomics
    return torch.where(keep != 0, scores, torch.full_like(scores, float("inf")))
