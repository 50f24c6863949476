"""Keeping pruned weights at zero while a network fine-tunes."""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from fastprune.pruning.layers import following_batchnorm


class KeepMasks:
    """Holds per-conv keep-masks ({conv name: (O,) filter or (O, I) kernel mask, True = kept}) on a
    model: zeroes the pruned weights now, masks their gradients and optimizer state, and re-zeroes them
    after every optimizer step, so fine-tuning never revives them. A filter mask also holds the scale
    and shift of the BatchNorm after the conv at zero (BN's shift gets gradients even when the conv
    output is zero, and would turn the removed channel into a nonzero constant)."""

    def __init__(self, model: nn.Module, masks: Mapping[str, torch.Tensor], optimizer: torch.optim.Optimizer):
        modules = dict(model.named_modules())
        self.masks = {name: mask.detach().cpu().bool().clone() for name, mask in masks.items()}
        self._weights: list[tuple[torch.Tensor, torch.Tensor]] = []  # (param, broadcastable float mask)
        for name, mask in self.masks.items():
            conv = modules.get(name)
            if not isinstance(conv, nn.Conv2d):
                raise ValueError(f"masks: {name!r} is not a Conv2d of the model")
            if mask.shape not in ((conv.out_channels,), (conv.out_channels, conv.in_channels)):
                raise ValueError(
                    f"masks[{name!r}]: expected shape ({conv.out_channels},) or "
                    f"({conv.out_channels}, {conv.in_channels}), got {tuple(mask.shape)}"
                )
            view = mask.reshape(*mask.shape, *([1] * (conv.weight.dim() - mask.dim())))
            self._weights.append((conv.weight, view.to(conv.weight.device, conv.weight.dtype)))
            if conv.bias is not None and mask.dim() == 1:
                self._weights.append((conv.bias, mask.to(conv.bias.device, conv.bias.dtype)))
            bn = following_batchnorm(model, name) if mask.dim() == 1 else None
            if bn is not None and bn.affine:
                for param in (bn.weight, bn.bias):
                    self._weights.append((param, mask.to(param.device, param.dtype)))
        self.optimizer = optimizer
        self._hooks = [param.register_hook(lambda g, m=m: g * m) for param, m in self._weights]
        self._hooks.append(optimizer.register_step_post_hook(lambda *_: self.apply()))
        self.apply()

    @torch.no_grad()
    def apply(self) -> None:
        for param, mask in self._weights:
            param.mul_(mask)
            for value in self.optimizer.state.get(param, {}).values():
                if isinstance(value, torch.Tensor) and value.shape == param.shape:
                    value.mul_(mask)

    def pruned_share(self) -> float:
        total = sum(m.numel() for m in self.masks.values())
        return sum(int((~m).sum()) for m in self.masks.values()) / max(total, 1)

    def remove(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()
