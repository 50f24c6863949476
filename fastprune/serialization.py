"""Reading torch files safely: checkpoints and models are data, never code.

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
import warnings
from pathlib import Path
from typing import Any, Union

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
