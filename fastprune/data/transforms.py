"""Batched image augmentations as plain tensor ops (no torchvision): the papers' CIFAR recipe.

Every function takes a batch ``(N, C, H, W)`` and returns a new tensor; none modifies its input. Random
ones draw all their parameters for the batch in one call from ``generator`` (torch's default generator
when ``None``), so a seeded ``torch.Generator`` reproduces them exactly.

The order the datasets use (:meth:`fastprune.data.ImageDataset.transform`) is the one of the usual
torchvision pipeline ``RandomCrop(size, padding) -> RandomHorizontalFlip -> ToTensor -> Normalize``:
pixels are scaled to [0, 1] (:func:`to_float`), cropped with zero padding, i.e. black borders, flipped,
and only then normalised, so padding is black in pixel space, not the mean colour.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

__all__ = ["to_float", "crop", "random_crop", "hflip", "random_hflip", "normalize"]


def _check_batch(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"expected a batch of images (N, C, H, W), got {shape}")


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels 0..255 -> float32 in [0, 1]; floating-point input is returned as float32 unchanged."""
    if images.dtype == torch.uint8:
        return images.to(torch.float32).div_(255.0)
    if not images.is_floating_point():
        raise ValueError(f"expected uint8 or floating-point images, got {images.dtype}")
    return images.to(torch.float32)


def crop(images: torch.Tensor, padding: int, offsets: torch.Tensor) -> torch.Tensor:
    """Pad every image with ``padding`` zeros on each side, then cut an ``H x W`` window from image ``i``
    whose top-left corner is ``offsets[i] = (row, col)`` in the padded image, 0 <= row, col <= 2 * padding.

    Offsets ``(padding, padding)`` return the image unchanged; ``(0, 0)`` shifts it down-right, leaving
    ``padding`` zero rows at the top and zero columns at the left.
    """
    _check_batch(images)
    n, c, h, w = images.shape
    offsets = torch.as_tensor(offsets, dtype=torch.long, device=images.device)
    if offsets.shape != (n, 2):
        raise ValueError(f"offsets must have shape ({n}, 2), got {tuple(offsets.shape)}")
    if padding < 0 or offsets.min() < 0 or offsets.max() > 2 * padding:
        raise ValueError(f"offsets must lie in [0, {2 * padding}] for padding {padding}")
    if padding == 0:
        return images.clone()
    padded = F.pad(images, (padding, padding, padding, padding))  # zeros
    dev = images.device
    rows = offsets[:, 0, None] + torch.arange(h, device=dev)  # (N, H)
    cols = offsets[:, 1, None] + torch.arange(w, device=dev)  # (N, W)
    # One gather: out[n, c, y, x] = padded[n, c, rows[n, y], cols[n, x]].
    return padded[
        torch.arange(n, device=dev)[:, None, None, None],
        torch.arange(c, device=dev)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]


def random_crop(
    images: torch.Tensor, padding: int, *, generator: Optional[torch.Generator] = None
) -> torch.Tensor:
    """Random ``H x W`` crop of each zero-padded image (``RandomCrop(H, padding=padding)``): both offsets
    uniform on 0..2*padding, independently per image."""
    _check_batch(images)
    offsets = torch.randint(0, 2 * padding + 1, (images.shape[0], 2), generator=generator)
    return crop(images, padding, offsets.to(images.device))


def hflip(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mirror left-right the images where the boolean ``mask`` (shape ``(N,)``) is true."""
    _check_batch(images)
    mask = torch.as_tensor(mask, dtype=torch.bool, device=images.device)
    if mask.shape != (images.shape[0],):
        raise ValueError(f"mask must have shape ({images.shape[0]},), got {tuple(mask.shape)}")
    return torch.where(mask[:, None, None, None], images.flip(-1), images)


def random_hflip(
    images: torch.Tensor, p: float = 0.5, *, generator: Optional[torch.Generator] = None
) -> torch.Tensor:
    """Mirror each image left-right with probability ``p``, independently (``RandomHorizontalFlip``)."""
    _check_batch(images)
    mask = torch.rand(images.shape[0], generator=generator) < p
    return hflip(images, mask.to(images.device))


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(images - mean) / std`` per channel, as float32."""
    _check_batch(images)
    c = images.shape[1]
    if len(mean) != c or len(std) != c:
        raise ValueError(f"need one mean and std per channel ({c}), got {len(mean)} and {len(std)}")
    m = torch.tensor(mean, dtype=torch.float32, device=images.device).view(1, c, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=images.device).view(1, c, 1, 1)
    return (images.to(torch.float32) - m).div_(s)
