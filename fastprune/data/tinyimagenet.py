"""Tiny ImageNet (200 classes, 64x64 RGB JPEGs) in its standard folder layout, decoded lazily by Pillow.

``data_dir`` is ``tiny-imagenet-200/`` or a folder containing it::

    tiny-imagenet-200/wnids.txt                       one WordNet id per line (the classes)
    tiny-imagenet-200/train/<wnid>/images/*.JPEG      training images (500 per class)
    tiny-imagenet-200/val/images/*.JPEG               validation images (50 per class)
    tiny-imagenet-200/val/val_annotations.txt         <file>\\t<wnid>\\t<x0>\\t<y0>\\t<x1>\\t<y1> per line

The labelled ``val`` split serves as the test split (``test/`` has no labels). Class ``k`` is the
``k``-th wnid in sorted order, the order torchvision's ``ImageFolder`` gives ``train/``. Images are decoded
when a batch is fetched (grey images are converted to RGB); every image must be 64x64.

Normalisation uses the ImageNet per-channel statistics. Training augmentation is a random 64x64 crop with
8 zero pixels of padding + horizontal flip: the CIFAR recipe scaled to the image size, chosen over
random-resized-crop because it is a cheap batched tensor op and keeps the whole object in view of the
small images.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import torch

from fastprune.data.base import DatasetError, DatasetNotFoundError, ImageDataset

__all__ = ["TinyImageNet", "load_tinyimagenet"]

FOLDER = "tiny-imagenet-200"
SIZE = 64
PADDING = 8
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
EXPECTED = (
    f"{FOLDER}/ with wnids.txt, train/<wnid>/images/*.JPEG, val/images/*.JPEG and val/val_annotations.txt"
)
_EXTENSIONS = (".jpeg", ".jpg", ".png")


def _require_pillow():
    try:
        from PIL import Image
    except ImportError as exc:
        raise ImportError(
            "tinyimagenet: reading its JPEG images needs Pillow, which is not installed: pip install pillow"
        ) from exc
    return Image


def _listing(path: Path, limit: int = 12) -> str:
    try:
        names = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
    except OSError:
        return "(unreadable)"
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return (", ".join(names[:limit]) + more) if names else "nothing (empty folder)"


def locate(data_dir: str | os.PathLike) -> Path:
    """The ``tiny-imagenet-200`` folder: ``data_dir`` itself or its child of that name."""
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        what = "is not a folder" if path.exists() else "does not exist"
        raise DatasetNotFoundError(f"tinyimagenet: data_dir {path} {what}; expected {EXPECTED} there")
    for root in (path, path / FOLDER):
        if (root / "wnids.txt").is_file():
            return root
    hint = ""
    if (path / f"{FOLDER}.zip").is_file():
        hint = f" ({FOLDER}.zip is there: extract it first)"
    raise DatasetNotFoundError(
        f"tinyimagenet: expected {EXPECTED}, under {path}; found: {_listing(path)}{hint}"
    )


def _images_in(folder: Path) -> List[str]:
    return sorted(e.name for e in os.scandir(folder) if e.name.lower().endswith(_EXTENSIONS) and e.is_file())


def scan(root: Path, train: bool) -> Tuple[List[str], List[int], List[str]]:
    """``(image paths, labels, wnids)`` of one split, images sorted by class then file name."""
    wnids = sorted({w.strip() for w in (root / "wnids.txt").read_text().splitlines() if w.strip()})
    if not wnids:
        raise DatasetError(f"tinyimagenet: {root / 'wnids.txt'} lists no classes")
    index = {w: k for k, w in enumerate(wnids)}
    paths: List[str] = []
    labels: List[int] = []
    if train:
        for w in wnids:
            folder = root / "train" / w / "images"
            if not folder.is_dir():
                raise DatasetNotFoundError(
                    f"tinyimagenet: missing {folder} (class {w} of wnids.txt); expected {EXPECTED}"
                )
            names = _images_in(folder)
            paths += [str(folder / n) for n in names]
            labels += [index[w]] * len(names)
    else:
        images, notes = root / "val" / "images", root / "val" / "val_annotations.txt"
        for p in (images, notes):
            if not p.exists():
                raise DatasetNotFoundError(f"tinyimagenet: missing {p}; expected {EXPECTED}")
        present = set(_images_in(images))
        rows = []
        for n, line in enumerate(notes.read_text().splitlines(), 1):
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) < 2 or fields[1] not in index:
                raise DatasetError(
                    f"tinyimagenet: {notes} line {n} is not '<file>\\t<wnid from wnids.txt>\\t...': {line!r}"
                )
            if fields[0] not in present:
                raise DatasetNotFoundError(
                    f"tinyimagenet: {notes} line {n} names {images / fields[0]}, missing"
                )
            rows.append((index[fields[1]], fields[0]))
        for label, name in sorted(rows):
            paths.append(str(images / name))
            labels.append(label)
    if not paths:
        raise DatasetNotFoundError(
            f"tinyimagenet: no images found for the {'train' if train else 'val'} split "
            f"under {root}; expected {EXPECTED}"
        )
    return paths, labels, wnids


class TinyImageNet(ImageDataset):
    """A Tiny ImageNet split whose images are decoded from their files when fetched."""

    def __init__(self, root: Path, *, train: bool, augment: bool) -> None:
        self._image = _require_pillow()
        paths, labels, wnids = scan(root, train)
        super().__init__(
            name="tinyimagenet",
            labels=torch.tensor(labels, dtype=torch.int64),
            num_classes=len(wnids),
            input_shape=(3, SIZE, SIZE),
            mean=MEAN,
            std=STD,
            train=train,
            augment=augment,
            padding=PADDING,
        )
        self.root = root
        self.paths = paths
        self.wnids = wnids

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_image"] = None  # modules do not pickle (spawned DataLoader workers)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._image = _require_pillow()

    def decode(self, index: int) -> np.ndarray:
        """Image ``index`` as ``(64, 64, 3)`` uint8."""
        path = self.paths[index]
        try:
            with self._image.open(path) as img:
                arr = np.asarray(img.convert("RGB"))
        except OSError as exc:
            raise DatasetError(f"tinyimagenet: cannot decode {path} ({exc})") from exc
        if arr.shape != (SIZE, SIZE, 3):
            raise DatasetError(f"tinyimagenet: {path} is {arr.shape[1]}x{arr.shape[0]}, expected 64x64")
        return arr

    def raw(self, indices: torch.Tensor) -> torch.Tensor:
        batch = np.stack([self.decode(int(i)) for i in indices]) if len(indices) else np.zeros((0, 64, 64, 3))
        return torch.from_numpy(batch.astype(np.uint8, copy=False)).permute(0, 3, 1, 2).contiguous()


def load_tinyimagenet(
    data_dir: Optional[str | os.PathLike], *, train: bool = True, augment: bool | None = None
) -> TinyImageNet:
    """One Tiny ImageNet split (``val`` for ``train=False``) of ``(3, 64, 64)`` images."""
    if data_dir is None:
        raise DatasetNotFoundError(
            f"tinyimagenet is not embedded: pass data_dir= (fastprune.data) or --data-dir (command line) "
            f"naming where {EXPECTED} is"
        )
    _require_pillow()
    return TinyImageNet(locate(data_dir), train=train, augment=train if augment is None else augment)
