"""CIFAR VGG-16 with BatchNorm, as in the SFP/FPGM CIFAR-10 tables (Li et al.'s "Pruning Filters for
Efficient ConvNets" VGG-16, via github.com/he-y/filter-pruning-geometric-median, models/vgg_cifar10.py).

Layout for a (N, 3, 32, 32) input, ``features`` then ``avgpool`` then ``classifier``:

- ``features``: for each entry of :data:`VGG16_CFG` = [64, 64, M, 128, 128, M, 256, 256, 256, M,
  512, 512, 512, M, 512, 512, 512] either a 3x3 conv (padding 1, no bias) + BatchNorm2d + ReLU, or
  (``M``) a 2x2 stride-2 max pool: 13 convs, spatial 32 -> 2 (no pool after the last conv).
- ``avgpool``: global average pool, then flatten to 512. The reference applies ``nn.AvgPool2d(2)`` to the
  2x2 map, the same thing at 32x32; the global pool also accepts other input sizes.
- ``classifier``: Linear(512, 512) + BatchNorm1d(512) + ReLU + Linear(512, num_classes) (the reference's
  classifier, checked against that file).

Parameters for 10 classes: 14,987,722 (convs 14,710,464, BN2d 8,448, classifier 268,810).
Init: convs kaiming normal (fan_out), BN weight 1 / bias 0, linears N(0, 0.01) with zero bias (the
reference's conv and linear init; the reference starts BatchNorm2d weights at 0.5, here 1 as in the
ResNets). The reference names the conv stack ``feature``; here it is ``features`` (torchvision's name).
"""

from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import nn

from fastprune.models._blocks import init_resnet

VGG16_CFG: tuple[Union[int, str], ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512,
)  # fmt: skip


def make_features(cfg: Sequence[Union[int, str]], in_channels: int = 3) -> nn.Sequential:
    """Conv3x3 + BatchNorm2d + ReLU per int in ``cfg``; a 2x2 stride-2 max pool per ``"M"``."""
    layers: list[nn.Module] = []
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        elif isinstance(v, int) and not isinstance(v, bool) and v > 0:
            layers += [
                nn.Conv2d(in_channels, v, kernel_size=3, padding=1, bias=False),
                nn.BatchNorm2d(v),
                nn.ReLU(inplace=True),
            ]
            in_channels = v
        else:
            raise ValueError(f"cfg: expected positive channel counts or 'M', got {v!r}")
    return nn.Sequential(*layers)


class CifarVGG(nn.Module):
    """CIFAR VGG with BatchNorm; attributes ``features``, ``avgpool``, ``classifier``."""

    family = "cifar"

    def __init__(
        self, num_classes: int = 10, cfg: Sequence[Union[int, str]] = VGG16_CFG, arch: str = "vgg16"
    ) -> None:
        super().__init__()
        self.arch = arch
        self.cfg = list(cfg)
        self.features = make_features(self.cfg)
        width = [v for v in self.cfg if v != "M"][-1]
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(width, 512),
            nn.BatchNorm1d(512),
            nn.ReLU(inplace=True),
            nn.Linear(512, num_classes),
        )
        init_resnet(self, linear_kaiming=False)
        for m in self.classifier.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))
