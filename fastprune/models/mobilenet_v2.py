"""CIFAR MobileNetV2 (Sandler et al. 2018), the layout of github.com/kuangliu/pytorch-cifar,
models/mobilenetv2.py (checked against that file); attribute names as there, so its state_dicts load.

Layout for a (N, 3, 32, 32) input:

- ``conv1``/``bn1``/ReLU: 3x3 conv 3 -> 32, stride 1 (ImageNet: stride 2).
- ``layers``: inverted-residual :class:`InvertedResidual` blocks from :data:`MOBILENET_V2_CFG`, rows
  (expansion t, out channels, blocks, stride of the first block): (1,16,1,1), (6,24,2,1), (6,32,3,2),
  (6,64,4,2), (6,96,3,1), (6,160,3,2), (6,320,1,1); the 24-channel stage has stride 1 (ImageNet: 2), so
  the map goes 32 -> 16 -> 8 -> 4.
- ``conv2``/``bn2``/ReLU: 1x1 conv 320 -> 1280; ``avgpool`` global (the reference's ``avg_pool2d(4)`` on
  the 4x4 map); ``linear``: 1280 -> num_classes.

Block (in -> out, expansion t, stride s), hidden = t * in: 1x1 conv in -> hidden + BN + ReLU (also when
t = 1, unlike torchvision), 3x3 depthwise conv stride s + BN + ReLU, 1x1 conv hidden -> out + BN (linear
bottleneck, no ReLU). As in the reference, every stride-1 block adds a shortcut: the identity when
in == out, else ``shortcut`` = 1x1 conv in -> out + BN (blocks 32->16, 16->24, 64->96, 160->320);
stride-2 blocks have none. ReLU (not ReLU6) throughout, as in the reference.

Parameters for 10 classes: 2,296,922. Init (the reference keeps PyTorch's defaults): convs kaiming
normal (fan_out), BN weight 1 / bias 0, the linear N(0, 0.01) with zero bias (torchvision's MobileNetV2).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from fastprune.models._blocks import init_resnet

# (expansion, out_planes, num_blocks, stride of the first block)
MOBILENET_V2_CFG: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class InvertedResidual(nn.Module):
    """Expand (1x1) + depthwise (3x3, stride) + project (1x1); attributes conv1..3, bn1..3, shortcut."""

    def __init__(self, in_planes: int, out_planes: int, expansion: int, stride: int) -> None:
        super().__init__()
        hidden = expansion * in_planes
        self.stride = stride
        self.conv1 = nn.Conv2d(in_planes, hidden, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(
            hidden, hidden, kernel_size=3, stride=stride, padding=1, groups=hidden, bias=False
        )
        self.bn2 = nn.BatchNorm2d(hidden)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(hidden, out_planes, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.shortcut: Optional[nn.Sequential] = None
        if stride == 1 and in_planes != out_planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, out_planes, kernel_size=1, bias=False),
                nn.BatchNorm2d(out_planes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.stride == 1:
            out = out + (x if self.shortcut is None else self.shortcut(x))
        return out


class MobileNetV2(nn.Module):
    """CIFAR MobileNetV2; attributes conv1, bn1, relu, layers, conv2, bn2, avgpool, linear."""

    family = "cifar"

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.arch = "mobilenet_v2"
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.relu = nn.ReLU(inplace=True)
        blocks = []
        in_planes = 32
        for expansion, out_planes, num_blocks, stride in MOBILENET_V2_CFG:
            for b in range(num_blocks):
                blocks.append(InvertedResidual(in_planes, out_planes, expansion, stride if b == 0 else 1))
                in_planes = out_planes
        self.layers = nn.Sequential(*blocks)
        self.conv2 = nn.Conv2d(in_planes, 1280, kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm2d(1280)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(1280, num_classes)
        init_resnet(self, linear_kaiming=False)
        nn.init.normal_(self.linear.weight, 0.0, 0.01)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layers(x)
        x = self.relu(self.bn2(self.conv2(x)))
        return self.linear(torch.flatten(self.avgpool(x), 1))
