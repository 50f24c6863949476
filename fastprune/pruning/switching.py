"""Attributes that rate a candidate pruned network for MFP-style criterion switching (lower = better).

The MFP paper's exact meta-attribute could not be retrieved; these are a reconstruction (README):

    "loss"       the neighbour's loss on a held-out batch (eval mode: BN running statistics);
    "diversity"  a weight-distribution attribute needing no data: minus the mean, over the pruned layers,
                 of the mean ℓ2 distance between the kept filters divided by their mean ℓ2 norm, i.e.
                 prefer the neighbour whose surviving filters are least redundant.
A custom attribute is any function model -> float (lower = better), called on the neighbour network
(the candidate's filters zeroed).
"""

from __future__ import annotations

from typing import Callable, Mapping, Optional, Sequence

import torch
from torch import nn

from fastprune.ops import gm_scores

ATTRIBUTES = ("loss", "diversity")
# (neighbour model, {conv name: keep mask}, [(name, conv)]) -> rating, lower = better
Rating = Callable[[nn.Module, Mapping[str, torch.Tensor], Sequence[tuple[str, nn.Conv2d]]], float]


def held_out_loss(
    inputs: torch.Tensor, targets: torch.Tensor, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
) -> Rating:
    @torch.no_grad()
    def rate(model: nn.Module, masks, convs) -> float:
        was_training = model.training
        model.eval()
        try:
            return float(loss_fn(model(inputs), targets))
        finally:
            model.train(was_training)

    return rate


@torch.no_grad()
def diversity(model: nn.Module, masks: Mapping[str, torch.Tensor], convs, backend: str = "auto") -> float:
    """-mean_l [mean_{j≠j' kept} ‖F_j − F_j'‖₂ / mean_{j kept} ‖F_j‖₂], all layers in one gm_scores call."""
    weights = [conv.weight.detach() for _, conv in convs]
    keep = [masks[name] for name, _ in convs]
    sums = gm_scores(weights, "l2", keep, backend=backend)
    values = []
    for w, k, s in zip(weights, keep, sums):
        n = int(k.sum())
        if n < 2:
            continue
        mean_distance = float(s[k].double().sum()) / (n * (n - 1))
        mean_norm = float(w.flatten(1)[k].double().norm(dim=1).mean())
        values.append(mean_distance / mean_norm if mean_norm > 0 else 0.0)
    return -sum(values) / max(len(values), 1)


def resolve_attribute(
    attribute, held_out: Optional[tuple[torch.Tensor, torch.Tensor]], loss_fn, backend: str
) -> Rating:
    """The rating function for `attribute` ("loss", "diversity" or a function model -> float)."""
    if callable(attribute):
        return lambda model, masks, convs: attribute(model)
    if attribute == "diversity":
        return lambda model, masks, convs: diversity(model, masks, convs, backend)
    if held_out is None:
        raise ValueError('held_out: criterion switching with attribute="loss" needs step(held_out=(x, y))')
    inputs, targets = held_out
    return held_out_loss(inputs, targets, loss_fn)
