"""The inference form of a compacted ResNet (:meth:`CompactResNet.for_inference`).

A copy of the compact network in which

* every conv + BatchNorm (:class:`ConvBN`) becomes a :class:`FoldedConvBN`: with s = gamma / sqrt(var + eps),
  ``W' = s W`` and ``b' = s (b - mean) + beta`` (float64, then the weight's dtype), the ReLU fused, run by
  fastprune's register-blocked CPU kernel (``fastprune.ops.conv2d``; PyTorch's conv on other devices);
* every residual block whose shortcut lands unchanged in the block's output (identity or projection
  shortcut, full width) becomes a :class:`FusedResidualBlock`: its last conv adds into the shortcut tensor
  in place and applies the block's ReLU in the same kernel (C ABI ``fp_conv2d_accumulate``), so the
  conv's output is never written on its own and the residual add and ReLU cost no extra pass;
* the remaining residual adds run in place on the shortcut tensor;
* the stem's max-pool runs in channels_last (PyTorch's NCHW max-pool kernel measured 4x slower on the
  ResNet-50 stem map: 20 ms against 4.7 ms with the layout round trip, batch 8, 2-core Zen 4).

Tensors inside the network are overwritten in place, never the caller's input. Outside the kernels' reach
(float64, CUDA tensors, autograd, tracing) the same modules fall back to PyTorch ops with the same
results. Not for training (no BatchNorm left) nor for export (export the compact model itself).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from fastprune.compaction.modules import CompactBlock, ConvBN, ResidualCombine, Subsample, _empty_output

if TYPE_CHECKING:
    from fastprune.compaction.network import CompactResNet


class _ContiguousWeight(nn.Module):
    """Keeps the ``weight`` buffer (O, C, kh, kw)-contiguous, the layout fastprune's kernel reads, through
    model-wide ``.to(memory_format=channels_last)`` (inputs in any layout are made contiguous per call)."""

    def _apply(self, *args: Any, **kwargs: Any) -> nn.Module:
        super()._apply(*args, **kwargs)
        self.weight = self.weight.contiguous()
        return self


class FoldedConvBN(_ContiguousWeight):
    """A :class:`ConvBN` for inference: BN folded into the conv, ReLU fused, run by ``fastprune.ops.conv2d``.

    With s = gamma / sqrt(var + eps): ``W' = s W`` (per filter) and ``b' = s (b - mean) + beta``, computed in
    float64; then ``y = relu(conv2d(adapt(x), W') + b')`` in one kernel call.
    """

    def __init__(self, unit: ConvBN) -> None:
        super().__init__()
        conv, bn = unit.conv, unit.bn
        if not bn.track_running_stats or bn.running_var is None:
            raise ValueError("FoldedConvBN: a BatchNorm2d without running statistics cannot be folded")
        self.adapt = unit.adapt
        self.empty, self.geometry, self.relu = unit.empty, unit.geometry, unit.relu
        # The conv's stride, padding, dilation. A non-zero padding mode pads first (as nn.Conv2d does) and
        # the conv then runs unpadded.
        self.padding_mode = conv.padding_mode
        self.conv_args = list(unit.geometry[2:])
        ph, pw = unit.geometry[4], unit.geometry[5]
        self.pre_pad = [pw, pw, ph, ph]
        if conv.padding_mode != "zeros":
            self.conv_args[2:4] = [0, 0]
        with torch.no_grad():
            scale = (bn.running_var.double() + bn.eps).rsqrt()
            if bn.affine:
                scale = scale * bn.weight.double()
            shift = -bn.running_mean.double() * scale
            if conv.bias is not None:
                shift = shift + conv.bias.double() * scale
            if bn.affine:
                shift = shift + bn.bias.double()
            weight = conv.weight.double() * scale.view(-1, 1, 1, 1)
        self.register_buffer("weight", weight.to(conv.weight.dtype))
        self.register_buffer("bias", shift.to(conv.weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from fastprune.ops.conv2d import conv2d, conv2d_cpu_inference, cpu_conv_preferred

        if self.empty:
            return _empty_output(x, self.geometry)
        x = self.adapt(x)
        if self.padding_mode != "zeros":
            x = F.pad(x, self.pre_pad, mode=self.padding_mode)
        y = None
        if cpu_conv_preferred():
            y = conv2d_cpu_inference(x, self.weight, self.bias, self.conv_args, self.relu)
        if y is None:
            a = self.conv_args
            y = conv2d(x, self.weight, self.bias, a[0:2], a[2:4], a[4:6], relu=self.relu)
        return y


class FusedResidualBlock(_ContiguousWeight):
    """A residual block whose last conv adds into the shortcut in place, ReLU fused:

        y = place(shortcut(x))
        y[:, pos] = relu(y[:, pos] + conv(h) + b)
        y[:, others] = relu(y[:, others] + c)

    where place puts the shortcut's channels at their positions of the block's output (in place when they
    already are: an identity or projection shortcut of full width; else into a fresh map, zero elsewhere),
    h is the main path before its last conv, pos the output channels the main path reaches and c the
    block's constants on the other channels (that last step is skipped when it is the identity: a
    shortcut passing a non-negative input on, no constants).
    """

    def __init__(self, block: CompactBlock, input_nonnegative: bool) -> None:
        super().__init__()
        combine: ResidualCombine = block.combine
        last = block.main[-1]
        assert isinstance(last, FoldedConvBN)
        self.block = block  # the unfused computation, for inputs the kernel does not take
        self.head = nn.Sequential(*list(block.main)[:-1])
        self.shortcut = block.shortcut
        self.width = combine.width
        weight, bias = last.weight, last.bias
        if combine.main_select:
            weight, bias = weight.index_select(0, combine.main_keep), bias.index_select(0, combine.main_keep)
        pos = combine.main_pos
        others = torch.ones(self.width, dtype=torch.bool)
        others[pos] = False
        if combine.has_bias:
            bias = bias + combine.bias[pos].to(bias.dtype)
        self.register_buffer("weight", weight.contiguous())
        self.register_buffer("bias", bias.contiguous())
        self.register_buffer("pos", pos.to(torch.int64).contiguous())
        self.register_buffer("others", others.nonzero().squeeze(1))
        self.register_buffer("others_bias", combine.bias[self.others].clone())
        # Where the shortcut's channels go when they are not already in place (res_mode != SAME).
        self.res_in_place = combine.res_mode == 0 and not combine.res_select
        res_pos = combine.res_pos
        uncovered = torch.ones(self.width, dtype=torch.bool)
        uncovered[res_pos] = False
        self.register_buffer("res_pos", res_pos.to(torch.int64).contiguous())
        self.register_buffer("uncovered", uncovered.nonzero().squeeze(1))
        # The other channels pass the shortcut (or zeros) through: relu(y + c) is y itself only for a
        # shortcut that carries a non-negative input unchanged, without constants.
        passthrough = input_nonnegative and isinstance(block.shortcut, (nn.Identity, Subsample))
        self.fix_others = bool(self.others.numel()) and (
            not passthrough or bool((self.others_bias != 0).any())
        )
        self.conv_args = list(last.conv_args)

    @property
    def main(self) -> nn.Sequential:
        """The block's main path (its last conv is the one fused here)."""
        return self.block.main

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from fastprune.ops.conv2d import conv2d_accumulate_cpu, cpu_conv_preferred, cpu_kernel_ready

        last, combine = self.block.main[-1], self.block.combine
        h = self.head(x)
        res = self.shortcut(x)
        if not cpu_kernel_ready(h, res, self.weight, self.bias) or not cpu_conv_preferred():
            return combine(last(h), res)
        h = last.adapt(h)  # the channels the last conv reads (selection, constant planes)
        if self.res_in_place:
            y = res.contiguous()
        else:  # a fresh map: the shortcut's channels at res_pos, zeros in the others
            if combine.res_select:
                res = res.index_select(1, combine.res_keep)
            y = res.new_empty(res.shape[0], self.width, res.shape[2], res.shape[3])
            y.index_copy_(1, self.res_pos, res)
            if self.uncovered.numel():
                y.index_fill_(1, self.uncovered, 0.0)
        if h.untyped_storage().data_ptr() == y.untyped_storage().data_ptr():
            h = h.clone()  # a one-conv main path reading the very tensor it adds into
        conv2d_accumulate_cpu(h, self.weight, self.bias, self.pos, y, self.conv_args, relu=True)
        if self.fix_others:
            part = y.index_select(1, self.others).add_(self.others_bias.view(1, -1, 1, 1)).clamp_min_(0)
            y.index_copy_(1, self.others, part)
        return y


class ChannelsLastMaxPool(nn.Module):
    """``pool(x)`` computed on a channels_last copy of x, returned contiguous (NCHW): same values."""

    def __init__(self, pool: nn.MaxPool2d) -> None:
        super().__init__()
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            return self.pool(x)
        return self.pool(x.contiguous(memory_format=torch.channels_last)).contiguous()


def _fusable(block: CompactBlock) -> bool:
    last = block.main[-1] if len(block.main) else None
    return (
        isinstance(last, FoldedConvBN)
        and not last.empty
        and last.weight.shape[1] > 0  # the C ABI takes no conv without input channels
        and not last.relu
        and last.padding_mode == "zeros"
        and isinstance(block.shortcut, (nn.Identity, Subsample, FoldedConvBN))
    )


def for_inference(model: CompactResNet) -> CompactResNet:
    """The inference form of `model` (see the module docstring); `model` is not changed."""
    fused = copy.deepcopy(model).eval()
    for parent in list(fused.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, ConvBN):
                setattr(parent, name, FoldedConvBN(child))
            elif isinstance(child, ResidualCombine):
                child.inplace = True
    if isinstance(fused.maxpool, nn.MaxPool2d) and not fused.maxpool.return_indices:
        fused.maxpool = ChannelsLastMaxPool(fused.maxpool)
    blocks = list(fused.blocks)
    for i, block in enumerate(blocks):
        if _fusable(block):
            # A block's input is a ReLU output (>= 0) when it follows another block; the first block reads
            # the stem's scatter, which may add constants.
            fused.blocks[i] = FusedResidualBlock(block, input_nonnegative=i > 0)
    return fused
