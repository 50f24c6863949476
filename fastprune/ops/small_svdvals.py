"""small_svdvals: singular values of batches of small (n <= 7) real matrices."""

from __future__ import annotations

import torch

from fastprune.ops._small_matrix import define


def _reference(matrices: torch.Tensor) -> torch.Tensor:
    return torch.linalg.svdvals(matrices.double())  # float64: define() gives the op dtype


_run = define("small_svdvals", lambda count, n: (count, n), torch.float32, _reference)


def small_svdvals(x: torch.Tensor, *, backend: str = "auto") -> torch.Tensor:
    """Singular values, descending, of every n x n matrix in x (..., n, n), 1 <= n <= 7 -> float32 (..., n).

    One-sided Jacobi in double precision, so small singular values keep their relative accuracy
    (forming K^T K would square the condition number). NaN/Inf input gives NaN.
    Backends: "cpu", "torch" (float64 torch.linalg.svdvals reference), or "auto".
    """
    return _run(x, backend)
