"""The "torch" backend: plain PyTorch in float64, layer by layer. The oracle the kernels are held to
(tests still check every backend, this one included, against independent SciPy references)."""

from __future__ import annotations

from typing import Optional

import torch

from fastprune.ops._ragged import METRICS, result_dtype


def layer_distances(rows: torch.Tensor, metric: int) -> torch.Tensor:
    """(N, D) rows -> (N, N) float64 distances; diagonal 0. For float32 rows the Gram form of l2 and cosine
    in float64 is accurate to ~1e-8 relative even for filters 1e-4 apart, far inside float32 tolerances;
    float64 rows (a float64 computation) take the differences themselves, so near-duplicate filters keep
    their float64 distance (the Gram form would cancel it to 0 below ~1e-7)."""
    x = rows.to(torch.float64)
    exact = rows.dtype is torch.float64
    if metric == METRICS["l1"]:
        dist = torch.cdist(x, x, p=1.0)
    elif metric == METRICS["cosine"]:
        norms = x.norm(dim=1, keepdim=True)
        unit = torch.where(norms > 0, x / norms.clamp_min(torch.finfo(torch.float64).tiny), 0.0)
        if exact:  # 1 - u.v = |u - v|^2 / 2 for unit rows; a zero row is at distance 1 from every row
            dist = _differences(unit).square() / 2
            zero = norms[:, 0] == 0
            dist[zero, :] = 1.0
            dist[:, zero] = 1.0
        else:  # 1 - u.v gives zero rows their distance 1 (|u - v|^2 / 2 would give 1/2).
            dist = (1.0 - unit @ unit.T).clamp_min(0.0)
    elif exact:
        dist = _differences(x)
        if metric != METRICS["l2"]:
            dist = dist.square()
    else:
        sq = (x * x).sum(dim=1)
        dist = (sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)).clamp_min(0.0)
        if metric == METRICS["l2"]:
            dist = dist.sqrt()
    dist.fill_diagonal_(0.0)
    return dist


def _differences(x: torch.Tensor) -> torch.Tensor:
    """Euclidean distances from the row differences (no Gram product)."""
    return torch.cdist(x, x, p=2.0, compute_mode="donot_use_mm_for_euclid_dist")


def pairwise_distances(rows: list[torch.Tensor], metric: int) -> torch.Tensor:
    return torch.cat([layer_distances(r, metric).reshape(-1) for r in rows]).to(result_dtype(rows[0]))


def gm_scores(rows: list[torch.Tensor], metric: int, keep_mask: Optional[torch.Tensor]) -> torch.Tensor:
    keep = torch.ones(sum(r.shape[0] for r in rows), dtype=torch.bool, device=rows[0].device)
    if keep_mask is not None:
        keep = keep_mask.bool()
    out = []
    for r, kept in zip(rows, torch.split(keep, [r.shape[0] for r in rows])):
        scores = (layer_distances(r, metric) * kept[None, :]).sum(dim=1)
        out.append(torch.where(kept, scores, torch.inf))
    return torch.cat(out).to(result_dtype(rows[0]))
