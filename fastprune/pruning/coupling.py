"""Coupled filters: channels that must be pruned together, from Torch-Pruning's DependencyGraph.

In a ResNet every conv's filters can go independently (compaction keeps a residual channel while any
contributor is alive). In other networks a channel is often shared: a depthwise conv's channel is its
input channel, so it goes with the filter of the conv before it; the two sides of a residual add, or a
concatenation's slice and the filter that feeds it, are one channel. Pruning them separately leaves work
that nothing removes. Torch-Pruning's groups name those couplings; here each group becomes a
:class:`CoupledGroup`: the selected convs producing its channels (``members``: conv name and the filter
index of each group channel).

Group score (the reduction, as Torch-Pruning's default ``group_reduction="mean"`` with
``normalizer="mean"``): each member's filter scores are divided by their mean over the group's channels
(layers score on different scales), then averaged over the members:

    score[k] = 1/M sum_m s_m[idx_m(k)] / mean_k' s_m[idx_m(k')]

and the floor(n * rate) lowest-scoring channels of the group (ties by index) are pruned in every member.
A group's members are the selected convs among the layers producing its channels: an unselected one (a
projection shortcut, by default) keeps its filters, the others are pruned together; a selected conv the
graph does not couple is a group of its own. Pruning only zeroes filters: compaction then removes what
is dead in every member of Torch-Pruning's group and keeps the rest (a channel that reaches the
network's output, or that an unselected layer still produces).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

import torch
from torch import nn

from fastprune.pruning.graph_liveness import trace_graph


@dataclass
class CoupledGroup:
    """Channels pruned together: ``members`` = [(conv name, filter index of group channel k for each k)]."""

    size: int
    members: list[tuple[str, list[int]]] = field(default_factory=list)


def coupled_groups(
    model: nn.Module, selected: Mapping[str, nn.Conv2d], example: torch.Tensor
) -> list[CoupledGroup]:
    """The coupled groups of the `selected` convs of `model`, every selected conv in exactly one (see the
    module docstring)."""
    graph, _ = trace_graph(model, example)
    names = {module: name for name, module in model.named_modules()}
    groups = []
    covered: set[str] = set()
    for group in graph.get_all_groups(root_module_types=(nn.Conv2d,)):
        size = len(group[0].idxs)
        members: dict[str, list[int]] = {}
        for item in group:
            module = item.dep.target.module
            name = names.get(module)
            if (
                name not in selected
                or name in covered
                or not graph.is_out_channel_pruning_fn(item.dep.handler)
            ):
                continue
            index = members.setdefault(name, [0] * size)
            for idx, root in zip(item.idxs, item.root_idxs):
                index[root] = idx
        if members:
            covered.update(members)
            groups.append(CoupledGroup(size, sorted(members.items())))
    for name, conv in selected.items():  # not traced as an out-channel member: on its own
        if name not in covered:
            groups.append(CoupledGroup(conv.out_channels, [(name, list(range(conv.out_channels)))]))
    return groups


def group_masks(
    groups: list[CoupledGroup], scores: Mapping[str, torch.Tensor], rates: Mapping[str, float]
) -> dict[str, torch.Tensor]:
    """{conv name: (O,) keep mask} for the members of `groups` (see the module docstring); the rate of a
    group is the highest of its members' rates."""
    masks: dict[str, torch.Tensor] = {}
    for group in groups:
        total = None
        for name, index in group.members:
            score = scores[name].double()[index]
            mean = score.mean()
            score = score / mean if float(mean) > 0 else score
            total = score if total is None else total + score
        assert total is not None
        rate = max(rates[name] for name, _ in group.members)
        count = int(math.floor(group.size * rate + 1e-9))
        keep = torch.ones(group.size, dtype=torch.bool, device=total.device)
        keep[torch.sort(total, stable=True).indices[:count]] = False
        for name, index in group.members:
            mask = masks.setdefault(name, torch.ones_like(scores[name], dtype=torch.bool))
            mask[index] = keep.to(mask.device)
    return masks
