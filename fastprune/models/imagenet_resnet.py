"""ImageNet ResNet-18/34/50 in torchvision's layout and attribute names (v1.5: stride on the 3x3 conv).

Standard stem (``small_input=False``), (N, 3, 224, 224) input: 7x7/2 conv 3->64 + BN + ReLU, 3x3/2 max
pool -> 56x56; layer1..layer4 at 56, 28, 14, 7 with 64, 128, 256, 512 planes (x4 channels out of a
Bottleneck); the first block of layer2..4 has stride 2 and a projection shortcut ``downsample =
Sequential(conv1x1(stride 2), BN)`` (layer1 of ResNet-50 too, for 64 -> 256); global average pool; FC.
A torchvision state_dict loads unchanged.

Small-input stem (``small_input=True``, for 64x64 Tiny ImageNet): ``conv1`` is a 3x3 stride-1 conv
(padding 1) and ``maxpool`` is ``nn.Identity``, so a 64x64 input reaches layer1 at 64x64 and layer4 at
8x8 (the usual CIFAR/Tiny-ImageNet adaptation; the stem loses 64 * 3 * (49 - 9) = 7,680 parameters).
Parameters for 1000 classes: ResNet-18 11,689,512; ResNet-34 21,797,672; ResNet-50 25,557,032.
"""

from __future__ import annotations

from typing import Union

import torch
from torch import nn

from fastprune.models._blocks import BasicBlock, Bottleneck, conv1x1, init_resnet

IMAGENET_LAYOUTS: dict[int, tuple[type, tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
}


class ResNet(nn.Module):
    """ImageNet ResNet with attributes conv1, bn1, relu, maxpool, layer1..layer4, avgpool, fc."""

    family = "imagenet"

    def __init__(self, depth: int, num_classes: int = 1000, small_input: bool = False) -> None:
        super().__init__()
        if depth not in IMAGENET_LAYOUTS:
            raise ValueError(f"ResNet: depth must be one of {sorted(IMAGENET_LAYOUTS)}, got {depth}")
        block, counts = IMAGENET_LAYOUTS[depth]
        self.arch = f"resnet{depth}"
        self.depth = depth
        self.small_input = small_input
        if small_input:
            self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        else:
            self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool: Union[nn.MaxPool2d, nn.Identity] = (
            nn.Identity() if small_input else nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        )
        inplanes = 64
        for index, (planes, count) in enumerate(zip((64, 128, 256, 512), counts)):
            blocks = []
            for b in range(count):
                stride = 2 if (index > 0 and b == 0) else 1
                out = planes * block.expansion
                downsample = None
                if stride != 1 or inplanes != out:
                    downsample = nn.Sequential(conv1x1(inplanes, out, stride), nn.BatchNorm2d(out))
                blocks.append(block(inplanes, planes, stride, downsample))
                inplanes = out
            setattr(self, f"layer{index + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(inplanes, num_classes)
        init_resnet(self, linear_kaiming=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))
