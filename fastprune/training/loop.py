"""The training loop behind `fastprune train`: ResNet + data + pruning, checkpoints, resume, DDP.

    result = fastprune.training.train(TrainConfig(arch="resnet56", dataset="cifar10", data_dir="data",
                                                  epochs=200, criterion="fpgm", rate=0.4))

Epoch e (0-based) of a "filter" run: train one epoch, step the LR schedule, prune every `prune_every`
epochs (SoftFilterPruner.step: score all selected layers in one batched call, zero the weakest filters;
the test set is evaluated right before it too), measure (pruned shares, MACs, params), evaluate, append
the metrics, write the checkpoint. At the end the pruning is made final (the pruned channels' BatchNorm
zeroed too) and the pruned network is evaluated and saved. A "kernel" run trains with the L1 kernel
penalty, prunes once at the end with KernelPruner, evaluates without fine-tuning, then optionally
fine-tunes with the masks kept (with `finetune_lr`, on a schedule of its own). The resolved config is
written to config.json when a run starts or resumes; the metrics' columns are described in
:mod:`fastprune.training.metrics`.

Resume is exact: every epoch reseeds the shuffle and the augmentation from (seed, epoch, rank), and the
checkpoint holds weights, masks, optimizer, scheduler (and --amp float16's gradient scaler) state, the
criterion history and the metrics, so a resumed run prunes the same filters as an uninterrupted one.
Checkpoints are written atomically once per epoch: a kill loses at most the current epoch. Mixed precision
(``amp``): forward and loss under torch.autocast, weights and optimizer in float32. Ctrl-C
(KeyboardInterrupt) stops the run with :class:`TrainingInterrupted`, which names the last complete
checkpoint; a Ctrl-C that arrives while an epoch's metrics and checkpoint are being written takes effect
once both are written.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import torch
from torch import nn

from fastprune.nn import convert, restore
from fastprune.pruning import KernelPruner, SoftFilterPruner, l1_kernel_penalty
from fastprune.pruning.keep_masks import KeepMasks
from fastprune.training import distributed as dist_utils
from fastprune.training.checkpoint import load_checkpoint, save_atomic, save_config
from fastprune.training.config import TrainConfig
from fastprune.training.interrupts import TrainingInterrupted, ctrl_c_deferred
from fastprune.training.metrics import EpochMetrics, network_size, pruned_shares, write_metrics
from fastprune.training.threads import torch_threads


@dataclass
class TrainResult:
    config: TrainConfig
    model: nn.Module  # the trained (and pruned) network, unwrapped from DDP
    metrics: list[EpochMetrics] = field(default_factory=list)
    final_test_acc: float = 0.0  # of the network as saved (pruning made final)
    pruner: Optional[SoftFilterPruner] = None
    kernel_masks: Optional[dict[str, torch.Tensor]] = None
    out_dir: Optional[Path] = None


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """The seed of one epoch's shuffle and augmentation on one rank: a resumed run draws the same."""
    return (seed * 1_000_003 + epoch * 1_009 + rank) % (2**63)


def _reseed(train_loader, seed: int, epoch: int, rank: int) -> None:
    s = epoch_seed(seed, epoch, rank)
    torch.manual_seed(s)
    train_loader.dataset.seed_augmentation(s)
    if hasattr(train_loader.sampler, "set_epoch"):
        train_loader.sampler.set_epoch(epoch)
    elif train_loader.generator is not None:
        train_loader.generator.manual_seed(s)


def _optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0,
        weight_decay=config.weight_decay,
    )  # fmt: skip


@torch.no_grad()
def _autocast(device: torch.device, amp: Optional[str]):
    """torch.autocast for the run's mixed precision (`amp`: None = off, "bfloat16" or "float16")."""
    dtype = getattr(torch, amp) if amp else None
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


@torch.no_grad()  # no autograd graph for evaluation batches
def evaluate(
    model: nn.Module,
    loader,
    device: torch.device,
    max_batches: Optional[int] = None,
    amp: Optional[str] = None,
):
    """(mean loss, accuracy) over `loader` (summed across ranks under torch.distributed); under autocast
    to `amp` ("bfloat16" / "float16") when given."""
    was_training = model.training
    model.eval()
    totals = torch.zeros(3, dtype=torch.float64)
    for i, (x, y) in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        x, y = x.to(device), y.to(device)
        with _autocast(device, amp):
            out = model(x)
        out = out.float()
        totals += torch.tensor(
            [
                float(nn.functional.cross_entropy(out, y, reduction="sum")),
                float((out.argmax(1) == y).sum()),
                len(y),
            ],
            dtype=torch.float64,
        )
    model.train(was_training)
    totals = dist_utils.all_reduce_sum(totals)
    return float(totals[0] / totals[2].clamp_min(1)), float(totals[1] / totals[2].clamp_min(1))


def _train_epoch(
    model,
    loader,
    optimizer,
    device,
    l1_penalty,
    max_batches,
    progress,
    desc,
    shares,
    amp=None,
    scaler=None,
):
    model.train()
    totals = torch.zeros(3, dtype=torch.float64)
    batches = loader
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(loader, desc=desc, leave=False, dynamic_ncols=True)
    try:
        for i, (x, y) in enumerate(batches):
            if max_batches is not None and i >= max_batches:
                break
            x, y = x.to(device), y.to(device)
            with _autocast(device, amp):
                out = model(x)
                loss = nn.functional.cross_entropy(out, y)  # autocast computes it in float32
            objective = loss + l1_penalty * l1_kernel_penalty(model) if l1_penalty else loss
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:  # float16: scaled so small gradients do not flush to zero
                scaler.scale(objective).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                objective.backward()
                optimizer.step()
            totals += torch.tensor(
                [float(loss.detach()) * len(y), float((out.argmax(1) == y).sum()), len(y)],
                dtype=torch.float64,
            )
            if progress:
                n = totals[2].clamp_min(1)
                batches.set_postfix(
                    loss=f"{totals[0] / n:.3f}", acc=f"{totals[1] / n:.3f}", filters=f"{shares[0]:.2f}",
                    kernels=f"{shares[1]:.2f}",
                )  # fmt: skip
    finally:
        if progress:  # clears the bar, also on Ctrl-C: a message printed next starts on a clean line
            batches.close()
    totals = dist_utils.all_reduce_sum(totals)
    return float(totals[0] / totals[2].clamp_min(1)), float(totals[1] / totals[2].clamp_min(1))


def _held_out_batch(config: TrainConfig, dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """MFP's held-out batch: the first batch_size training images, never augmented (fixed across steps)."""
    augment, dataset.augment = dataset.augment, False
    try:
        return dataset.get_batch(torch.arange(min(config.batch_size, len(dataset))))
    finally:
        dataset.augment = augment


def train(
    config: Optional[TrainConfig] = None,
    *,
    resume: Union[str, Path, None] = None,
    model: Optional[nn.Module] = None,
    trust_checkpoint: bool = False,
) -> TrainResult:
    """Run (or, with `resume` = a checkpoint file or run folder, continue) a training run.

    The checkpoints read (`resume`, ``config.init_from``) are data only (tensors and plain containers);
    `trust_checkpoint` allows a full unpickle of one that needs it (it can run code: trusted files only).

    `model` replaces `fastprune.models.create(config.arch)` (fresh runs only). Writes under
    config.out_dir: config.json (the resolved config, at the start and on resume), checkpoint.pt (each
    epoch), metrics.csv and metrics.json, model.pt (the final pruned network: arch, num_classes,
    state_dict, masks, config). Under torchrun it trains with DistributedDataParallel (gloo on CPU, nccl
    on GPU); only rank 0 writes and prints. ``config.threads`` sets torch's (and fastprune's kernels')
    CPU threads for the run, the previous count put back after it.

    Ctrl-C raises :class:`TrainingInterrupted` (a KeyboardInterrupt) naming the last complete checkpoint;
    the files written so far stay complete.
    """
    state: Optional[dict[str, Any]] = None
    if resume is not None:
        state = load_checkpoint(resume, trust=trust_checkpoint)
        config = TrainConfig.from_dict(state["config"])
    if config is None:
        raise ValueError("config: expected a TrainConfig (or resume=CHECKPOINT)")
    config = config.resolved()
    rank, world = dist_utils.init_from_env(config.device)
    total = config.epochs + config.finetune_epochs
    # The last complete checkpoint and its epochs, for the message of a Ctrl-C.
    saved: list[Any] = [None, 0]
    if state is not None:
        saved = [
            Path(resume) / "checkpoint.pt" if Path(resume).is_dir() else Path(resume),
            state["epochs_done"],
        ]
    completed = False
    try:
        with torch_threads(config.threads):
            result = _run(config, state, model, trust_checkpoint, rank, world, saved)
        completed = True
        return result
    except KeyboardInterrupt as interrupt:
        if isinstance(interrupt, TrainingInterrupted):
            raise
        raise TrainingInterrupted(saved[0], int(saved[1]), total, Path(config.out_dir)) from interrupt
    finally:
        # After a failure or Ctrl-C the other ranks may be gone: no barrier then (it would wait forever).
        dist_utils.shutdown(barrier=completed)


def _run(config: TrainConfig, state, model, trust_checkpoint: bool, rank: int, world: int, saved: list):
    """The run itself (see `train`); `saved` is kept at [last complete checkpoint, its epochs]."""
    from fastprune import data, models

    device = torch.device(config.device if config.device != "cuda" else f"cuda:{dist_utils.local_rank()}")
    out_dir = Path(config.out_dir)
    talk = rank == 0 and not config.quiet  # the per-epoch lines
    bars = talk and config.progress
    total = config.epochs + config.finetune_epochs
    train_loader, test_loader = data.loaders(
        config.dataset, data_dir=config.data_dir, batch_size=config.batch_size,
        num_workers=config.num_workers, seed=config.seed, distributed=world > 1,
    )  # fmt: skip
    torch.manual_seed(config.seed)
    if model is None:
        model = models.create(config.arch, num_classes=train_loader.dataset.num_classes)
    if config.init_from is not None and state is None:
        model.load_state_dict(load_checkpoint(config.init_from, trust=trust_checkpoint)["model"])
    model.to(device)
    optimizer = _optimizer(config, model)
    scaler = torch.amp.GradScaler(device.type) if config.amp == "float16" else None
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, config.milestones, config.gamma)
    pruner = None
    if config.method == "filter":
        pruner = SoftFilterPruner(
            model, config.criterion, config.rate, mode=config.mode,
            criterion_options=config.criterion_options, candidates=config.candidates,
            attribute=config.attribute, optimizer=optimizer, backend=config.backend,
        )  # fmt: skip
    kernel_pruner = KernelPruner(
        model, criterion=config.kernel_criterion, mode=config.kernel_mode, threshold=config.kernel_threshold
    )
    keep_masks: Optional[KeepMasks] = None
    metrics: list[EpochMetrics] = []
    start_epoch = 0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler") is not None:
            scaler.load_state_dict(state["scaler"])
        if pruner is not None:
            pruner.load_state_dict(state["pruner"])
        if state.get("kept_masks") is not None:  # pruning made final: fine-tuning with masks kept
            keep_masks = KeepMasks(model, state["kept_masks"], optimizer)
            if pruner is not None:
                pruner.remove_hooks()
        metrics = [EpochMetrics.from_dict(m, config.method) for m in state["metrics"]]
        start_epoch = int(state["epochs_done"])
    if rank == 0:
        save_config(config.to_dict(), out_dir)
    wrapped = dist_utils.wrap(model, device) if world > 1 else model
    held_out = _held_out_batch(config, train_loader.dataset) if config.candidates else None
    input_shape = train_loader.dataset.input_shape
    sized = True  # False once count_flops could not count the model (it warned)
    for epoch in range(start_epoch, total):
        started = time.perf_counter()
        _reseed(train_loader, config.seed, epoch, rank)
        phase = "train" if epoch < config.epochs else "finetune"
        finetune_lr = config.finetune_lr_at(epoch)
        if finetune_lr is not None:  # --finetune-lr's schedule, set afresh each epoch (so exact on resume)
            for group in optimizer.param_groups:
                group["lr"] = finetune_lr
        lr = optimizer.param_groups[0]["lr"]
        shares = (metrics[-1].pruned_filters, metrics[-1].pruned_kernels) if metrics else (0.0, 0.0)
        desc = f"{phase} {epoch + 1}/{total}"
        penalty = config.l1_penalty if phase == "train" else 0.0  # fine-tuning keeps the masks instead
        skipped = _held_masks(pruner, keep_masks, device) if config.masked_conv else None
        if skipped:  # pruned weights are held at zero: let the convs skip them (same results, less work)
            convert(model, skipped, backend=config.backend)
        try:
            train_loss, train_acc = _train_epoch(
                wrapped, train_loader, optimizer, device, penalty, config.max_batches, bars, desc, shares,
                config.amp, scaler,
            )  # fmt: skip
        finally:
            if skipped:
                restore(model)  # checkpoints and evaluation see the plain model
        scheduler.step()
        row = EpochMetrics(epoch=epoch + 1, phase=phase, lr=lr, train_loss=train_loss, train_acc=train_acc)
        stepping = pruner is not None and phase == "train" and (epoch + 1) % config.prune_every == 0
        final = epoch + 1 == config.epochs and config.method != "none"
        if stepping or final:
            _, row.test_acc_before_prune = evaluate(
                wrapped, test_loader, device, config.max_batches, config.amp
            )
        if stepping:
            held = None if held_out is None else tuple(t.to(device) for t in held_out)
            record = pruner.step(held_out=held)
            row.criterion, row.scoring_seconds = record.criterion, record.scoring_seconds
            row.attributes = dict(record.attributes)
        if final:
            start = time.perf_counter()
            keep_masks = _make_final(config, model, pruner, kernel_pruner, optimizer, row)
            row.final_prune_seconds = time.perf_counter() - start
        masks, names = _pruned_convs(config.method, pruner, kernel_pruner, keep_masks)
        row.pruned_filters, row.pruned_kernels = pruned_shares(model, masks, names)
        if sized:
            row.macs, row.params = network_size(model, input_shape)
            sized = row.macs is not None
        row.test_loss, row.test_acc = evaluate(wrapped, test_loader, device, config.max_batches, config.amp)
        row.epoch_seconds = time.perf_counter() - started
        metrics.append(row)
        with ctrl_c_deferred():  # the epoch's metrics and checkpoint: both written, or neither
            if rank == 0:
                write_metrics(metrics, out_dir)
                save_atomic(
                    {
                        "config": config.to_dict(), "epochs_done": epoch + 1, "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                        "scaler": scaler.state_dict() if scaler is not None else None,
                        "pruner": pruner.state_dict() if pruner else None,
                        "kept_masks": keep_masks.masks if keep_masks else None,
                        "metrics": [asdict(m) for m in metrics],
                    },
                    out_dir / "checkpoint.pt",
                )  # fmt: skip
            saved[:] = [out_dir / "checkpoint.pt", epoch + 1]
            if talk:  # in the block: a checkpointed epoch always gets its line, even with a Ctrl-C meanwhile
                print(row.summary(total), flush=True)
    _, final_acc = evaluate(wrapped, test_loader, device, config.max_batches, config.amp)
    kernel_masks = keep_masks.masks if keep_masks is not None and config.method == "kernel" else None
    result = TrainResult(config, model, metrics, final_acc, pruner, kernel_masks, out_dir)
    if rank == 0:
        save_atomic(
            {
                "arch": config.arch, "num_classes": train_loader.dataset.num_classes,
                "model": model.state_dict(), "final_test_acc": final_acc,
                "filter_masks": {k: v.cpu() for k, v in pruner.masks.items()} if pruner else None,
                "kernel_masks": result.kernel_masks, "config": config.to_dict(),
            },
            out_dir / "model.pt",
        )  # fmt: skip
    return result


# Kernel-level masks pay off in MaskedConv2d from about this pruned share (bench conv, 2026-11-23: forward
# and backward beat oneDNN from ~80% on ResNet layers); filter-level masks at any share.
KERNEL_SPARSITY_FOR_MASKED_CONV = 0.8


def _held_masks(pruner, keep_masks, device: torch.device) -> Optional[dict[str, torch.Tensor]]:
    """The masks of the convs worth running as MaskedConv2d this epoch: their pruned weights are held at
    zero (fine-tuning after the final prune, or hard filter pruning after its first step); None if none."""
    if keep_masks is not None:
        masks = keep_masks.masks
    elif pruner is not None and pruner.mode == "hard" and pruner.steps > 0:
        masks = dict(pruner.masks)
    else:
        return None
    worth = {
        name: mask.to(device)
        for name, mask in masks.items()
        if mask.dim() == 1 or (~mask).float().mean() >= KERNEL_SPARSITY_FOR_MASKED_CONV
    }
    return worth or None


def _pruned_convs(method, pruner, kernel_pruner, keep_masks) -> tuple[dict, Optional[list[str]]]:
    """(masks, conv names) that `pruned_shares` measures: the masks held after the final prune, else
    the filter pruner's; a kernel run before its prune, the kernel pruner's convs; no pruning: every conv."""
    if keep_masks is not None:
        return keep_masks.masks, None
    if pruner is not None:
        return pruner.masks, None
    if method == "kernel":
        return {}, [name for name, _ in kernel_pruner.layers()]
    return {}, None


def _make_final(config, model, pruner, kernel_pruner, optimizer, row) -> KeepMasks:
    """End of the training phase: a filter run makes its pruning final (BN of the pruned channels
    zeroed); a kernel run prunes once. Returns the masks that fine-tuning keeps."""
    if pruner is not None:
        pruner.finalize()
        pruner.remove_hooks()
        return KeepMasks(model, pruner.masks, optimizer)
    masks = kernel_pruner.compute_masks(model)
    kernel_pruner.apply(model, masks)
    row.criterion = config.kernel_criterion
    return KeepMasks(model, masks, optimizer)
