"""MaskedConv2d: nn.Conv2d whose pruned filters / kernels are never computed (fastprune.ops.masked_conv2d).

y = conv2d(x, W * M, b, groups=groups) with the mask M held as a bool buffer: (O,) filter mask or
(O, C/groups) kernel mask, True = kept. The weight keeps its full (O, C/groups, kh, kw) shape (masked
entries get exactly zero gradient), so a model converted with convert() trains, saves and loads like the
original one. Grouped and depthwise convs (MobileNet) convert too.
"""

from __future__ import annotations

from typing import Mapping, Optional

import torch
from torch import nn

from fastprune.ops.masked_conv2d import check_mask, masked_conv2d


class MaskedConv2d(nn.Conv2d):
    """nn.Conv2d (any groups, zero padding) computing only the kept filters/kernels of `mask`
    (default: all kept): a filter mask (out_channels,) or a kernel mask (out_channels,
    in_channels / groups), like the weight's first two dimensions. `backend` as in
    fastprune.ops.masked_conv2d (under "auto", groups > 1 runs PyTorch's grouped convolution)."""

    def __init__(self, *args, mask: Optional[torch.Tensor] = None, backend: str = "auto", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.padding_mode != "zeros" or isinstance(self.padding, str):
            raise ValueError(
                f"padding: MaskedConv2d supports numeric zero padding only, got padding={self.padding!r}, "
                f"padding_mode={self.padding_mode!r}"
            )
        self.backend = backend
        full = torch.ones(self.out_channels, dtype=torch.bool, device=self.weight.device)
        self.register_buffer("mask", full)
        if mask is not None:
            self.set_mask(mask)

    def set_mask(self, mask: torch.Tensor) -> None:
        """Replaces the mask: bool (O,) filter mask or (O, C/groups) kernel mask on the weight's device."""
        check_mask(mask, self.weight.shape, self.weight.device)
        self.mask = mask.detach().clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return masked_conv2d(
            x,
            self.weight,
            self.mask,
            self.bias,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
            backend=self.backend,
        )

    @classmethod
    def from_conv(
        cls, conv: nn.Conv2d, mask: Optional[torch.Tensor] = None, backend: str = "auto"
    ) -> MaskedConv2d:
        """A MaskedConv2d sharing conv's parameters (the same Parameter objects: optimizers keep working)."""
        if not isinstance(conv, nn.Conv2d):
            raise TypeError(f"conv: expected an nn.Conv2d, got {type(conv).__name__}")
        module = cls(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            groups=conv.groups,
            bias=conv.bias is not None,
            padding_mode=conv.padding_mode,
            device="meta",  # no throwaway allocation: the parameters are conv's
            backend=backend,
        )
        module.weight, module.bias = conv.weight, conv.bias
        module.mask = torch.ones(conv.out_channels, dtype=torch.bool, device=conv.weight.device)
        module.train(conv.training)
        if mask is not None:
            module.set_mask(mask)
        return module


def convert(model: nn.Module, masks: Mapping[str, torch.Tensor], backend: str = "auto") -> nn.Module:
    """Replaces, in place, each conv named in `masks` ({module name: filter or kernel mask}) by a
    MaskedConv2d sharing its parameters; returns `model`. Every name and mask is checked before anything
    is replaced, so a bad entry leaves the model untouched."""
    replacements = []
    for name, mask in masks.items():
        if not name:
            raise ValueError("masks: the model itself cannot be replaced in place; name a submodule")
        try:
            conv = model.get_submodule(name)
        except AttributeError:
            raise ValueError(f"masks[{name!r}]: the model has no submodule {name!r}") from None
        if not isinstance(conv, nn.Conv2d):
            raise TypeError(f"masks[{name!r}]: expected an nn.Conv2d, got {type(conv).__name__}")
        try:
            check_mask(mask, conv.weight.shape, conv.weight.device)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"masks[{name!r}]: {exc}") from None
        replacements.append((name, conv, mask))
    for name, conv, mask in replacements:
        if isinstance(conv, MaskedConv2d):
            conv.set_mask(mask)
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, MaskedConv2d.from_conv(conv, mask, backend=backend))
    return model


def restore(model: nn.Module) -> nn.Module:
    """Undoes convert(): replaces, in place, every MaskedConv2d by a plain nn.Conv2d sharing its
    parameters (the masks are dropped; masked weights keep whatever value they hold); returns `model`."""
    for name, module in list(model.named_modules()):
        if not isinstance(module, MaskedConv2d):
            continue
        conv = nn.Conv2d(
            module.in_channels, module.out_channels, module.kernel_size, stride=module.stride,
            padding=module.padding, dilation=module.dilation, groups=module.groups,
            bias=module.bias is not None, device="meta",
        )  # fmt: skip
        conv.weight, conv.bias = module.weight, module.bias
        conv.train(module.training)
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, conv)
    return model
