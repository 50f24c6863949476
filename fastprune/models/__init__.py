"""Models for pruning experiments: CIFAR ResNet-20/32/44/56/110, VGG-16 and MobileNetV2, and ImageNet
ResNet-18/34/50.

``create(name, num_classes)`` builds one by name (case-insensitive). Every model records ``model.arch``
(e.g. ``"resnet56"``) and ``model.family`` (``"cifar"`` or ``"imagenet"``).

- CIFAR family, built for 32x32 inputs (any size works: the pooling is global):
  - ResNets (:class:`CifarResNet`): He et al. 2016 CIFAR layout, 16/32/64 channels, option-A
    (parameter-free) shortcuts, as in the SFP/FPGM code.
  - ``vgg16`` (:class:`CifarVGG`): VGG-16 with BatchNorm and a 512-512-classes classifier, the CIFAR
    VGG-16 of Li et al. as in the SFP/FPGM code (see :mod:`fastprune.models.vgg`).
  - ``mobilenet_v2`` (:class:`MobileNetV2`): kuangliu/pytorch-cifar's CIFAR MobileNetV2, stride-1 stem
    and 24-channel stage (see :mod:`fastprune.models.mobilenet_v2`).
- ImageNet family (:class:`ResNet`): torchvision layout and attribute names (a torchvision state_dict
  loads). ``small_input=True`` swaps the 7x7/2 stem + max pool for a 3x3 stride-1 conv and no pool, for
  64x64 Tiny ImageNet inputs; ``small_input=None`` means the standard stem.
"""

from __future__ import annotations

from typing import Optional

from torch import nn

from fastprune.models._blocks import BasicBlock, Bottleneck, ShortcutA
from fastprune.models.cifar_resnet import CIFAR_DEPTHS, CifarResNet
from fastprune.models.imagenet_resnet import IMAGENET_LAYOUTS, ResNet
from fastprune.models.mobilenet_v2 import InvertedResidual, MobileNetV2
from fastprune.models.vgg import CifarVGG

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "CifarResNet",
    "CifarVGG",
    "InvertedResidual",
    "MobileNetV2",
    "ResNet",
    "ShortcutA",
    "create",
    "names",
]

_FAMILIES: dict[str, str] = {
    **{f"resnet{d}": "cifar" for d in CIFAR_DEPTHS},
    "vgg16": "cifar",
    "mobilenet_v2": "cifar",
    **{f"resnet{d}": "imagenet" for d in IMAGENET_LAYOUTS},
}


def names() -> list[str]:
    """The architecture names :func:`create` accepts: CIFAR ResNets shallow to deep, ``vgg16``,
    ``mobilenet_v2``, then the ImageNet ResNets shallow to deep."""
    return list(_FAMILIES)


def create(name: str, num_classes: int = 10, *, small_input: Optional[bool] = None) -> nn.Module:
    """Build an untrained (He-initialised) model by name.

    Args:
        name: one of :func:`names` (case-insensitive): "resnet20", "resnet32", "resnet44", "resnet56",
            "resnet110", "vgg16", "mobilenet_v2" (CIFAR layout) or "resnet18", "resnet34", "resnet50"
            (ImageNet layout).
        num_classes: outputs of the final FC layer (pass 1000 for ImageNet, 200 for Tiny ImageNet).
        small_input: ImageNet family only: True for the 3x3 stride-1 stem without max pool (64x64 Tiny
            ImageNet), False/None for the standard 7x7/2 stem + max pool. The CIFAR family has only the
            small-input layout; passing False for it is an error.

    Returns:
        The model, with ``model.arch`` (lower-case name) and ``model.family`` ("cifar" or "imagenet").
    Raises:
        ValueError: unknown name (the message lists the valid ones), num_classes < 1, or small_input=False
        for a CIFAR model.
    """
    key = str(name).strip().lower()
    if key not in _FAMILIES:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(names())}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    if _FAMILIES[key] == "cifar" and small_input is False:
        raise ValueError(
            f"small_input=False: {key} is a CIFAR model: it has only the small-input (3x3 stem) layout"
        )
    if key == "vgg16":
        return CifarVGG(num_classes)
    if key == "mobilenet_v2":
        return MobileNetV2(num_classes)
    depth = int(key[len("resnet") :])
    if _FAMILIES[key] == "cifar":
        return CifarResNet(depth, num_classes)
    return ResNet(depth, num_classes, small_input=bool(small_input))
