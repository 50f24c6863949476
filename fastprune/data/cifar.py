"""CIFAR-10 and CIFAR-100 from the standard "python version" files, read without torchvision.

``data_dir`` may be the extracted folder (``cifar-10-batches-py/`` with ``data_batch_1`` .. ``data_batch_5``
and ``test_batch``; ``cifar-100-python/`` with ``train`` and ``test``), a folder that contains it, the
archive (``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz``), or a folder that contains the
archive; an extracted folder wins over an archive next to it. Archives are read in memory, not extracted.

Each batch file is a pickled dict: ``b"data"`` a ``(n, 3072)`` uint8 array (1024 red, 1024 green, 1024
blue values, rows top to bottom) and ``b"labels"`` (CIFAR-10) or ``b"fine_labels"`` (CIFAR-100, its 100
classes). The pickles are read by an unpickler that only constructs NumPy arrays and plain Python data,
so a hostile file cannot run code.

Images are kept as uint8 ``(N, 3, 32, 32)``. Normalisation uses the per-channel means and stds of the
training sets in the form the SFP/FPGM pruning papers' code uses (``x / 255`` of the values below);
training augmentation is their random 32x32 crop with 4 zero pixels of padding + horizontal flip.
"""

from __future__ import annotations

import codecs
import io
import os
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Dict, Optional, Tuple

import numpy as np
import torch

from fastprune.data.base import DatasetError, DatasetNotFoundError, TensorImageDataset

__all__ = ["CifarSpec", "CIFAR10", "CIFAR100", "load_cifar", "read_cifar"]

PADDING = 4


@dataclass(frozen=True)
class CifarSpec:
    name: str
    folder: str
    archive: str
    train_files: Tuple[str, ...]
    test_files: Tuple[str, ...]
    label_key: str
    num_classes: int
    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]
    files_text: str  # how the expected folder's contents read in error messages

    def expected(self) -> str:
        return f"{self.folder}/ with {self.files_text}, or {self.archive}"


CIFAR10 = CifarSpec(
    name="cifar10",
    folder="cifar-10-batches-py",
    archive="cifar-10-python.tar.gz",
    train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test_files=("test_batch",),
    label_key="labels",
    num_classes=10,
    mean=tuple(v / 255 for v in (125.3, 123.0, 113.9)),
    std=tuple(v / 255 for v in (63.0, 62.1, 66.7)),
    files_text="data_batch_1..5 and test_batch",
)
CIFAR100 = CifarSpec(
    name="cifar100",
    folder="cifar-100-python",
    archive="cifar-100-python.tar.gz",
    train_files=("train",),
    test_files=("test",),
    label_key="fine_labels",
    num_classes=100,
    mean=tuple(v / 255 for v in (129.3, 124.1, 112.4)),
    std=tuple(v / 255 for v in (68.2, 65.4, 70.4)),
    files_text="train and test",
)


def _listing(path: Path, limit: int = 12) -> str:
    try:
        names = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
    except OSError:
        return "(unreadable)"
    if not names:
        return "nothing (empty folder)"
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def locate(spec: CifarSpec, data_dir: str | os.PathLike, train: bool) -> Tuple[str, Path]:
    """Find the data -> ``("folder", path of the folder holding the batch files)`` or ``("archive",
    path of the tar archive)``; raises :class:`DatasetNotFoundError` saying what was expected where."""
    path = Path(data_dir).expanduser()
    needed = spec.train_files if train else spec.test_files
    if not path.exists():
        raise DatasetNotFoundError(
            f"{spec.name}: data_dir {path} does not exist; expected {spec.expected()} there"
        )
    if path.is_file():
        if tarfile.is_tarfile(path):
            return "archive", path
        raise DatasetError(f"{spec.name}: {path} is not a tar archive; expected {spec.expected()}")
    all_files = spec.train_files + spec.test_files
    for folder in (path, path / spec.folder):
        if folder.is_dir() and any((folder / f).is_file() for f in all_files):
            missing = [f for f in needed if not (folder / f).is_file()]
            if missing:
                raise DatasetNotFoundError(
                    f"{spec.name}: {folder} lacks {', '.join(missing)}; expected {spec.expected()} "
                    f"under {path}; found in {folder}: {_listing(folder)}"
                )
            return "folder", folder
    if (path / spec.archive).is_file():
        return "archive", path / spec.archive
    raise DatasetNotFoundError(
        f"{spec.name}: expected {spec.expected()}, under {path}; found: {_listing(path)}"
    )


class _SafeUnpickler(pickle.Unpickler):
    """Constructs NumPy arrays and builtin data only (the CIFAR batches need nothing else)."""

    # Python 2 era files (the real CIFAR ones) name numpy.core; NumPy 2 writes numpy._core, and
    # pickle protocol 5 reconstructs arrays with _frombuffer. Resolved here without importing numpy.core.
    # Python 3 pickles of protocol < 3 spell bytes as _codecs.encode(text, "latin1").
    _allowed = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,
    }
    for _core in ("numpy.core", "numpy._core"):
        _allowed[(f"{_core}.multiarray", "_reconstruct")] = np.zeros(1).__reduce_ex__(2)[0]
        _allowed[(f"{_core}.multiarray", "scalar")] = np.float64(0).__reduce__()[0]
        _allowed[(f"{_core}.numeric", "_frombuffer")] = np.zeros(1).__reduce_ex__(5)[0]
    del _core

    def find_class(self, module: str, name: str):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}") from None


def _get(batch: dict, key: str):
    for k in (key.encode(), key):
        if k in batch:
            return batch[k]
    raise KeyError(key)


def _parse_batch(spec: CifarSpec, blob: bytes, where: str) -> Tuple[np.ndarray, np.ndarray]:
    try:
        batch = _SafeUnpickler(io.BytesIO(blob), encoding="bytes").load()
    except Exception as exc:
        raise DatasetError(f"{spec.name}: {where} is not a readable CIFAR batch pickle ({exc})") from exc
    if not isinstance(batch, dict):
        raise DatasetError(f"{spec.name}: {where} holds a {type(batch).__name__}, expected a dict")
    try:
        data = np.asarray(_get(batch, "data"))
        labels = np.asarray(_get(batch, spec.label_key))
    except KeyError as exc:
        keys = ", ".join(repr(k) for k in batch)
        raise DatasetError(
            f"{spec.name}: {where} lacks key b'{exc.args[0]}'; expected b'data' and b'{spec.label_key}', "
            f"found: {keys}"
        ) from None
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DatasetError(
            f"{spec.name}: {where}: b'data' must be a uint8 array of shape (n, 3072), "
            f"got {data.dtype} {data.shape}"
        )
    if labels.ndim != 1 or labels.shape[0] != data.shape[0] or not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(
            f"{spec.name}: {where}: b'{spec.label_key}' must hold {data.shape[0]} integer labels, "
            f"got {labels.dtype} {labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= spec.num_classes):
        raise DatasetError(
            f"{spec.name}: {where}: labels must lie in 0..{spec.num_classes - 1}, "
            f"got {labels.min()}..{labels.max()}"
        )
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _read_archive(spec: CifarSpec, path: Path, files: Tuple[str, ...]) -> Dict[str, bytes]:
    blobs: Dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                parts = PurePosixPath(member.name).parts
                if (
                    member.isfile()
                    and len(parts) >= 2
                    and parts[-2] == spec.folder
                    and parts[-1] in files
                    and parts[-1] not in blobs
                ):
                    blobs[parts[-1]] = tar.extractfile(member).read()
                    if len(blobs) == len(files):
                        break
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DatasetError(f"{spec.name}: cannot read the archive {path} ({exc})") from exc
    missing = [f for f in files if f not in blobs]
    if missing:
        raise DatasetNotFoundError(
            f"{spec.name}: the archive {path} lacks "
            f"{', '.join(f'{spec.folder}/{f}' for f in missing)}; expected {spec.expected()}"
        )
    return blobs


def read_cifar(spec: CifarSpec, data_dir: str | os.PathLike, train: bool) -> Tuple[np.ndarray, np.ndarray]:
    """One split as ``(images (N, 3, 32, 32) uint8, labels (N,) int64)``, batches in file order."""
    kind, path = locate(spec, data_dir, train)
    files = spec.train_files if train else spec.test_files
    if kind == "archive":
        blobs = _read_archive(spec, path, files)
        parts = [_parse_batch(spec, blobs[f], f"{path}:{spec.folder}/{f}") for f in files]
    else:
        parts = [_parse_batch(spec, (path / f).read_bytes(), str(path / f)) for f in files]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def load_cifar(
    spec: CifarSpec,
    data_dir: Optional[str | os.PathLike],
    *,
    train: bool = True,
    augment: bool | None = None,
) -> TensorImageDataset:
    """One split of CIFAR-10/100 as an in-memory dataset of ``(3, 32, 32)`` images."""
    if data_dir is None:
        raise DatasetNotFoundError(
            f"{spec.name} is not embedded: pass data_dir= (fastprune.data) or --data-dir (command line) "
            f"naming where {spec.expected()} is"
        )
    images, labels = read_cifar(spec, data_dir, train)
    return TensorImageDataset(
        torch.from_numpy(np.ascontiguousarray(images)),
        torch.from_numpy(labels),
        name=spec.name,
        num_classes=spec.num_classes,
        mean=spec.mean,
        std=spec.std,
        train=train,
        augment=train if augment is None else augment,
        padding=PADDING,
    )
