"""The built-in filter criteria of SFP, FPGM and MFP (He et al.); see ../shared/reference/PRUNING.md §2.

F_j = W[j].flatten() is filter j of a layer (length C·k·k). Every criterion scores all layers in one
batched call: the norms in one segmented reduction, the distance sums in one `gm_scores` call (one
native call or kernel launch for the whole network).

=============  ================================================================================
``l1``         ‖F_j‖₁ (prune the smallest)
``l2``         ‖F_j‖₂ (SFP's criterion)
``fpgm``       g_j = Σ_j' d(F_j, F_j'), d = l2 (paper default), l1 or cosine: prune the filters
               closest to the layer's geometric median. ``mask_aware=True``: filters that are
               exactly zero are left out of every sum and ranked first (see below)
``fpgm_he``    the authors' released code: the ``norm_rate`` share of filters with the smallest
               ℓ2 norm goes first, the distance sums are taken among the others, always Euclidean
               (their ℓ1/cosine switch never takes effect)
``fpgm_mix``   FPGM-mix: ``norm_share`` of each layer's pruned filters chosen by smallest ℓ2 norm,
               the rest by smallest distance sum among the remaining filters
=============  ================================================================================

``fpgm_he`` and ``fpgm_mix`` are orderings, not scores: they return each filter's rank in the pruning
order (0.0 = pruned first), which is what the pruner needs.

Mask-aware scoring: under hard pruning, pruned filters stay exactly zero. They sit at distance 0 from
each other, so plain FPGM pulls the geometric median towards the origin and keeps re-selecting them
(users of FPGM's code found the pruning interval "useless"). ``mask_aware=True`` drops zero filters
from the distance sums, so the live filters are ranked among themselves, and ranks the zero filters
first (-inf): they carry nothing, so pruning them again costs nothing.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from fastprune.criteria.registry import register
from fastprune.ops import gm_scores

DISTANCE_METRICS = ("l2", "l1", "cosine")


def filter_norms(weights: Sequence[torch.Tensor], p: int) -> list[torch.Tensor]:
    """‖F_j‖_p (p = 1 or 2) of every filter of every layer, in one segmented reduction (float32)."""
    if p not in (1, 2):
        raise ValueError(f"p: expected 1 or 2, got {p!r}")
    flat = torch.cat([w.detach().reshape(-1).float() for w in weights])
    flat = flat.abs() if p == 1 else flat.square()
    lengths = torch.tensor(
        [w[0].numel() for w in weights for _ in range(w.shape[0])], device=flat.device, dtype=torch.long
    )
    sums = torch.segment_reduce(flat, "sum", lengths=lengths, unsafe=True)
    norms = sums if p == 1 else sums.sqrt()
    return list(torch.split(norms, [w.shape[0] for w in weights]))


def _nonzero_rows(weights: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    return [w.detach().flatten(1).ne(0).any(dim=1) for w in weights]


def _check_metric(metric: str) -> None:
    if metric not in DISTANCE_METRICS:
        raise ValueError(f"metric: expected one of {', '.join(map(repr, DISTANCE_METRICS))}, got {metric!r}")


def _check_share(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
        raise ValueError(f"{name}: expected a number in [0, 1], got {value!r}")


@register("l1")
def l1(weights, *, num_pruned, masks):
    """‖F_j‖₁."""
    return filter_norms(weights, 1)


@register("l2")
def l2(weights, *, num_pruned, masks):
    """‖F_j‖₂ (soft filter pruning, SFP)."""
    return filter_norms(weights, 2)


@register("fpgm")
def fpgm(weights, *, num_pruned, masks, metric: str = "l2", mask_aware: bool = False, backend: str = "auto"):
    """g_j = Σ_j' d(F_j, F_j') over the layer's filters (over its nonzero filters when mask_aware)."""
    _check_metric(metric)
    if not mask_aware:
        return gm_scores(list(weights), metric, backend=backend)
    alive = _nonzero_rows(weights)
    scores = gm_scores(list(weights), metric, alive, backend=backend)
    return [torch.where(a, s, -torch.inf) for a, s in zip(alive, scores)]


def _rank_scores(first: torch.Tensor, first_key: torch.Tensor, rest: torch.Tensor, rest_key: torch.Tensor):
    """Ranks (0.0 = pruned first): the `first` filters by ascending first_key, then `rest` by rest_key
    (stable: ties by filter index)."""
    order = torch.cat(
        [first[torch.sort(first_key, stable=True).indices], rest[torch.sort(rest_key, stable=True).indices]]
    )
    ranks = torch.empty(order.numel(), dtype=torch.float32, device=order.device)
    ranks[order] = torch.arange(order.numel(), dtype=torch.float32, device=order.device)
    return ranks


def _norm_then_distance(
    weights: Sequence[torch.Tensor],
    norm_counts: Sequence[int],
    metric: str,
    mask_aware: bool,
    backend: str,
) -> list[torch.Tensor]:
    """Per layer: the norm_counts[l] smallest-ℓ2 filters first, then the others by their distance sums
    among themselves (all layers' distance sums in one gm_scores call)."""
    norms = filter_norms(weights, 2)
    by_norm, survivors = [], []
    for norm, count in zip(norms, norm_counts):
        order = torch.sort(norm, stable=True).indices
        by_norm.append(order[:count])
        survivors.append(torch.sort(order[count:]).values)
    rows = [w.detach().flatten(1)[s] for w, s in zip(weights, survivors)]
    alive: Optional[list[torch.Tensor]] = _nonzero_rows(rows) if mask_aware else None
    distance = gm_scores(rows, metric, alive, backend=backend)
    if alive is not None:
        distance = [torch.where(a, d, -torch.inf) for a, d in zip(alive, distance)]
    return [
        _rank_scores(first, norm[first], rest, d)
        for first, rest, norm, d in zip(by_norm, survivors, norms, distance)
    ]


@register("fpgm_he")
def fpgm_he(weights, *, num_pruned, masks, norm_rate: float = 0.0, backend: str = "auto"):
    """The authors' code: int(N·norm_rate) smallest-ℓ2 filters first, then Euclidean distance sums among
    the rest (norm_rate = 1 − their `rate_norm`; their default 1.0 means norm_rate 0)."""
    _check_share("norm_rate", norm_rate)
    counts = [min(int(w.shape[0] * norm_rate), w.shape[0] - 1) for w in weights]
    return _norm_then_distance(weights, counts, "l2", False, backend)


@register("fpgm_mix")
def fpgm_mix(
    weights,
    *,
    num_pruned,
    masks,
    norm_share: float = 0.25,
    metric: str = "l2",
    mask_aware: bool = False,
    backend: str = "auto",
):
    """FPGM-mix: round(norm_share · num_pruned) filters by smallest ℓ2 norm, the rest of the pruned
    count by smallest distance sum among the remaining filters."""
    _check_share("norm_share", norm_share)
    _check_metric(metric)
    counts = [min(round(norm_share * n), w.shape[0] - 1) for w, n in zip(weights, num_pruned)]
    return _norm_then_distance(weights, counts, metric, mask_aware, backend)
