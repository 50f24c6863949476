"""Checkpoints written atomically: a process killed at any moment leaves the previous one intact."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Union

import torch

from fastprune.serialization import load_torch_file

FORMAT = "fastprune-checkpoint/1"


def save_atomic(state: dict[str, Any], path: Union[str, os.PathLike]) -> Path:
    """torch.save `state` to `path` atomically: write a temporary file in the same folder, fsync it,
    then rename it over `path` (atomic on POSIX and Windows), and fsync the folder so the rename
    survives a power cut. Readers see either the old file or the new one, never a torn one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if hasattr(os, "O_DIRECTORY"):
        dir_fd = os.open(path.parent, os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path


def load_checkpoint(path: Union[str, os.PathLike], *, trust: bool = False) -> dict[str, Any]:
    """A checkpoint written by `save_atomic` (on the CPU), with clear errors for anything else. Read with
    the restricted unpickler (tensors and plain containers only: a crafted file cannot run code); `trust`
    allows a full unpickle of a file that needs one (:func:`fastprune.serialization.load_torch_file`)."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    state = load_torch_file(path, trust=trust, what="checkpoint")
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"checkpoint: {path} was not written by fastprune (expected format {FORMAT!r})")
    return state
