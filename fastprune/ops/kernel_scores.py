"""kernel_scores: the eigenvalue-based pruning criteria of every k x k kernel of every conv, in one pass."""

from __future__ import annotations

from typing import Sequence, Union

import torch

from fastprune.ops import _native_call
from fastprune.ops._library import register
from fastprune.ops._ragged import (
    check_float_tensor,
    float_rows,
    pack,
    result_dtype,
    select_float_backend,
    sizes,
    split_per_layer,
)
from fastprune.ops._small_matrix import MAX_N

# Criterion names -> fp_kernel_criterion ids. c(K) for one k x k kernel K; kept iff c(K) >= t ** power.
CRITERIA = {
    "weight": 0,  # mean |K|                       power 1
    "det": 1,  # |det K|                           power k
    "det_gram": 2,  # |det(K^T K)| = det(K)^2      power 2k
    "min_eig": 3,  # min |lambda|                  power 1
    "min_eig_real": 4,  # min |Re lambda|          power 1
    "spectral_radius": 5,  # max |lambda|          power 1
    "spectral_radius_real": 6,  # max |Re lambda|  power 1
    "spectral_norm": 7,  # largest singular value  power 1
}


def criterion_power(criterion: str, k: int) -> int:
    """Exponent p of the threshold: a k x k kernel is kept iff c(K) >= t ** p (one global t works across
    kernel sizes because det scales like |w|^k)."""
    criterion_id(criterion)
    return {"det": k, "det_gram": 2 * k}.get(criterion, 1)


def criterion_id(criterion: str) -> int:
    if not isinstance(criterion, str) or criterion not in CRITERIA:
        raise ValueError(
            f"criterion: expected one of {', '.join(repr(c) for c in CRITERIA)}, got {criterion!r}"
        )
    return CRITERIA[criterion]


def criterion_with_torch(
    kernels: torch.Tensor, criterion: int, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """(..., k, k) -> (...) c(K) with torch.linalg in `dtype`: the torch backend (float64), and the
    per-layer baseline of the benchmarks (float32, as a PyTorch user would write it)."""
    x = kernels.to(dtype)
    if criterion == CRITERIA["weight"]:
        return x.abs().mean(dim=(-2, -1))
    if criterion in (CRITERIA["det"], CRITERIA["det_gram"]):
        det = torch.linalg.det(x).abs()
        return det * det if criterion == CRITERIA["det_gram"] else det
    if criterion == CRITERIA["spectral_norm"]:
        return torch.linalg.svdvals(x)[..., 0]
    eig = torch.linalg.eigvals(x)
    real_part = criterion in (CRITERIA["min_eig_real"], CRITERIA["spectral_radius_real"])
    values = eig.real.abs() if real_part else eig.abs()
    return (
        values.amin(-1) if criterion in (CRITERIA["min_eig"], CRITERIA["min_eig_real"]) else values.amax(-1)
    )


def _torch(rows: list[torch.Tensor], criterion: int) -> torch.Tensor:
    return torch.cat(
        [criterion_with_torch(r.view(r.shape[0], int(r.shape[1] ** 0.5), -1), criterion) for r in rows]
    ).to(result_dtype(rows[0]))


def _triton(rows: list[torch.Tensor], criterion: int) -> torch.Tensor:
    from fastprune.triton_kernels.small_matrix import kernel_scores as triton_kernel_scores

    return triton_kernel_scores(pack(rows), *sizes(rows), criterion)


_IMPLEMENTATIONS = {
    "cpu": _native_call.call_kernel_scores,
    "cuda": _native_call.call_kernel_scores,
    "triton": _triton,
    "torch": _torch,
}


def _implementation(layers: list[torch.Tensor], criterion: int, backend: str) -> torch.Tensor:
    """layers[l]: (O_l * I_l, k_l * k_l) float32 contiguous -> (sum O_l I_l,) float32 scores."""
    return _IMPLEMENTATIONS[backend](layers, criterion)


def _fake(layers, criterion, backend):
    return layers[0].new_empty(sum(r.shape[0] for r in layers))


register("kernel_scores", "(Tensor[] layers, int criterion, str backend) -> Tensor", _implementation, _fake)


def _kernel_rows(
    weights: Union[torch.Tensor, Sequence[torch.Tensor]],
) -> tuple[list[torch.Tensor], int, bool]:
    """Checks the weights; returns per layer (O * I, k * k) float32 rows (float64 when any layer is
    float64), the largest k, and whether one tensor (not a list) was given."""
    single = isinstance(weights, torch.Tensor)
    layers = [weights] if single else weights
    if not isinstance(layers, (list, tuple)) or len(layers) == 0:
        raise ValueError("weights: expected a conv weight (O, I, k, k) or a non-empty list of them")
    rows = []
    for index, w in enumerate(layers):
        name = "weights" if single else f"weights[{index}]"
        check_float_tensor(w, name, "weights", float64=True)
        if w.dim() != 4 or w.shape[2] != w.shape[3] or not 1 <= w.shape[2] <= MAX_N or w.numel() == 0:
            raise ValueError(
                f"{name}: expected a conv weight (O, I, k, k) with square kernels, 1 <= k <= {MAX_N} and "
                f"O, I >= 1, got shape {tuple(w.shape)}"
            )
        if w.device != layers[0].device:
            raise ValueError(f"{name}: expected every layer on {layers[0].device}, got {w.device}")
        rows.append(w)
    dtype = torch.float64 if any(w.dtype is torch.float64 for w in rows) else torch.float32
    rows = [float_rows(w, w.shape[0] * w.shape[1], w.shape[2] * w.shape[3], dtype) for w in rows]
    return rows, max(w.shape[2] for w in layers), single


def kernel_scores(
    weights: Union[torch.Tensor, Sequence[torch.Tensor]], criterion: str, *, backend: str = "auto"
) -> Union[torch.Tensor, list[torch.Tensor]]:
    """c(K) for every k x k kernel K = W[o, i] of each conv weight W (O, I, k, k) -> (O, I) float32
    (float64 weights, or a list with any: computed and returned in float64 by the torch backend).

    Criteria (Cugu & Akbas; a kernel is kept iff c(K) >= t ** criterion_power(criterion, k)):
        "weight" mean |K|; "det" |det K|; "det_gram" |det K^T K|; "min_eig" min |lambda|;
        "min_eig_real" min |Re lambda|; "spectral_radius" max |lambda|; "spectral_radius_real"
        max |Re lambda|; "spectral_norm" largest singular value.
    Complex eigenvalues count by modulus (or |Re| in the _real variants). 1 x 1 kernels reduce to |w|
    (det_gram to w^2, compared with t^2). A list of weights is scored in one native call; eigenvalues
    are never written to memory. Backends: "cpu", "torch" (float64 torch.linalg), or "auto".
    """
    code = criterion_id(criterion)
    rows, largest_k, single = _kernel_rows(weights)
    name = select_float_backend(backend, rows[0], "kernel_scores", matrix_n=largest_k)
    out = torch.ops.fastprune.kernel_scores(rows, code, name)
    layers = [weights] if single else list(weights)
    parts = [
        s.view(w.shape[0], w.shape[1]) for s, w in zip(torch.split(out, [r.shape[0] for r in rows]), layers)
    ]
    return split_per_layer(parts, single)
