"""Training runs of a protocol, resumable: a run that completed is reused, one that stopped goes on.

A protocol (:mod:`fastprune.research.kernel_protocol`, :mod:`fastprune.research.filter_protocol`) is
many training runs, each in its own run folder. Running the same command again after a Ctrl-C, a crash
or a finished protocol repeats no completed work: :func:`run_or_reuse` reuses a folder whose model.pt
was written by the same configuration, resumes one whose checkpoint.pt was, and refuses a folder that
holds a run of another configuration (it never overwrites one).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from fastprune.training.config import TrainConfig

SCALES = ("tiny", "small", "paper")  # of every protocol: smoke test, this machine, the papers' own
BATCH_SIZE = 128  # the papers' batch, in every protocol


def check_scale(scale: str) -> None:
    if scale not in SCALES:
        raise ValueError(f"scale: expected one of {', '.join(SCALES)}, got {scale!r}")


# Fields that change how a run executes or talks, not what it computes: a rerun may change them.
EXECUTION_FIELDS = ("out_dir", "threads", "progress", "quiet", "num_workers", "backend", "data_dir")


@dataclass
class RunOutcome:
    """What a protocol reads of a finished run."""

    out_dir: Path
    final_test_acc: float
    metrics: list[dict[str, Any]]  # metrics.json's rows (one per epoch)
    reused: bool  # True: the run was complete before this call
    seconds: float  # training time of all its epochs (sum of epoch_seconds)


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in EXECUTION_FIELDS}


def _differences(saved: dict[str, Any], wanted: dict[str, Any]) -> str:
    keys = sorted(set(saved) | set(wanted))
    return ", ".join(
        f"{k}: {saved.get(k)!r} there, {wanted.get(k)!r} here" for k in keys if saved.get(k) != wanted.get(k)
    )


def _saved_config(path: Path) -> Optional[dict[str, Any]]:
    from fastprune.training.checkpoint import load_checkpoint

    if not path.is_file():
        return None
    config = load_checkpoint(path).get("config")
    return config if isinstance(config, dict) else None


def _read_metrics(out_dir: Path) -> list[dict[str, Any]]:
    file = out_dir / "metrics.json"
    if not file.is_file():
        return []
    rows = json.loads(file.read_text())
    return rows if isinstance(rows, list) else []


def check_folder(config: TrainConfig) -> None:
    """Raise ValueError when ``config.out_dir`` holds a run of another configuration (a protocol checks
    every folder before it trains anything)."""
    out_dir = Path(config.out_dir)
    wanted = _comparable(config.resolved().to_dict())
    for name in ("model.pt", "checkpoint.pt"):
        saved = _saved_config(out_dir / name)
        if saved is not None and _comparable(saved) != wanted:
            differences = _differences(_comparable(saved), wanted)
            raise ValueError(
                f"{out_dir} holds a run of another configuration ({differences}); pass another --out, or "
                "delete that folder to run it again"
            )


def run_or_reuse(config: TrainConfig) -> RunOutcome:
    """Train `config` in ``config.out_dir``, or reuse / resume what that folder holds of the same run."""
    from fastprune.training import train
    from fastprune.training.checkpoint import load_checkpoint

    out_dir = Path(config.out_dir)
    check_folder(config)
    reused = (out_dir / "model.pt").is_file()
    if reused:
        final_acc = float(load_checkpoint(out_dir / "model.pt")["final_test_acc"])
    elif (out_dir / "checkpoint.pt").is_file():
        final_acc = train(resume=out_dir).final_test_acc
    else:
        final_acc = train(config).final_test_acc
    metrics = _read_metrics(out_dir)
    seconds = sum(float(row.get("epoch_seconds") or 0.0) for row in metrics)
    return RunOutcome(out_dir, final_acc, metrics, reused, seconds)


def steps_per_epoch(dataset: str, data_dir: Optional[str], batch_size: int) -> int:
    """Optimizer steps in one epoch of `dataset`'s training split (the last partial batch is a step)."""
    from fastprune import data

    return math.ceil(len(data.load(dataset, data_dir=data_dir, train=True, augment=False)) / batch_size)


def say_nothing(*_args: Any, **_kwargs: Any) -> None:
    """The `say` of a protocol run without progress output."""
