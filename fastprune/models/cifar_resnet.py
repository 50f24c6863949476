"""CIFAR ResNets of depth 6n + 2 (He et al. 2016, section 4.2), option-A shortcuts.

Layout for a (N, 3, 32, 32) input: 3x3 conv 3->16 + BN + ReLU; three stages of n BasicBlocks with 16, 32,
64 channels at 32x32, 16x16, 8x8 (the first block of stages 2 and 3 has stride 2 and a parameter-free
:class:`ShortcutA`: subsample ``x[:, :, ::2, ::2]``, append zero channels); global average pool; FC
64 -> num_classes. No shortcut convs, so every conv is prunable (the SFP/FPGM layer set).
Parameters for 10 classes: ResNet-20 269,722; -32 464,154; -44 658,586; -56 853,018; -110 1,727,962.
(The often-quoted 272,474 for ResNet-20 is the option-B variant: two 1x1 projection convs + BN add 2,752.)
"""

from __future__ import annotations

import torch
from torch import nn

from fastprune.models._blocks import BasicBlock, ShortcutA, init_resnet

CIFAR_DEPTHS = (20, 32, 44, 56, 110)


class CifarResNet(nn.Module):
    """CIFAR ResNet with attributes conv1, bn1, relu, layer1..layer3, avgpool, fc."""

    family = "cifar"

    def __init__(self, depth: int, num_classes: int = 10) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(
                f"CifarResNet: depth must be 6n + 2 with n >= 1 (20, 32, 56, 110, ...), got {depth}"
            )
        n = (depth - 2) // 6
        self.arch = f"resnet{depth}"
        self.depth = depth
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        inplanes = 16
        for index, planes in enumerate((16, 32, 64)):
            blocks = []
            for b in range(n):
                stride = 2 if (index > 0 and b == 0) else 1
                shortcut = (
                    ShortcutA(inplanes, planes, stride) if (stride != 1 or inplanes != planes) else None
                )
                blocks.append(BasicBlock(inplanes, planes, stride, shortcut))
                inplanes = planes
            setattr(self, f"layer{index + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)
        init_resnet(self, linear_kaiming=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))
