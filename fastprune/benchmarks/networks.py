"""Conv weight shapes (out, in, k, k) of the networks benchmarks score, in forward order."""

from __future__ import annotations

Shape = tuple[int, int, int, int]


def cifar_resnet_conv_shapes(depth: int = 56) -> list[Shape]:
    """CIFAR ResNet-(6n+2) with option-A shortcuts (no shortcut convs): stem + 3 stages of n blocks."""
    if (depth - 2) % 6:
        raise ValueError(f"depth: expected 6n + 2 (20, 32, 56, 110, ...), got {depth}")
    blocks = (depth - 2) // 6
    shapes: list[Shape] = [(16, 3, 3, 3)]
    in_ch = 16
    for width in (16, 32, 64):
        for _ in range(blocks):
            shapes += [(width, in_ch, 3, 3), (width, width, 3, 3)]
            in_ch = width
    return shapes


def imagenet_resnet50_conv_shapes() -> list[Shape]:
    """ImageNet ResNet-50 (bottleneck, expansion 4): every conv, projection shortcuts included."""
    shapes: list[Shape] = [(64, 3, 7, 7)]
    in_ch = 64
    for width, blocks in ((64, 3), (128, 4), (256, 6), (512, 3)):
        for block in range(blocks):
            shapes += [(width, in_ch, 1, 1), (width, width, 3, 3), (4 * width, width, 1, 1)]
            if block == 0:
                shapes.append((4 * width, in_ch, 1, 1))
            in_ch = 4 * width
    return shapes


NETWORKS = {"resnet56": cifar_resnet_conv_shapes(56), "resnet50": imagenet_resnet50_conv_shapes()}
