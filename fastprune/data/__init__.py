"""Data sets for training and pruning ResNets: an embedded default and the papers' standard formats.

    name          source                        classes  input_shape  train / test images
    digits        embedded (UCI 8x8 digits)     10       (3, 32, 32)  1,438 / 359 (fixed stratified split)
    cifar10       data_dir: python-version pkl  10       (3, 32, 32)  50,000 / 10,000
    cifar100      data_dir: python-version pkl  100      (3, 32, 32)  50,000 / 10,000 (fine labels)
    tinyimagenet  data_dir: JPEG folders        200      (3, 64, 64)  100,000 / 10,000 (val); needs Pillow

``digits`` needs no download, so every example and test runs offline; the others are read from the
files their authors distribute (see :mod:`.cifar` and :mod:`.tinyimagenet` for the layouts accepted).
Nothing here downloads anything.

Items are ``(image, label)``: a normalised float32 image and an ``int``. Training splits augment by
default as the pruning papers do (random crop with zero padding 4, or 8 for Tiny ImageNet, + horizontal
flip), as batched tensor ops without torchvision (:mod:`.transforms`).

Missing or malformed files raise :class:`DatasetNotFoundError` (a ``FileNotFoundError``) or
:class:`DatasetError` (a ``ValueError``) saying what was expected where and what was found.

Example::

    train_loader, test_loader = fastprune.data.loaders("digits", batch_size=128, seed=0)
    for images, labels in train_loader:  # (128, 3, 32, 32) float32, (128,) int64
        ...
"""

from __future__ import annotations

import os
from typing import Optional, Tuple

import torch
from torch.utils.data import DataLoader

from fastprune.data import transforms
from fastprune.data.base import DatasetError, DatasetNotFoundError, ImageDataset, TensorImageDataset

__all__ = [
    "names",
    "load",
    "loaders",
    "ImageDataset",
    "TensorImageDataset",
    "DatasetError",
    "DatasetNotFoundError",
    "transforms",
]

_NAMES = ("digits", "cifar10", "cifar100", "tinyimagenet")


def names() -> Tuple[str, ...]:
    """The data set names :func:`load` accepts."""
    return _NAMES


def _canonical(name: str) -> str:
    key = str(name).lower().replace("-", "").replace("_", "")
    if key not in _NAMES:
        raise ValueError(f"unknown data set {name!r}; choose one of: {', '.join(_NAMES)}")
    return key


def load(
    name: str,
    *,
    data_dir: Optional[str | os.PathLike] = None,
    train: bool = True,
    augment: Optional[bool] = None,
) -> ImageDataset:
    """One split of a data set as a ``torch.utils.data.Dataset``.

    Args:
        name: one of :func:`names` (case-insensitive; ``"CIFAR-10"`` works too).
        data_dir: where the files of ``cifar10``/``cifar100``/``tinyimagenet`` are: the extracted
            folder, its parent or (CIFAR) the ``.tar.gz`` archive. Ignored for the embedded ``digits``.
        train: the training split, else the test split (Tiny ImageNet: ``val``).
        augment: random crop + flip on every access; default: ``train``.

    Returns:
        An :class:`ImageDataset` with ``.name``, ``.num_classes``, ``.input_shape`` ``(C, H, W)``,
        ``.labels`` and items ``(float32 image of input_shape, int label)``.

    Raises:
        ValueError: unknown ``name``.
        DatasetNotFoundError: ``data_dir`` missing or without the expected files.
        DatasetError: files present but malformed.
        ImportError: ``tinyimagenet`` without Pillow.
    """
    key = _canonical(name)
    if key == "digits":
        from fastprune.data.digits import load_digits

        return load_digits(train=train, augment=augment)
    if key in ("cifar10", "cifar100"):
        from fastprune.data.cifar import CIFAR10, CIFAR100, load_cifar

        spec = CIFAR10 if key == "cifar10" else CIFAR100
        return load_cifar(spec, data_dir, train=train, augment=augment)
    from fastprune.data.tinyimagenet import load_tinyimagenet

    return load_tinyimagenet(data_dir, train=train, augment=augment)


def loaders(
    name: str,
    *,
    data_dir: Optional[str | os.PathLike] = None,
    batch_size: int = 128,
    num_workers: int = 0,
    seed: int = 0,
    distributed: bool = False,
    augment: bool = True,
) -> Tuple[DataLoader, DataLoader]:
    """``(train_loader, test_loader)``: standard ``DataLoader``\\ s over :func:`load`'s two splits.

    The training loader shuffles and (if ``augment``) augments; the test loader keeps file order and
    never augments. Neither drops the last partial batch.

    Reproducibility: the shuffle order and the augmentation come from ``seed`` alone, so two runs with
    the same ``seed`` and ``num_workers`` see the same batches (different ``num_workers`` give different,
    equally valid, augmentation draws); each epoch draws anew.

    ``distributed=True`` (after ``torch.distributed.init_process_group``) gives each rank its shard by
    ``DistributedSampler`` (seeded with ``seed``; call ``train_loader.sampler.set_epoch(epoch)`` each
    epoch to reshuffle, as usual); augmentation is seeded with ``seed + rank``. The test sampler pads the
    test set to a multiple of the world size, so a few test images may be counted twice.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    train_set = load(name, data_dir=data_dir, train=True, augment=augment)
    test_set = load(name, data_dir=data_dir, train=False, augment=False)
    train_sampler = test_sampler = None
    rank = 0
    if distributed:
        import torch.distributed as dist
        from torch.utils.data.distributed import DistributedSampler

        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError(
                "loaders(distributed=True) needs torch.distributed.init_process_group() to have been called"
            )
        rank = dist.get_rank()
        train_sampler = DistributedSampler(train_set, shuffle=True, seed=seed)
        test_sampler = DistributedSampler(test_set, shuffle=False)
    train_set.seed_augmentation(seed + rank)
    train_loader = DataLoader(
        train_set,
        batch_size=batch_size,
        shuffle=train_sampler is None,
        sampler=train_sampler,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed + rank),
    )
    test_loader = DataLoader(test_set, batch_size=batch_size, sampler=test_sampler, num_workers=num_workers)
    return train_loader, test_loader
