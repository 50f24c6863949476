"""torch.distributed set-up from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK)."""

from __future__ import annotations

import os

import torch
from torch import nn

_OWNED = False  # whether this module initialised the process group (and so tears it down)


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


def init_from_env(device: str) -> tuple[int, int]:
    """(rank, world size); under torchrun joins the process group: gloo on the CPU, nccl on CUDA."""
    global _OWNED
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world <= 1:
        return 0, 1
    if device == "cuda":
        torch.cuda.set_device(local_rank())
    dist.init_process_group("nccl" if device == "cuda" else "gloo")
    _OWNED = True
    return dist.get_rank(), dist.get_world_size()


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        on = values.cuda() if dist.get_backend() == "nccl" else values
        dist.all_reduce(on)
        return on.cpu()
    return values


def shutdown(barrier: bool = True) -> None:
    """Tear down the process group this module set up. `barrier=False` after a failure or Ctrl-C: the
    other ranks may already be gone, and a barrier would then wait forever."""
    global _OWNED
    if _OWNED and torch.distributed.is_initialized():
        # Every rank past its last collective before any tears the group down: a gloo rank destroying its
        # group while a peer still talks to it aborted once in CI ("terminate called without an active
        # exception" from the peer).
        if barrier:
            torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    _OWNED = False
