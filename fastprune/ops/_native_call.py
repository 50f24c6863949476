"""Calling the C ABI (through fastprune._C) on torch tensors: device code, stream, data pointers.

On the CPU every layer of a ragged batch is passed by its own pointer (no packing copy); CUDA takes the
packed layout. CUDA calls run on the caller's current stream of the tensors' device.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from fastprune._native import native
from fastprune.ops._ragged import pack, sizes

_DEVICE_CPU, _DEVICE_CUDA = 0, 1


def _on_device(tensor: torch.Tensor, call: Callable[[int, int], None]) -> None:
    """call(fp_device, stream) with the tensor's GPU current (a plain call on the CPU)."""
    if tensor.device.type != "cuda":
        call(_DEVICE_CPU, 0)
        return
    with torch.cuda.device(tensor.device):
        call(_DEVICE_CUDA, torch.cuda.current_stream().cuda_stream)


def _batch_args(rows: list[torch.Tensor]) -> tuple[list, torch.Tensor | None]:
    """[data, layer_data, num_rows, row_dims] for a ragged batch, and the packed tensor to keep alive."""
    num_rows, row_dims = sizes(rows)
    if rows[0].device.type == "cuda":
        packed = pack(rows)
        return [packed.data_ptr(), [], num_rows, row_dims], packed
    return [0, [r.data_ptr() for r in rows], num_rows, row_dims], None


def call(
    op: str, rows: list[torch.Tensor], metric: int, out_size: int, keep_mask: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Runs native op `op` ("pairwise_distances" or "gm_scores") on (N_l, D_l) float32 contiguous rows."""
    out = torch.empty(out_size, dtype=torch.float32, device=rows[0].device)
    args, _packed = _batch_args(rows)
    args.append(metric)
    if op == "gm_scores":
        args.append(0 if keep_mask is None else keep_mask.data_ptr())
    _on_device(out, lambda device, stream: getattr(native(), op)(*args, device, stream, out.data_ptr()))
    return out


def call_small_matrix(op: str, matrices: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Runs native small-matrix op `op` on (count, n, n) float32 contiguous matrices into `out`."""
    count, n = matrices.shape[0], matrices.shape[-1]
    _on_device(
        out,
        lambda device, stream: native().small_matrix_op(
            op, matrices.data_ptr(), count, n, device, stream, out.data_ptr()
        ),
    )
    return out


def call_kernel_scores(rows: list[torch.Tensor], criterion: int) -> torch.Tensor:
    """c(K) for every kernel: rows[l] is layer l as (O_l * I_l, k_l * k_l) float32 contiguous."""
    out = torch.empty(sum(r.shape[0] for r in rows), dtype=torch.float32, device=rows[0].device)
    args, _packed = _batch_args(rows)
    _on_device(
        out, lambda device, stream: native().kernel_scores(*args, criterion, device, stream, out.data_ptr())
    )
    return out
