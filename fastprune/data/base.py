"""The dataset classes shared by every loader, and the error they raise for missing or malformed data."""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
from torch.utils.data import Dataset, get_worker_info

from fastprune.data import transforms as T

__all__ = ["DatasetError", "DatasetNotFoundError", "ImageDataset", "TensorImageDataset"]


class DatasetError(ValueError):
    """A data set is malformed: the message says which file, what was expected and what was found."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """A data set's files are not where they were looked for (also a :class:`FileNotFoundError`); the
    message says what was expected where and what is there instead."""


class ImageDataset(Dataset):
    """A labelled image classification split, items ``(image, label)``: ``image`` a normalised float32
    tensor of shape :attr:`input_shape`, ``label`` an ``int`` in ``0 .. num_classes - 1``.

    Attributes: ``name``, ``num_classes``, ``input_shape`` ``(C, H, W)``, ``train`` (which split),
    ``augment`` (random crop with ``padding`` zeros + horizontal flip, applied on every access),
    ``mean``/``std`` (per-channel normalisation, applied after augmentation), ``labels`` (int64 tensor).

    Batches are transformed together: a ``DataLoader`` fetches a whole batch through
    :meth:`__getitems__`, and :meth:`get_batch` returns stacked tensors directly.

    Randomness: inside a ``DataLoader`` worker, augmentation draws from torch's default generator, which
    the ``DataLoader`` seeds per worker and per epoch from its own ``generator``; elsewhere it draws from
    this dataset's generator (:meth:`seed_augmentation`) or, if none was set, torch's default generator.
    So a seeded run repeats exactly for a given ``num_workers``.
    """

    def __init__(
        self,
        *,
        name: str,
        labels: torch.Tensor,
        num_classes: int,
        input_shape: Tuple[int, int, int],
        mean: Sequence[float],
        std: Sequence[float],
        train: bool,
        augment: bool,
        padding: int,
    ) -> None:
        self.name = name
        self.labels = labels.to(torch.int64)
        self.num_classes = int(num_classes)
        self.input_shape = tuple(int(s) for s in input_shape)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.train = bool(train)
        self.augment = bool(augment)
        self.padding = int(padding)
        self.generator: Optional[torch.Generator] = None

    # -- to be provided by subclasses ---------------------------------------------------------------

    def raw(self, indices: torch.Tensor) -> torch.Tensor:
        """Images ``indices`` before any transform: ``(n, C, H, W)``, uint8 0..255 or float in [0, 1]."""
        raise NotImplementedError

    # -- shared behaviour ----------------------------------------------------------------------------

    def seed_augmentation(self, seed: Optional[int]) -> None:
        """Draw augmentation in this process from a private generator seeded with ``seed`` (``None``:
        use torch's default generator). DataLoader workers ignore it (see the class docstring)."""
        self.generator = None if seed is None else torch.Generator().manual_seed(int(seed))

    def transform(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw batch -> float32 in [0, 1] -> (random crop + flip if :attr:`augment`) -> normalised."""
        x = T.to_float(raw)
        if self.augment:
            gen = self.generator if get_worker_info() is None else None
            if self.padding > 0:
                x = T.random_crop(x, self.padding, generator=gen)
            x = T.random_hflip(x, generator=gen)
        return T.normalize(x, self.mean, self.std)

    def get_batch(self, indices: Sequence[int] | torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Transformed images ``(n, C, H, W)`` float32 and labels ``(n,)`` int64 for ``indices``."""
        idx = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        n = len(self)
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n):
            raise IndexError(f"{self.name}: index out of range for a split of {n} images")
        return self.transform(self.raw(idx)), self.labels[idx]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitems__(self, indices: List[int]) -> List[Tuple[torch.Tensor, int]]:
        # Called by DataLoader with a batch's indices: one batched transform instead of n small ones.
        x, y = self.get_batch(indices)
        return list(zip(x.unbind(0), y.tolist()))

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, int]:
        index = int(index)
        if index < 0:
            index += len(self)
        x, y = self.get_batch([index])
        return x[0], int(y[0])

    def class_counts(self) -> torch.Tensor:
        """Number of images per class, ``(num_classes,)`` int64."""
        return torch.bincount(self.labels, minlength=self.num_classes)

    def __repr__(self) -> str:
        split = "train" if self.train else "test"
        return (
            f"{type(self).__name__}(name={self.name!r}, split={split!r}, size={len(self)}, "
            f"num_classes={self.num_classes}, input_shape={self.input_shape}, augment={self.augment})"
        )


class TensorImageDataset(ImageDataset):
    """A split held in memory as one tensor ``images`` ``(N, C, H, W)``, uint8 or float32 in [0, 1]."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        name: str,
        num_classes: int,
        mean: Sequence[float],
        std: Sequence[float],
        train: bool,
        augment: bool,
        padding: int,
    ) -> None:
        if images.dim() != 4 or images.shape[0] != labels.shape[0]:
            raise ValueError(
                f"{name}: images (N, C, H, W) and labels (N,) disagree: {tuple(images.shape)} and "
                f"{tuple(labels.shape)}"
            )
        super().__init__(
            name=name,
            labels=labels,
            num_classes=num_classes,
            input_shape=tuple(images.shape[1:]),
            mean=mean,
            std=std,
            train=train,
            augment=augment,
            padding=padding,
        )
        self.images = images.contiguous()

    def raw(self, indices: torch.Tensor) -> torch.Tensor:
        return self.images.index_select(0, indices)
