"""Training ResNets with pruning: `train(TrainConfig(...))`, also `fastprune train` on the command line."""

from fastprune.training.checkpoint import load_checkpoint, save_atomic
from fastprune.training.config import METHODS, TrainConfig
from fastprune.training.loop import TrainResult, evaluate, train
from fastprune.training.metrics import EpochMetrics

__all__ = [
    "METHODS",
    "EpochMetrics",
    "TrainConfig",
    "TrainResult",
    "evaluate",
    "load_checkpoint",
    "save_atomic",
    "train",
]
