"""Keeping pruned weights at zero while a network trains: hard filter pruning and masked fine-tuning."""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from fastprune.pruning.layers import following_batchnorm


class KeepMasks:
    """Holds per-conv keep-masks ({conv name: (O,) filter or (O, I) kernel mask, True = kept}) on a
    model: zeroes the pruned weights (and a filter's bias) now, masks their gradients and optimizer
    state (momentum, Adam moments), and re-zeroes them after every optimizer step, so training never
    revives them.

    The masks are used by reference: changing them in place (as SoftFilterPruner's hard mode does at
    every step) changes what is held. `batchnorm=True` also holds the scale and shift of the BatchNorm
    after each filter-masked conv at zero (BN's shift gets gradients even when the conv output is zero,
    and would turn a removed channel into a nonzero constant): for fine-tuning a pruning made final.
    """

    def __init__(
        self,
        model: nn.Module,
        masks: Mapping[str, torch.Tensor],
        optimizer: torch.optim.Optimizer,
        *,
        batchnorm: bool = True,
    ) -> None:
        modules = dict(model.named_modules())
        self._masks = dict(masks)
        self._held: list[tuple[torch.Tensor, torch.Tensor]] = []  # (parameter, its bool mask)
        for name, mask in self._masks.items():
            conv = modules.get(name)
            if not isinstance(conv, nn.Conv2d):
                raise ValueError(f"masks: {name!r} is not a Conv2d of the model")
            per_group = conv.in_channels // conv.groups  # a kernel mask is (O, C/groups), as the weight
            if mask.dtype != torch.bool or mask.shape not in (
                (conv.out_channels,),
                (conv.out_channels, per_group),
            ):
                raise ValueError(
                    f"masks[{name!r}]: expected a bool tensor of shape ({conv.out_channels},) or "
                    f"({conv.out_channels}, {per_group}), got {mask.dtype} {tuple(mask.shape)}"
                )
            self._held.append((conv.weight, mask))
            if mask.dim() == 1:
                bn = following_batchnorm(model, name) if batchnorm else None
                extra = [conv.bias] + ([bn.weight, bn.bias] if bn is not None and bn.affine else [])
                self._held += [(param, mask) for param in extra if param is not None]
        self.optimizer = optimizer
        self._hooks = [param.register_hook(lambda g, m=mask: g * _view(m, g)) for param, mask in self._held]
        self._hooks.append(optimizer.register_step_post_hook(lambda *_: self.apply()))
        self.apply()

    @property
    def masks(self) -> dict[str, torch.Tensor]:
        """The held masks (CPU copies, for checkpoints)."""
        return {name: mask.detach().cpu().clone() for name, mask in self._masks.items()}

    @torch.no_grad()
    def apply(self) -> None:
        """Zero the held entries of the weights and of their optimizer state."""
        for param, mask in self._held:
            keep = _view(mask, param)
            param.mul_(keep)
            for value in self.optimizer.state.get(param, {}).values():
                if isinstance(value, torch.Tensor) and value.shape == param.shape:
                    value.mul_(keep)

    def pruned_share(self) -> float:
        total = sum(m.numel() for m in self._masks.values())
        return sum(int((~m).sum()) for m in self._masks.values()) / max(total, 1)

    def remove(self) -> None:
        """Stop holding: detach the gradient and optimizer hooks (weights stay as they are)."""
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()


def _view(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """`mask` as a float tensor broadcastable over `like` (filter masks over (O, ...), kernel masks over
    (O, I, kh, kw))."""
    return mask.to(like.device, like.dtype).reshape(*mask.shape, *([1] * (like.dim() - mask.dim())))
