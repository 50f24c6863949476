"""The compaction entry points: :func:`compact` (any supported network) and :func:`apply_masks`."""

from __future__ import annotations

import copy
from typing import Mapping, Optional, Sequence, Union

import torch
from torch import nn

from fastprune.compaction.graph import compact_graph, default_shape
from fastprune.compaction.report import CompactionReport
from fastprune.compaction.resnet import compact_resnet
from fastprune.pruning.channels import UnsupportedModelError
from fastprune.pruning.flops import count_dense_flops, count_flops
from fastprune.pruning.torch_masks import has_torch_masks, materialized

__all__ = ["apply_masks", "compact"]


def apply_masks(
    model: nn.Module,
    filter_masks: Optional[Mapping[str, torch.Tensor]] = None,
    kernel_masks: Optional[Mapping[str, torch.Tensor]] = None,
) -> nn.Module:
    """Zero, in place, the pruned filters (``{conv name: (O,) bool, True = kept}``, weight and bias) and
    kernels (``{conv name: (O, I) bool}``) of ``model``; returns it. A name that is not a Conv2d of the
    model, or a mask of the wrong shape or dtype, raises ValueError naming it."""
    modules = dict(model.named_modules())
    for kind, masks in (("filter_masks", filter_masks), ("kernel_masks", kernel_masks)):
        for name, mask in (masks or {}).items():
            conv = modules.get(name)
            if not isinstance(conv, nn.Conv2d):
                what = (
                    "not a module of the model" if conv is None else f"a {type(conv).__name__}, not a Conv2d"
                )
                raise ValueError(f"{kind}[{name!r}]: {what}")
            shape = tuple(conv.weight.shape[:1] if kind == "filter_masks" else conv.weight.shape[:2])
            if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or tuple(mask.shape) != shape:
                got = (
                    f"{mask.dtype} {tuple(mask.shape)}"
                    if isinstance(mask, torch.Tensor)
                    else type(mask).__name__
                )
                raise ValueError(f"{kind}[{name!r}]: expected a bool tensor of shape {shape}, got {got}")
            keep = mask.to(device=conv.weight.device, dtype=conv.weight.dtype)
            with torch.no_grad():
                conv.weight.mul_(keep.view(*shape, *([1] * (conv.weight.dim() - len(shape)))))
                if kind == "filter_masks" and conv.bias is not None:
                    conv.bias.mul_(keep)
    return model


def compact(
    model: nn.Module,
    *,
    filter_masks: Optional[Mapping[str, torch.Tensor]] = None,
    kernel_masks: Optional[Mapping[str, torch.Tensor]] = None,
    input_shape: Optional[Sequence[int]] = None,
    return_report: bool = False,
) -> Union[nn.Module, tuple[nn.Module, CompactionReport]]:
    """The compact dense network equal (eval mode) to the masked ``model``.

    fastprune's ResNets (and torchvision's) become a :class:`CompactResNet`
    (:mod:`fastprune.compaction.resnet`: constant channels kept as planes, an inference form); any other
    CNN that Torch-Pruning traces becomes a smaller copy of itself (:mod:`fastprune.compaction.graph`).

    Args:
        model: the pruned network (zeroed filters / kernels, or torch.nn.utils.prune masks; eval-mode BN).
            It is not modified.
        filter_masks, kernel_masks: optional masks to apply first (see :func:`apply_masks`).
        input_shape: (C, H, W): the report's MAC counts, and the example input that traces a model other
            than a ResNet (default from ``model.family``; required where that is unknown).
        return_report: also return a :class:`CompactionReport`.
    Returns:
        the compact network in eval mode on the model's device (and the report).
    Raises:
        UnsupportedModelError: a model neither path handles (names the module and the reason).
        ValueError: masks that do not fit the model, or no input shape for a model that needs one.
    """
    if has_torch_masks(model):  # pruned with torch.nn.utils.prune (or export_masks): plain weights first
        model = materialized(model)
    if filter_masks or kernel_masks:
        model = apply_masks(copy.deepcopy(model), filter_masks, kernel_masks)
    try:
        small, report = compact_resnet(model)
        shape = tuple(int(d) for d in input_shape)[-3:] if input_shape is not None else report.input_shape
    except UnsupportedModelError:
        shape = default_shape(model, input_shape)
        small, report = compact_graph(model, shape)
    if not return_report:
        return small
    report.params_before = sum(p.numel() for p in model.parameters())
    report.params_after = sum(p.numel() for p in small.parameters())
    if shape is not None:
        report.input_shape = shape
        report.macs_before = count_flops(model, shape).dense_macs
        report.macs_after = count_dense_flops(small, shape).macs
    return small, report
