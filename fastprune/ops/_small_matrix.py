"""Shared plumbing of the small-matrix ops (small_eigvals, small_svdvals, small_det): input checks,
batching into (count, n, n) float32, backend dispatch, registration."""

from __future__ import annotations

from typing import Callable

import torch

from fastprune.ops import _native_call
from fastprune.ops._library import register
from fastprune.ops._ragged import check_float_tensor, float_rows, result_dtype, select_float_backend

MAX_N = 7


def as_matrix_batch(x: torch.Tensor, op: str) -> torch.Tensor:
    """(..., n, n) float32/float16/bfloat16 -> contiguous float32 (count, n, n), 1 <= n <= 7; float64 stays
    float64 (computed in float64)."""
    check_float_tensor(x, "x", "matrices", float64=True)
    if x.dim() < 2 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"x: expected square matrices of shape (..., n, n), got shape {tuple(x.shape)}")
    n = x.shape[-1]
    if not 1 <= n <= MAX_N:
        raise ValueError(f"x: expected 1 <= n <= {MAX_N} (the k x k kernels of a conv), got n = {n}")
    dtype = torch.float64 if x.dtype is torch.float64 else torch.float32
    return float_rows(x, x.numel() // (n * n), n * n, dtype).view(-1, n, n)


def define(
    op: str, out_shape: Callable[[int, int], tuple], out_dtype: torch.dtype, reference: Callable
) -> Callable:
    """Registers fastprune::<op>(Tensor x, str backend) and returns the function that runs it.

    out_shape(count, n) is the native output shape per batch; the result is reshaped to x's batch dims
    and, for complex output, viewed as complex64 from (re, im) float pairs. `reference` (the torch backend)
    computes in float64; float64 matrices get its result in float64 / complex128, others in out_dtype."""

    def native(matrices: torch.Tensor) -> torch.Tensor:
        out = torch.empty(
            out_shape(matrices.shape[0], matrices.shape[-1]), dtype=torch.float32, device=matrices.device
        )
        _native_call.call_small_matrix(op, matrices, out)
        return torch.view_as_complex(out) if out_dtype.is_complex else out

    def triton(matrices: torch.Tensor) -> torch.Tensor:
        from fastprune.triton_kernels import small_matrix

        out = getattr(small_matrix, op)(matrices)
        return torch.view_as_complex(out) if out_dtype.is_complex else out

    def torch_backend(matrices: torch.Tensor) -> torch.Tensor:
        return reference(matrices).to(result_dtype(matrices, out_dtype))

    implementations = {"cpu": native, "cuda": native, "triton": triton, "torch": torch_backend}

    def implementation(matrices: torch.Tensor, backend: str) -> torch.Tensor:
        return implementations[backend](matrices)

    def fake(matrices: torch.Tensor, backend: str) -> torch.Tensor:
        shape = out_shape(matrices.shape[0], matrices.shape[-1])
        dtype = result_dtype(matrices, out_dtype)
        return matrices.new_empty(shape[:-1] if out_dtype.is_complex else shape, dtype=dtype)

    register(op, "(Tensor matrices, str backend) -> Tensor", implementation, fake)
    packed_op = getattr(torch.ops.fastprune, op)

    def run(x: torch.Tensor, backend: str) -> torch.Tensor:
        matrices = as_matrix_batch(x, op)
        name = select_float_backend(backend, matrices, op, matrix_n=matrices.shape[-1])
        out = packed_op(matrices, name)
        return out.reshape(x.shape[:-2] + out.shape[1:])  # () for one matrix's det

    return run
