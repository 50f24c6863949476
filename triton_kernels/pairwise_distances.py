"""Full per-layer distance matrices of a ragged batch in one Triton launch (fp_pairwise_distances)."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._ragged import load_tile, prepare, tile_distances


@triton.jit
def _pairwise_kernel(
    data_ptr,
    scales_ptr,
    meta_ptr,
    tiles_ptr,
    out_ptr,
    METRIC: tl.constexpr,
    BLOCK: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """One program per tile-table entry (layer, I, J), J >= I: computes the BLOCK x BLOCK block once,
    stores it at (I, J) of the layer's N x N matrix and, off the diagonal tiles, mirrored at (J, I)."""
    tile_i, _, rows_i, rows_j, n, d, data_off, row_off, mat_off = load_tile(
        tiles_ptr, meta_ptr, tl.program_id(0), BLOCK
    )
    dist = tile_distances(
        data_ptr, scales_ptr, rows_i, rows_j, n, d, data_off, row_off, METRIC, BLOCK, BLOCK_D
    ).to(tl.float32)
    valid = (rows_i < n)[:, None] & (rows_j < n)[None, :]
    tl.store(out_ptr + mat_off + rows_i[:, None] * n + rows_j[None, :], dist, mask=valid)
    # A diagonal tile already holds both orders of each pair (bitwise equal: |a-b| = |b-a|), so only
    # off-diagonal tiles mirror. The test is per element because the interpreter mis-types masks
    # combined from a tensor and a scalar bool.
    off_diagonal = (rows_j // BLOCK != tile_i)[None, :]
    tl.store(out_ptr + mat_off + rows_j[None, :] * n + rows_i[:, None], dist, mask=valid & off_diagonal)


def pairwise_distances(
    data: torch.Tensor, num_rows: list[int], row_dims: list[int], metric: int
) -> torch.Tensor:
    """Distance matrices of every layer of a packed ragged batch.

    Args:
        data: 1-D contiguous float32, sum_l N_l * D_l floats; layer l is an N_l x D_l row-major block.
        num_rows: N_l >= 1 per layer.
        row_dims: D_l >= 1 per layer.
        metric: 0 l2 ||a-b||_2, 1 l1 ||a-b||_1, 2 cosine 1 - a.b/(|a||b|) (a zero row is at distance 1
            from every other row), 3 sqeuclidean ||a-b||_2^2.

    Returns:
        1-D float32 of sum_l N_l^2: layer l's N_l x N_l matrix, row-major, starts at sum_{m<l} N_m^2.
        The diagonal is exactly 0 and the matrices are exactly symmetric.

    Raises:
        ValueError: bad sizes, dtype, layout or metric, or non-finite data.
    """
    launch = prepare(data, num_rows, row_dims, metric)
    out = torch.empty(sum(int(n) ** 2 for n in num_rows), dtype=torch.float32, device=data.device)
    _pairwise_kernel[(launch.tiles.shape[0],)](
        data,
        launch.scales,
        launch.meta,
        launch.tiles,
        out,
        METRIC=metric,
        BLOCK=launch.block,
        BLOCK_D=launch.block_d,
    )
    return out
