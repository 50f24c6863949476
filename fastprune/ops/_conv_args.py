"""Argument handling shared by the convolution ops (conv2d, masked_conv2d): checks that name the argument
and what was expected, output sizes, and the packing of fp_conv2d_shape for the C ABI."""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch

IntPair = Union[int, Sequence[int]]


def pair(value: IntPair, name: str, low: int) -> list[int]:
    """An int or a pair of ints >= low, as a list of two."""
    values = [value, value] if isinstance(value, int) else list(value)
    if len(values) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise ValueError(f"{name}: expected an int or a pair of ints, got {value!r}")
    if min(values) < low:
        raise ValueError(f"{name}: expected values >= {low}, got {value!r}")
    return values


def output_size(
    size: Sequence[int], kernel: Sequence[int], stride: list[int], padding: list[int], dilation: list[int]
) -> list[int]:
    """(Ho, Wo) with Ho = floor((H + 2 p - d (k - 1) - 1) / s) + 1, as nn.Conv2d."""
    return [(size[a] + 2 * padding[a] - dilation[a] * (kernel[a] - 1) - 1) // stride[a] + 1 for a in range(2)]


def empty_output(x: torch.Tensor, weight: torch.Tensor, stride, padding, dilation) -> torch.Tensor:
    """An uninitialised (N, O, Ho, Wo) tensor like x for the convolution of x (N, C, H, W) by weight
    (O, C / groups, kh, kw)."""
    ho, wo = output_size(x.shape[2:], weight.shape[2:], stride, padding, dilation)
    return x.new_empty(x.shape[0], weight.shape[0], ho, wo)


def check_tensor(t: object, name: str, dims: int, what: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a tensor, got {type(t).__name__}")
    if t.dim() != dims:
        raise ValueError(f"{name}: expected a {dims}-D tensor {what}, got shape {tuple(t.shape)}")
    return t


def check_groups(groups: object, in_channels: int, out_channels: int) -> int:
    """Checks groups: a positive int dividing both the input channels C and the output channels O."""
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"groups: expected a positive int, got {groups!r}")
    if in_channels % groups:
        raise ValueError(
            f"groups: expected a divisor of x's {in_channels} input channels, got groups = {groups}"
        )
    if out_channels % groups:
        raise ValueError(
            f"groups: expected a divisor of weight's {out_channels} output channels (its first dimension), "
            f"got groups = {groups}"
        )
    return groups


def check_conv_args(
    x: object,
    weight: object,
    bias: object,
    stride: IntPair,
    padding: IntPair,
    dilation: IntPair,
    groups: object = 1,
    *,
    grouped: bool = False,
) -> tuple[list[int], list[int], list[int]]:
    """Checks x (N, C, H, W), weight (O, C / groups, kh, kw) of x's dtype and device, bias (O,) or None
    and the geometry; returns stride, padding and dilation as pairs. grouped: the op takes groups (a
    positive int dividing C and O); otherwise groups = 1 only, and the weight error says so."""
    check_tensor(x, "x", 4, "(N, C, H, W)")
    check_tensor(weight, "weight", 4, "(O, C / groups, kh, kw)" if grouped else "(O, C, kh, kw)")
    assert isinstance(x, torch.Tensor) and isinstance(weight, torch.Tensor)
    if weight.dtype != x.dtype or weight.device != x.device:
        raise TypeError(
            f"weight: expected {x.dtype} on {x.device} like x, got {weight.dtype} on {weight.device}"
        )
    if not grouped:
        if weight.shape[1] != x.shape[1]:
            raise ValueError(
                f"weight: expected {x.shape[1]} input channels like x (groups = 1 only), got weight of shape "
                f"{tuple(weight.shape)} for x of shape {tuple(x.shape)}"
            )
    else:
        groups = check_groups(groups, x.shape[1], weight.shape[0])
        if weight.shape[1] * groups != x.shape[1]:
            raise ValueError(
                f"weight: expected {x.shape[1] // groups} input channels per group (x's {x.shape[1]} "
                f"channels / groups = {groups}), got weight of shape {tuple(weight.shape)} for x of shape "
                f"{tuple(x.shape)}"
            )
    if bias is not None:
        check_tensor(bias, "bias", 1, "(O,)")
        assert isinstance(bias, torch.Tensor)
        if bias.shape[0] != weight.shape[0] or bias.dtype != x.dtype or bias.device != x.device:
            raise ValueError(
                f"bias: expected ({weight.shape[0]},) {x.dtype} on {x.device}, got {tuple(bias.shape)} "
                f"{bias.dtype} on {bias.device}"
            )
    stride_, padding_, dilation_ = (
        pair(stride, "stride", 1),
        pair(padding, "padding", 0),
        pair(dilation, "dilation", 1),
    )
    ho, wo = output_size(x.shape[2:], weight.shape[2:], stride_, padding_, dilation_)
    if ho < 1 or wo < 1:
        raise ValueError(
            f"x: output size ({ho}, {wo}) must be positive; the dilated kernel {tuple(weight.shape[2:])} "
            f"(dilation {dilation_}) is larger than the padded input {tuple(x.shape[2:])} "
            f"(padding {padding_})"
        )
    return stride_, padding_, dilation_


def shape_fields(x: torch.Tensor, weight: torch.Tensor, stride, padding, dilation) -> list[int]:
    """The 13 fields of fp_conv2d_shape."""
    return [*x.shape, weight.shape[0], weight.shape[2], weight.shape[3], *stride, *padding, *dilation]


def address(t: Optional[torch.Tensor]) -> int:
    """A tensor's data pointer for the C ABI (0 = NULL for None or an empty tensor)."""
    return 0 if t is None or t.numel() == 0 else t.data_ptr()
