"""What a training run does: the configuration and the papers' default schedules."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

METHODS = ("filter", "kernel", "none")


AMP_CHOICES = (None, "auto", "bfloat16", "float16")


@dataclass
class TrainConfig:
    """One training run. `None` fields take the papers' defaults for the method and data (see
    `resolved()`): filter pruning (SFP/FPGM/MFP): SGD, Nesterov momentum 0.9, lr 0.1, weight decay 5e-4
    (1e-4 on Tiny ImageNet), batch 128, lr × 0.2 at 30/60/80% of the epochs (the authors' 60/120/160 of
    200); kernel pruning (Cugu & Akbas): Adam lr 1e-3, L1 kernel penalty 1e-4, lr × 0.1 at
    40/60/80/90% of the epochs (their 80/120/160/180 of 200), one prune at the end.

    `finetune_lr` gives the fine-tuning epochs (`finetune_epochs`, after the pruning is made final) a
    schedule of their own: they start at `finetune_lr` and multiply it by `gamma` at 50% and 75% of them
    (:meth:`finetune_milestones`), whatever the main schedule reached; None: the main schedule goes on."""

    arch: str = "resnet20"
    dataset: str = "digits"
    data_dir: Optional[str] = None
    out_dir: str = "runs/train"
    init_from: Optional[str] = None  # start from these weights (a model.pt or checkpoint.pt of a run)
    epochs: int = 10
    batch_size: int = 128
    method: str = "filter"  # "filter" (soft filter pruning), "kernel" (eigenvalue-based), "none"
    # filter pruning
    criterion: str = "fpgm"
    criterion_options: dict[str, Any] = field(default_factory=dict)
    rate: float = 0.4
    mode: str = "soft"
    candidates: Optional[list[str]] = None  # MFP switching between these criteria
    attribute: str = "loss"
    prune_every: int = 1  # epochs between pruning steps
    # kernel pruning
    kernel_criterion: str = "spectral_norm"
    kernel_mode: str = "threshold"
    kernel_threshold: float = 1e-4
    l1_penalty: Optional[float] = None
    finetune_epochs: int = 0
    finetune_lr: Optional[float] = None  # the fine-tuning epochs' own schedule (see the class docstring)
    # optimisation
    optimizer: Optional[str] = None  # "sgd" or "adam"
    lr: Optional[float] = None
    momentum: float = 0.9
    weight_decay: Optional[float] = None
    milestones: Optional[list[int]] = None
    gamma: Optional[float] = None
    # execution
    seed: int = 0
    num_workers: int = 0
    threads: Optional[int] = None  # torch.set_num_threads for the run (fastprune's kernels follow)
    device: str = "cpu"
    backend: str = "auto"
    # Held-zero convs train as MaskedConv2d. Off by default: on the demo's ResNet-20 (40% of filters,
    # batch 32) a fine-tuning epoch takes 3.05 s with it against 3.15 s without (2026-11-23, 2-core EPYC,
    # blocked kernels), a gain too small to change the default numerics.
    masked_conv: bool = False
    # Mixed precision: None (float32), "bfloat16", "float16" or "auto" (bfloat16 on the CPU, float16 with a
    # gradient scaler on CUDA). Forward and loss run under torch.autocast; weights and optimizer stay float32.
    amp: Optional[str] = None
    progress: bool = True  # progress bars (rank 0); the per-epoch summary line is printed regardless
    quiet: bool = False  # print nothing at all (no bars, no per-epoch lines)
    max_batches: Optional[int] = None  # per epoch, for smoke tests

    def resolved(self) -> TrainConfig:
        """A copy with every default filled in and every field checked."""
        c = dataclasses.replace(self)
        if c.method not in METHODS:
            raise ValueError(f"method: expected one of {', '.join(map(repr, METHODS))}, got {c.method!r}")
        for name in ("epochs", "batch_size", "prune_every"):
            value = getattr(c, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
        if not (isinstance(c.rate, (int, float)) and 0.0 <= c.rate < 1.0):
            raise ValueError(f"rate: expected a pruning rate in [0, 1), got {c.rate!r}")
        if c.finetune_epochs < 0:
            raise ValueError(f"finetune_epochs: expected >= 0, got {c.finetune_epochs!r}")
        if c.finetune_lr is not None:
            if not _positive_number(c.finetune_lr):
                raise ValueError(f"finetune_lr: expected a learning rate > 0, got {c.finetune_lr!r}")
            if c.finetune_epochs < 1:
                raise ValueError(
                    "finetune_lr: it schedules the fine-tuning epochs; give finetune_epochs >= 1"
                )
        if c.threads is not None and (type(c.threads) is not int or c.threads < 1):
            raise ValueError(f"threads: expected an integer >= 1, got {c.threads!r}")
        if str(c.device).startswith("cuda"):  # checked before any data is read or any model built
            import torch

            if not torch.cuda.is_available():
                raise ValueError(
                    f"device: {c.device!r} needs a CUDA GPU and torch sees none (torch "
                    f"{torch.__version__}, torch.cuda.is_available() is False); use --device cpu"
                )
        if c.amp not in AMP_CHOICES:
            raise ValueError(f"amp: expected one of {', '.join(map(repr, AMP_CHOICES))}, got {c.amp!r}")
        if c.amp == "auto":
            c.amp = "float16" if str(c.device).startswith("cuda") else "bfloat16"
        if c.amp == "float16" and not str(c.device).startswith("cuda"):
            raise ValueError(
                "amp: float16 mixed precision is for CUDA (with a gradient scaler); on the CPU use bfloat16"
            )
        kernel = c.method == "kernel"
        c.optimizer = c.optimizer or ("adam" if kernel else "sgd")
        if c.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer: expected 'sgd' or 'adam', got {c.optimizer!r}")
        if c.lr is None:
            c.lr = 1e-3 if c.optimizer == "adam" else 0.1
        if c.weight_decay is None:
            c.weight_decay = 0.0 if kernel else (1e-4 if c.dataset.lower() == "tinyimagenet" else 5e-4)
        if c.l1_penalty is None:
            c.l1_penalty = 1e-4 if kernel else 0.0
        fractions = (0.4, 0.6, 0.8, 0.9) if kernel else (0.3, 0.6, 0.8)
        if c.milestones is None:
            c.milestones = sorted({max(1, round(f * c.epochs)) for f in fractions})
        if c.gamma is None:
            c.gamma = 0.1 if kernel else 0.2
        return c

    def finetune_milestones(self) -> list[int]:
        """The fine-tuning epochs (0-based, counted from the first fine-tuning epoch) from which
        `finetune_lr` is multiplied by `gamma` once more: 50% and 75% of `finetune_epochs`, rounded as the
        main milestones are (at least 1; equal ones merge: 4 epochs decay at 2 and 3, 3 epochs at 2)."""
        return sorted({max(1, round(f * self.finetune_epochs)) for f in (0.5, 0.75)})

    def finetune_lr_at(self, epoch: int) -> Optional[float]:
        """The learning rate of run epoch `epoch` (0-based) under `finetune_lr` (resolved config); None for
        the training epochs and without `finetune_lr` (the main schedule then sets it)."""
        if self.finetune_lr is None or epoch < self.epochs:
            return None
        decays = sum(epoch - self.epochs >= m for m in self.finetune_milestones())
        return float(self.finetune_lr) * float(self.gamma) ** decays

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"config: unknown fields {unknown}")
        return cls(**values)


def _positive_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < float("inf")
