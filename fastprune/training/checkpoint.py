"""Checkpoints written atomically: a process killed at any moment leaves the previous one intact."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Union

import torch

from fastprune.serialization import load_torch_file, replace_atomically

FORMAT = "fastprune-checkpoint/1"


def save_atomic(state: dict[str, Any], path: Union[str, os.PathLike]) -> Path:
    """torch.save `state` to `path` atomically (:func:`replace_atomically`): readers see either the old
    file or the new one, never a torn one."""
    return replace_atomically(path, lambda f: torch.save({"format": FORMAT, **state}, f))


def save_config(config: dict[str, Any], out_dir: Union[str, os.PathLike]) -> Path:
    """`config` (a resolved TrainConfig's ``to_dict()``) as out_dir/config.json, replaced atomically."""
    text = (json.dumps(config, indent=1) + "\n").encode()
    return replace_atomically(Path(out_dir) / "config.json", lambda f: f.write(text))


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
