"""small_det: determinants of batches of small (n <= 7) real matrices."""

from __future__ import annotations

import torch

from fastprune.ops._small_matrix import define


def _reference(matrices: torch.Tensor) -> torch.Tensor:
    return torch.linalg.det(matrices.double())  # float64: define() gives the op dtype


_run = define("small_det", lambda count, n: (count,), torch.float32, _reference)


def small_det(x: torch.Tensor, *, backend: str = "auto") -> torch.Tensor:
    """det K for every n x n matrix in x (..., n, n), 1 <= n <= 7 -> float32 (...).

    Closed form for n <= 3, partially pivoted elimination for larger n, in double precision.
    Backends: "cpu", "torch" (float64 torch.linalg.det reference), or "auto".
    """
    return _run(x, backend)
