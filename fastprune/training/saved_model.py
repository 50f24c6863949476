"""The network a training run saved, rebuilt from its files: a run folder (its model.pt, else checkpoint.pt),
a model.pt or a checkpoint.pt, read with the restricted unpickler (``trust=True`` opts in to a full one).
Shared by ``fastprune evaluate`` and ``fastprune compare``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn


def resolve_run_file(path: Path, what: str) -> Path:
    """`path` itself, or for a run folder its model.pt, else checkpoint.pt. `what` prefixes the errors."""
    path = Path(path)
    if path.is_dir():
        for name in ("model.pt", "checkpoint.pt"):
            if (path / name).is_file():
                return path / name
        raise FileNotFoundError(f"{what}: {path} holds neither model.pt nor checkpoint.pt")
    if not path.exists():
        raise FileNotFoundError(f"{what}: no file or folder at {path}")
    return path


def run_config(state: dict[str, Any], file: Path, trust: bool, what: str) -> dict[str, Any]:
    """The training config of the run `file` belongs to: the one in the file, else config.json beside it,
    else the checkpoint.pt beside it ({} when none says)."""
    from fastprune.training.checkpoint import load_checkpoint

    if isinstance(state.get("config"), dict):
        return state["config"]
    beside = file.parent / "config.json"
    if beside.is_file():
        try:
            config = json.loads(beside.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{what}: {beside} is not JSON ({error})") from error
        return config if isinstance(config, dict) else {}
    if file.name != "checkpoint.pt" and (file.parent / "checkpoint.pt").is_file():
        config = load_checkpoint(file.parent / "checkpoint.pt", trust=trust).get("config")
        return config if isinstance(config, dict) else {}
    return {}


def load_saved_model(
    source: Path, *, trust: bool = False, what: str = "input"
) -> tuple[nn.Module, dict[str, Any], dict[str, Any], Path]:
    """(the network with its weights as saved, on the CPU, in eval mode; the file's state; the run's config,
    its "arch" and "num_classes" filled in; the file read)."""
    from fastprune import models
    from fastprune.training.checkpoint import load_checkpoint

    file = resolve_run_file(Path(source), what)
    state = load_checkpoint(file, trust=trust)
    if not isinstance(state.get("model"), dict):
        raise ValueError(
            f"{what}: {file} holds no 'model' state dict (not a fastprune model.pt / checkpoint.pt)"
        )
    config = run_config(state, file, trust, what)
    weights = state["model"]
    arch = str(state.get("arch") or config.get("arch") or "").lower()
    if arch not in models.names():
        raise ValueError(
            f"{what}: {file} names no known architecture (got {arch!r}; valid: {models.names()})"
        )
    heads = [key for key, value in weights.items() if key.endswith(".weight") and value.dim() == 2]
    if state.get("num_classes") is None and not heads:
        raise ValueError(f"{what}: {file} gives no num_classes and its state dict no linear layer")
    num_classes = int(state.get("num_classes") or weights[heads[-1]].shape[0])
    small_input = None
    if arch in ("resnet18", "resnet34", "resnet50") and "conv1.weight" in weights:
        small_input = tuple(weights["conv1.weight"].shape[2:]) == (3, 3)
    model = models.create(arch, num_classes=num_classes, small_input=small_input)
    try:
        model.load_state_dict(weights)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0]
        raise ValueError(f"{what}: the weights in {file} do not fit {arch} ({first})") from error
    return model.eval(), state, {**config, "arch": arch, "num_classes": num_classes}, file
