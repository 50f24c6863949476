"""Residual blocks shared by the CIFAR and ImageNet ResNets (torchvision attribute names).

Every block computes ``relu(main(x) + shortcut(x))`` where ``shortcut`` is ``downsample(x)`` or ``x``:

    BasicBlock:  main = bn2(conv2(relu(bn1(conv1(x)))))                 3x3, 3x3   (expansion 1)
    Bottleneck:  main = bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x))))))))  1x1, 3x3, 1x1 (expansion 4)

The stride sits on the 3x3 conv (torchvision "v1.5"). ``downsample`` is ``None`` (identity), a
projection ``Sequential(conv1x1, BatchNorm2d)``, or a parameter-free :class:`ShortcutA` (option A).
:mod:`fastprune.pruning.channels` relies on exactly these attribute names and this forward order.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3x3 conv, padding 1, no bias."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1x1 conv, no bias."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class ShortcutA(nn.Module):
    """Option-A shortcut (He et al. 2016, CIFAR): ``x[:, :, ::s, ::s]`` with zero channels appended.

    (N, C_in, H, W) -> (N, C_out, ceil(H/s), ceil(W/s)); output channel ``pad_before + c`` carries input
    channel ``c``, every other output channel is zero. ``pad_before = 0`` appends the zeros after the input
    channels, as the SFP/FPGM code does (``cat((x, x * 0), 1)`` after a stride-s 1x1 average pool).
    No parameters.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 2, pad_before: int = 0) -> None:
        super().__init__()
        if not 0 <= pad_before <= out_channels - in_channels:
            raise ValueError(f"ShortcutA: pad_before must lie in [0, {out_channels - in_channels}]")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.stride, self.pad_before = stride, pad_before

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        after = self.out_channels - self.in_channels - self.pad_before
        return nn.functional.pad(x, (0, 0, 0, 0, self.pad_before, after))

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}, pad_before={self.pad_before}"


class BasicBlock(nn.Module):
    """Two 3x3 convs with BN; ``out_channels = planes``."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand; ``out_channels = 4 * planes``."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None):
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def init_resnet(model: nn.Module, linear_kaiming: bool) -> None:
    """He et al. (2015) init: conv ~ N(0, 2 / (k*k*out_channels)) (kaiming normal, fan_out, ReLU gain),
    BN gamma 1 and beta 0; the FC layer kaiming normal (fan_in) with zero bias when ``linear_kaiming``
    (the SFP/FPGM CIFAR code), else PyTorch's default Linear init (torchvision)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and linear_kaiming:
            nn.init.kaiming_normal_(m.weight)
            nn.init.zeros_(m.bias)
