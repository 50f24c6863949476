"""The "torch" backend: plain PyTorch in float64, layer by layer. The oracle the kernels are held to
(tests still check every backend, this one included, against independent NumPy references)."""

from __future__ import annotations

import torch

from fastprune.ops._ragged import METRICS


def layer_distances(rows: torch.Tensor, metric: int) -> torch.Tensor:
    """(N, D) rows -> (N, N) float64 distances; diagonal 0. float64 leaves the Gram form of l2 and
    cosine accurate to ~1e-8 relative even for filters 1e-4 apart, far inside fp32 tolerances."""
    x = rows.to(torch.float64)
    if metric == METRICS["l1"]:
        dist = torch.cdist(x, x, p=1.0)
    elif metric == METRICS["cosine"]:
        norms = x.norm(dim=1, keepdim=True)
        unit = torch.where(norms > 0, x / norms.clamp_min(torch.finfo(torch.float64).tiny), 0.0)
        # 1 - cos as |u - v|^2 / 2 would lose zero rows' convention; 1 - u.v gives 1 for them.
        dist = (1.0 - unit @ unit.T).clamp_min(0.0)
    else:
        sq = (x * x).sum(dim=1)
        dist = (sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)).clamp_min(0.0)
        if metric == METRICS["l2"]:
            dist = dist.sqrt()
    dist.fill_diagonal_(0.0)
    return dist


def pairwise_distances(data: torch.Tensor, num_rows: list[int], row_dims: list[int], metric: int) -> torch.Tensor:
    out, offset = [], 0
    for n, d in zip(num_rows, row_dims):
        out.append(layer_distances(data[offset : offset + n * d].view(n, d), metric).reshape(-1))
        offset += n * d
    return torch.cat(out).to(torch.float32)


def gm_scores(
    data: torch.Tensor, num_rows: list[int], row_dims: list[int], metric: int, keep_mask: torch.Tensor | None
) -> torch.Tensor:
    out, offset, row = [], 0, 0
    for n, d in zip(num_rows, row_dims):
        dist = layer_distances(data[offset : offset + n * d].view(n, d), metric)
        kept = torch.ones(n, dtype=torch.bool, device=data.device) if keep_mask is None else keep_mask[row : row + n].bool()
        scores = (dist * kept[None, :]).sum(dim=1)
        out.append(torch.where(kept, scores, torch.inf))
        offset += n * d
        row += n
    return torch.cat(out).to(torch.float32)
