"""Reading torch files safely (checkpoints and models are data, never code), and writing files atomically.

``torch.load(..., weights_only=False)`` unpickles arbitrary objects, and a pickle can run any code while it
is read: a shared checkpoint would run its author's commands on the machine that loads it. fastprune writes
only tensors and plain containers (dicts, lists, numbers, strings), which PyTorch's restricted unpickler
(``weights_only=True``) reads; :func:`load_torch_file` reads with it alone. A file that needs more (an
older or foreign pickle) is refused with a message saying so, unless the caller opts in with
``trust=True`` (the CLI's ``--trust-checkpoint``), which warns and unpickles it fully.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import warnings
from pathlib import Path
from typing import Any, BinaryIO, Callable, Union

import torch


class UntrustedFileError(ValueError):
    """A torch file holds objects the restricted unpickler refuses (it could run code when loaded)."""


def load_torch_file(path: Union[str, os.PathLike], *, trust: bool = False, what: str = "file") -> Any:
    """``torch.load(path, map_location="cpu")`` with the restricted unpickler; with `trust`, a file it
    refuses is unpickled fully after a warning. `what` names the file in messages ("checkpoint", ...).

    Raises:
        FileNotFoundError: no file at `path`.
        UntrustedFileError: the file needs a full unpickle and `trust` is False.
        ValueError: not a readable torch file (truncated, foreign format).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what}: no file at {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "Weights only load failed" not in str(error):
            raise ValueError(f"{what}: {path} is not a readable torch file ({_summary(error)})") from error
        refused = error
    except Exception as error:  # noqa: BLE001 - a truncated or foreign file
        raise ValueError(f"{what}: {path} is not a readable torch file ({_summary(error)})") from error
    if not trust:
        raise UntrustedFileError(
            f"{what}: {path} holds Python objects beyond tensors and plain containers, which could run code "
            f"when loaded ({_summary(refused)}); if you trust where it came from, pass "
            "--trust-checkpoint (trust=True)"
        ) from refused
    warnings.warn(
        f"{what}: unpickling {path} fully (trust=True): it can run code; only do this for files you trust",
        stacklevel=2,
    )
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # noqa: BLE001
        raise ValueError(f"{what}: {path} is not a readable torch file ({_summary(error)})") from error


def _summary(error: BaseException) -> str:
    """The informative line of a torch.load error (the unpickler's verdict, else the first line)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    verdict = next((line for line in lines if "GLOBAL" in line or "WeightsUnpickler" in line), None)
    text = verdict or (lines[0] if lines else type(error).__name__)
    return text if len(text) <= 200 else text[:197] + "..."


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it: put it back at once
    os.umask(mask)
    return mask


def replace_atomically(path: Union[str, os.PathLike], write: Callable[[BinaryIO], None]) -> Path:
    """Create or replace `path` atomically: `write(f)` fills a temporary file in the same folder, which is
    fsynced and renamed over `path` (atomic on POSIX and Windows); the folder is fsynced so the rename
    survives a power cut. Readers see the old file or the new one, never a torn one; a failure or a
    Ctrl-C while writing leaves no temporary behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        if hasattr(os, "fchmod"):  # mkstemp makes it 0600: give it the mode open() would (0666 less umask)
            os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise
    if hasattr(os, "O_DIRECTORY"):
        dir_fd = os.open(path.parent, os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path
