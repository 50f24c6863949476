"""Training ResNets with pruning: `train(TrainConfig(...))`, also `fastprune train` on the command line.

The loop, checkpoints and metrics load on first use (they import torch), so building the command line
(`fastprune --help`, `fastprune info --cmake-prefix`) stays light."""

from fastprune.training.config import METHODS, TrainConfig

_LAZY_NAMES = {
    "load_checkpoint": "fastprune.training.checkpoint",
    "save_atomic": "fastprune.training.checkpoint",
    "TrainResult": "fastprune.training.loop",
    "TrainingInterrupted": "fastprune.training.interrupts",
    "evaluate": "fastprune.training.loop",
    "train": "fastprune.training.loop",
    "EpochMetrics": "fastprune.training.metrics",
}

__all__ = ["METHODS", "TrainConfig", *sorted(_LAZY_NAMES)]


def __getattr__(name: str):
    import importlib

    if name in _LAZY_NAMES:
        return getattr(importlib.import_module(_LAZY_NAMES[name]), name)
    raise AttributeError(f"module 'fastprune.training' has no attribute {name!r}")
