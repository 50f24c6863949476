"""small_eigvals: eigenvalues of batches of small (n <= 7) real matrices, e.g. every k x k conv kernel."""

from __future__ import annotations

import torch

from fastprune.ops._small_matrix import define


def _order(values: torch.Tensor) -> torch.Tensor:
    """Sorts each row of complex values: descending modulus, then descending real part, then
    descending imaginary part (so a conjugate pair comes as a + ib, a - ib)."""
    for key in (-values.imag, -values.real, -values.abs()):  # least significant key first; stable sorts
        values = torch.gather(values, -1, torch.sort(key, dim=-1, stable=True).indices)
    return values


def _reference(matrices: torch.Tensor) -> torch.Tensor:
    return _order(torch.linalg.eigvals(matrices.double()))  # complex128: define() gives the op dtype


_run = define("small_eigvals", lambda count, n: (count, n, 2), torch.complex64, _reference)


def small_eigvals(x: torch.Tensor, *, backend: str = "auto") -> torch.Tensor:
    """Eigenvalues of every n x n matrix in x (..., n, n), 1 <= n <= 7 -> complex64 (..., n).

    Per matrix the values are sorted by descending modulus, ties by descending real part, and a
    conjugate pair comes as (a + ib, a - ib) with b > 0, exactly conjugate. n <= 3 uses closed forms,
    n = 4..7 Hessenberg reduction and Francis double-shift QR in registers, all in double precision
    internally (csrc/include/fastprune/detail/small_matrix.h). NaN/Inf in a matrix make its eigenvalues
    NaN. Accuracy: |lambda - lambda_ref| <= 1e-5 max(1, ||K||_F) on well-conditioned matrices.
    Backends: "cpu", "torch" (float64 torch.linalg.eigvals reference), or "auto".
    """
    return _run(x, backend)
