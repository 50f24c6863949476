"""Ragged-batch plumbing shared by the Triton ops (mirrors csrc/include/fastprune/detail/ragged.h).

A network's conv filters arrive packed layer after layer: layer l is an N_l x D_l row-major block of
`data`. One kernel launch covers every layer, so each program finds its work through two small int64
tables built here on the data's device:

* layer metadata, shape [L, 5]: (rows N_l, dims D_l, data_offset, row_offset, matrix_offset), the
  same offsets as fp::detail::layer_spans;
* tile table, shape [T, 3]: (layer, tile_i, tile_j) for every BLOCK x BLOCK tile pair with
  tile_j >= tile_i of every layer, so each unordered pair of filters lies in exactly one entry.

The device-side helpers `load_tile` and `tile_distances` are shared by the pairwise and gm kernels and
follow csrc/include/fastprune/detail/distance.h: direct differences a_k - b_k (no Gram trick),
|diff| summed for l1, diff^2 for l2 / sqeuclidean / cosine, then the metric's finish.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import triton
import triton.language as tl

METRIC_L2 = 0
METRIC_L1 = 1
METRIC_COSINE = 2
METRIC_SQEUCLIDEAN = 3
_META_COLUMNS = 5


class RaggedLaunch(NamedTuple):
    """Everything a tile kernel launch needs besides the op-specific buffers."""

    meta: torch.Tensor  # int64 [L, 5]
    tiles: torch.Tensor  # int64 [T, 3]
    scales: torch.Tensor  # float64 [sum N_l] unit scales for cosine; `data` itself otherwise (unused)
    block: int  # rows per tile side
    block_d: int  # weights per inner-loop chunk
    total_rows: int  # sum N_l
    max_tiles: int  # max_l ceil(N_l / block)


def block_sizes(metric: int) -> tuple[int, int]:
    """(BLOCK, BLOCK_D) per metric. Cosine accumulates in float64, twice the registers per element,
    so it gets smaller tiles; the [BLOCK, BLOCK, BLOCK_D] difference cube stays at 4-8K elements."""
    return (16, 16) if metric == METRIC_COSINE else (32, 8)


def layer_metadata(num_rows: list[int], row_dims: list[int], device: torch.device) -> torch.Tensor:
    """int64 [L, 5] rows of (N_l, D_l, data_offset, row_offset, matrix_offset)."""
    spans = []
    data = row = matrix = 0
    for n, d in zip(num_rows, row_dims):
        spans.append((n, d, data, row, matrix))
        data += n * d
        row += n
        matrix += n * n
    return torch.tensor(spans, dtype=torch.int64).reshape(-1, _META_COLUMNS).to(device)


def tile_table(num_rows: list[int], block: int, device: torch.device) -> torch.Tensor:
    """int64 [T, 3] rows of (layer, tile_i, tile_j), all tile_j >= tile_i, layer by layer."""
    parts = []
    for layer, n in enumerate(num_rows):
        tiles = math.ceil(n / block)
        upper = torch.triu_indices(tiles, tiles)  # [2, tiles * (tiles + 1) / 2], tile_i <= tile_j
        parts.append(torch.cat([torch.full((1, upper.shape[1]), layer), upper]).T)
    return torch.cat(parts).to(torch.int64).contiguous().to(device)


def check_batch(data: torch.Tensor, num_rows: list[int], row_dims: list[int]) -> None:
    """Validate a packed batch's sizes like the C ABI does (FP_ERR_INVALID_ARGUMENT becomes ValueError).
    NaN/Inf is checked by the caller (fastprune.ops), once for every backend without a native check."""
    if not isinstance(data, torch.Tensor) or data.dtype != torch.float32 or data.dim() != 1:
        raise ValueError("data must be a 1-D float32 tensor of packed filters")
    if not data.is_contiguous():
        raise ValueError("data must be contiguous")
    if len(num_rows) == 0 or len(num_rows) != len(row_dims):
        raise ValueError(
            f"num_rows and row_dims must be equally long and non-empty, got "
            f"{len(num_rows)} and {len(row_dims)}"
        )
    if any(int(n) < 1 for n in num_rows) or any(int(d) < 1 for d in row_dims):
        raise ValueError("every num_rows and row_dims entry must be >= 1")
    expected = sum(int(n) * int(d) for n, d in zip(num_rows, row_dims))
    if data.numel() != expected:
        raise ValueError(f"data has {data.numel()} floats, sum N_l * D_l = {expected}")


def prepare(data: torch.Tensor, num_rows: list[int], row_dims: list[int], metric: int) -> RaggedLaunch:
    """Validate the batch and build the tables (and cosine unit scales) for one tile-kernel launch."""
    check_batch(data, num_rows, row_dims)
    if metric not in (METRIC_L2, METRIC_L1, METRIC_COSINE, METRIC_SQEUCLIDEAN):
        raise ValueError(f"metric must be 0 (l2), 1 (l1), 2 (cosine) or 3 (sqeuclidean), got {metric}")
    num_rows = [int(n) for n in num_rows]
    row_dims = [int(d) for d in row_dims]
    block, block_d = block_sizes(metric)
    meta = layer_metadata(num_rows, row_dims, data.device)
    tiles = tile_table(num_rows, block, data.device)
    total_rows = sum(num_rows)
    scales = data
    if metric == METRIC_COSINE:
        # Diagonal entries of the tile table enumerate each layer's row tiles exactly once.
        row_tiles = tiles[tiles[:, 1] == tiles[:, 2]].contiguous()
        scales = torch.empty(total_rows, dtype=torch.float64, device=data.device)
        _unit_scales_kernel[(row_tiles.shape[0],)](
            data, meta, row_tiles, scales, BLOCK=block, BLOCK_D=block_d
        )
    max_tiles = max(math.ceil(n / block) for n in num_rows)
    return RaggedLaunch(meta, tiles, scales, block, block_d, total_rows, max_tiles)


@triton.jit
def load_tile(tiles_ptr, meta_ptr, t, BLOCK: tl.constexpr):
    """Entry t of the tile table: its layer's sizes/offsets and the layer-local row indices of both
    sides (int64 [BLOCK]; indices >= n are padding and must be masked by the caller)."""
    layer = tl.load(tiles_ptr + t * 3)
    tile_i = tl.load(tiles_ptr + t * 3 + 1)
    tile_j = tl.load(tiles_ptr + t * 3 + 2)
    n = tl.load(meta_ptr + layer * 5)
    d = tl.load(meta_ptr + layer * 5 + 1)
    data_off = tl.load(meta_ptr + layer * 5 + 2)
    row_off = tl.load(meta_ptr + layer * 5 + 3)
    mat_off = tl.load(meta_ptr + layer * 5 + 4)
    rows_i = tile_i * BLOCK + tl.arange(0, BLOCK)
    rows_j = tile_j * BLOCK + tl.arange(0, BLOCK)
    return tile_i, tile_j, rows_i, rows_j, n, d, data_off, row_off, mat_off


@triton.jit
def tile_distances(
    data_ptr,
    scales_ptr,
    rows_i,
    rows_j,
    n,
    d,
    data_off,
    row_off,
    METRIC: tl.constexpr,
    BLOCK: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """[BLOCK, BLOCK] distances d(F_rows_i, F_rows_j): float32, or float64 for cosine.

    The D loop bound is a runtime value (layers differ), chunks past D load zeros, which add nothing.
    Cosine scales both rows to unit length in float64 before differencing: near-duplicate filters
    have 1 - cos ~ 1e-9, far below float32 resolution of the row norms. The diagonal is exactly 0."""
    valid_i = rows_i < n
    valid_j = rows_j < n
    ptr_i = data_ptr + data_off + rows_i[:, None] * d
    ptr_j = data_ptr + data_off + rows_j[:, None] * d
    if METRIC == 2:
        scale_i = tl.load(scales_ptr + row_off + rows_i, mask=valid_i, other=0.0)
        scale_j = tl.load(scales_ptr + row_off + rows_j, mask=valid_j, other=0.0)
        acc = tl.zeros((BLOCK, BLOCK), dtype=tl.float64)
    else:
        acc = tl.zeros((BLOCK, BLOCK), dtype=tl.float32)
    for k0 in range(0, d, BLOCK_D):
        ks = k0 + tl.arange(0, BLOCK_D)
        in_d = (ks < d)[None, :]
        a = tl.load(ptr_i + ks[None, :], mask=valid_i[:, None] & in_d, other=0.0)
        b = tl.load(ptr_j + ks[None, :], mask=valid_j[:, None] & in_d, other=0.0)
        if METRIC == 2:
            a = a.to(tl.float64) * scale_i[:, None]
            b = b.to(tl.float64) * scale_j[:, None]
        diff = a[:, None, :] - b[None, :, :]
        if METRIC == 1:
            acc += tl.sum(tl.abs(diff), axis=2)
        else:
            acc += tl.sum(diff * diff, axis=2)
    if METRIC == 0:
        dist = tl.sqrt_rn(acc)  # IEEE sqrt like the C++ sqrt(); tl.sqrt may be approximate on GPU
    elif METRIC == 2:
        # 1 - cos = |u - v|^2 / 2 for unit rows; a zero row (scale 0) is at distance 1 from every
        # other row, zero or not (finish_pair_distance in distance.h; the difference form gives 1/2).
        zero_row = (scale_i == 0.0)[:, None] | (scale_j == 0.0)[None, :]
        dist = tl.where(zero_row, 1.0, acc * 0.5)
    else:
        dist = acc
    return tl.where(rows_i[:, None] == rows_j[None, :], 0.0, dist)


@triton.jit
def _unit_scales_kernel(
    data_ptr, meta_ptr, row_tiles_ptr, scales_ptr, BLOCK: tl.constexpr, BLOCK_D: tl.constexpr
):
    """scales[r] = 1 / sqrt(sum_k F_rk^2) in float64, 0 for a zero row; one program per row tile."""
    _, _, rows, _, n, d, data_off, row_off, _ = load_tile(row_tiles_ptr, meta_ptr, tl.program_id(0), BLOCK)
    valid = rows < n
    sq = tl.zeros((BLOCK,), dtype=tl.float64)
    for k0 in range(0, d, BLOCK_D):
        ks = k0 + tl.arange(0, BLOCK_D)
        x = tl.load(
            data_ptr + data_off + rows[:, None] * d + ks[None, :],
            mask=valid[:, None] & (ks < d)[None, :],
            other=0.0,
        ).to(tl.float64)
        sq += tl.sum(x * x, axis=1)
    # Zero rows: guard the sqrt argument so no division by zero happens on either branch. float64
    # sqrt and division are IEEE-rounded on every backend.
    scale = tl.where(sq > 0.0, 1.0 / tl.sqrt(tl.where(sq > 0.0, sq, 1.0)), 0.0)
    tl.store(scales_ptr + row_off + rows, scale, mask=valid)
