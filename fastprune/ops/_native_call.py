"""Calling the C ABI (through fastprune._C) on torch tensors: device code, stream, data pointers."""

from __future__ import annotations

import contextlib

import torch

from fastprune._native import native

_DEVICE_CPU, _DEVICE_CUDA = 0, 1


def exec_args(tensor: torch.Tensor) -> tuple[int, int]:
    """(fp_device, cudaStream_t as int) for a tensor: the C ABI runs on the caller's current stream."""
    if tensor.device.type == "cuda":
        return _DEVICE_CUDA, torch.cuda.current_stream(tensor.device).cuda_stream
    return _DEVICE_CPU, 0


def device_guard(tensor: torch.Tensor) -> contextlib.AbstractContextManager:
    """Makes the tensor's GPU current for the native call (a no-op on the CPU)."""
    return torch.cuda.device(tensor.device) if tensor.device.type == "cuda" else contextlib.nullcontext()


def call(op: str, data: torch.Tensor, num_rows: list[int], row_dims: list[int], metric: int, out_size: int,
         keep_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Runs native op `op` ("pairwise_distances" or "gm_scores") and returns its float32 output."""
    out = torch.empty(out_size, dtype=torch.float32, device=data.device)
    with device_guard(data):
        device, stream = exec_args(data)
        args = [data.data_ptr(), num_rows, row_dims, metric]
        if op == "gm_scores":
            args.append(0 if keep_mask is None else keep_mask.data_ptr())
        getattr(native(), op)(*args, device, stream, out.data_ptr())
    return out
