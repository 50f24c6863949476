"""Calling the C ABI (through fastprune._C) on torch tensors: device code, stream, data pointers."""

from __future__ import annotations

import contextlib
from typing import Optional

import torch

from fastprune._native import native
from fastprune.ops._ragged import pack, sizes

_DEVICE_CPU, _DEVICE_CUDA = 0, 1


def call(
    op: str, rows: list[torch.Tensor], metric: int, out_size: int, keep_mask: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Runs native op `op` ("pairwise_distances" or "gm_scores") on (N_l, D_l) float32 contiguous rows.

    On the CPU each layer is passed by its own pointer (no packing copy); CUDA takes the packed layout.
    CUDA calls run on the caller's current stream of the rows' device."""
    out = torch.empty(out_size, dtype=torch.float32, device=rows[0].device)
    num_rows, row_dims = sizes(rows)
    cuda = rows[0].device.type == "cuda"
    packed = pack(rows) if cuda else None
    with torch.cuda.device(rows[0].device) if cuda else contextlib.nullcontext():
        data, layer_data = (packed.data_ptr(), []) if cuda else (0, [r.data_ptr() for r in rows])
        args = [data, layer_data, num_rows, row_dims, metric]
        if op == "gm_scores":
            args.append(0 if keep_mask is None else keep_mask.data_ptr())
        device, stream = (_DEVICE_CUDA, torch.cuda.current_stream().cuda_stream) if cuda else (_DEVICE_CPU, 0)
        getattr(native(), op)(*args, device, stream, out.data_ptr())
    return out


def call_small_matrix(op: str, matrices: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Runs native small-matrix op `op` on (count, n, n) float32 contiguous CPU matrices into `out`."""
    count, n = matrices.shape[0], matrices.shape[-1]
    native().small_matrix_op(op, matrices.data_ptr(), count, n, _DEVICE_CPU, 0, out.data_ptr())
    return out


def call_kernel_scores(rows: list[torch.Tensor], criterion: int) -> torch.Tensor:
    """c(K) for every kernel: rows[l] is layer l as (O_l * I_l, k_l * k_l) float32 contiguous (CPU)."""
    out = torch.empty(sum(r.shape[0] for r in rows), dtype=torch.float32)
    num_rows, row_dims = sizes(rows)
    layer_data = [r.data_ptr() for r in rows]
    native().kernel_scores(0, layer_data, num_rows, row_dims, criterion, _DEVICE_CPU, 0, out.data_ptr())
    return out
