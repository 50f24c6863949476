"""``digits``: the embedded default data set, real handwritten digits that need no download.

1,797 8x8 images with pixels 0..16 in 10 classes (scikit-learn's copy of the UCI optical-recognition
digits; provenance and licenses in ``DIGITS_LICENSE.txt`` next to this file). Shaped for CIFAR models:

- pixels are divided by 16 (-> [0, 1]) and upsampled 8x8 -> 32x32 **bilinearly** (half-pixel centres,
  edges clamped: the same as ``F.interpolate(mode="bilinear", align_corners=False)``). Bilinear rather
  than nearest because 4x4 constant blocks would give the 3x3 convolutions of a ResNet little but block
  edges to see; the smoother strokes look more like the natural images these models are meant for. The
  upsampling is a fixed matrix product in NumPy float64, and exact (weights 1/8, 3/8, 5/8, 7/8 and
  pixels k/16 are dyadic), so the float32 data are bitwise the same on every machine and version;
- the grey channel is replicated to 3 channels;
- a fixed stratified 80/20 split: for each class in turn (0..9), that class's images in file order are
  permuted by one ``numpy.random.RandomState(0)`` (its stream is frozen by NumPy's compatibility policy)
  and the first ``floor(0.2 * n_class + 0.5)`` go to the test split -> 1,438 train and 359 test images;
- per-channel mean and std of the training split (after upsampling) normalise both splits;
- training augmentation as for CIFAR: random 32x32 crop with 4 zero pixels of padding + horizontal flip
  (kept although mirrored digits are not digits, so that digits exercises exactly the CIFAR pipeline;
  pass ``augment=False`` for plain data).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
from importlib import resources
from typing import Tuple

import numpy as np
import torch

from fastprune.data.base import DatasetError, TensorImageDataset

__all__ = ["read_digits", "split_indices", "bilinear_matrix", "load_digits"]

FILE = "digits.csv.gz"
SHA256 = "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22"
NUM_IMAGES = 1797
NUM_CLASSES = 10
SIZE = 32
TEST_FRACTION = 0.2
SPLIT_SEED = 0
PADDING = 4


@functools.lru_cache(maxsize=1)
def read_digits() -> Tuple[np.ndarray, np.ndarray]:
    """The embedded file as ``(images (1797, 8, 8) uint8 0..16, labels (1797,) int64)`` (read-only)."""
    try:
        blob = resources.files("fastprune.data").joinpath(FILE).read_bytes()
    except (FileNotFoundError, OSError) as exc:
        raise DatasetError(
            f"digits: the embedded file fastprune/data/{FILE} is missing from this installation "
            f"({exc}); reinstall fastprune (setup.py ships it as package data)"
        ) from exc
    digest = hashlib.sha256(blob).hexdigest()
    if digest != SHA256:
        raise DatasetError(f"digits: fastprune/data/{FILE} is corrupt: SHA-256 {digest}, expected {SHA256}")
    table = np.loadtxt(io.BytesIO(gzip.decompress(blob)), delimiter=",", dtype=np.int64)
    images = table[:, :64].reshape(-1, 8, 8).astype(np.uint8)
    labels = table[:, 64].copy()
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def split_indices(
    labels: np.ndarray, test_fraction: float = TEST_FRACTION, seed: int = SPLIT_SEED
) -> Tuple[np.ndarray, np.ndarray]:
    """Deterministic stratified split -> ``(train_indices, test_indices)``, each sorted ascending.

    Classes in increasing order; each class's indices (ascending) are permuted by one shared
    ``RandomState(seed)`` and the first ``floor(test_fraction * n + 0.5)`` of them are the test ones.
    """
    labels = np.asarray(labels)
    rng = np.random.RandomState(seed)
    test = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        n_test = int(np.floor(test_fraction * len(members) + 0.5))
        test.append(members[rng.permutation(len(members))[:n_test]])
    test_idx = np.sort(np.concatenate(test)).astype(np.int64)
    train_idx = np.setdiff1d(np.arange(len(labels), dtype=np.int64), test_idx)
    return train_idx, test_idx


def bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)`` float64 matrix ``A`` of 1-D bilinear resampling with half-pixel centres and
    clamped edges; a 2-D image ``X`` resamples to ``A @ X @ A.T``."""
    a = np.zeros((n_out, n_in))
    src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    i0 = np.floor(src).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w1 = src - i0
    rows = np.arange(n_out)
    np.add.at(a, (rows, i0), 1.0 - w1)
    np.add.at(a, (rows, i1), w1)
    return a


@functools.lru_cache(maxsize=1)
def _prepared() -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    images, labels = read_digits()
    a = bilinear_matrix(8, SIZE)
    big = a @ (images.astype(np.float64) / 16.0) @ a.T  # (N, 32, 32) in [0, 1]
    train_idx, test_idx = split_indices(labels)
    train = big[train_idx]
    mean = np.full(3, train.mean())
    std = np.full(3, train.std())
    out = (big.astype(np.float32), labels, train_idx, test_idx, mean, std)
    for arr in out:
        arr.flags.writeable = False
    return out


def normalization() -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    """Per-channel ``(mean, std)`` of the training split, the normalisation both splits use."""
    _, _, _, _, mean, std = _prepared()
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def load_digits(*, train: bool = True, augment: bool | None = None) -> TensorImageDataset:
    """One split of ``digits`` as an in-memory dataset of ``(3, 32, 32)`` float images."""
    big, labels, train_idx, test_idx, _, _ = _prepared()
    idx = train_idx if train else test_idx
    images = torch.from_numpy(big[idx]).unsqueeze(1).expand(-1, 3, -1, -1).contiguous()
    mean, std = normalization()
    return TensorImageDataset(
        images,
        torch.from_numpy(labels[idx].copy()),
        name="digits",
        num_classes=NUM_CLASSES,
        mean=mean,
        std=std,
        train=train,
        augment=train if augment is None else augment,
        padding=PADDING,
    )
