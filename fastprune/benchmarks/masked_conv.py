"""masked_conv2d against the dense F.conv2d on ResNet-56 and ResNet-50 layer shapes: the cpu backend
against oneDNN (default), or the cuda / triton backend on a GPU against cuDNN (`--backend cuda|triton`;
cuDNN autotuned, torch.backends.cudnn.benchmark, and every call synchronised).

For each layer and mask (filter sparsity 30/50/70 %, kernel sparsity 50/80/90/95 %: random masks with
exactly that fraction pruned), the masked op and the dense conv of the full weight are timed interleaved
in one run (rep after rep, so both see the same machine load), forward alone and forward + backward (x
and weight need gradients). Times are
medians; speed-up is the median over rounds of dense / masked (each ratio from two runs back to back). The
allocator is held steady first (`common.steady_allocator`: no fresh page faults per call for either side).
Writes bench/results/masked_conv.csv (or OUT/masked_conv.csv), the backend in its own column.
"""

from __future__ import annotations

import datetime
import statistics
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from fastprune.backends import BackendError, refusal_reasons
from fastprune.benchmarks.common import (
    append_csv,
    commit,
    interleaved_times,
    machine_name,
    median_ratio,
    steady_allocator,
)
from fastprune.ops import masked_conv2d

FIELDS = [
    "date",
    "commit",
    "machine",
    "backend",
    "layer",
    "batch",
    "mask",
    "sparsity",
    "pass",
    "dense_ms",
    "masked_ms",
    "speedup",
]
# (name, batch, C, O, H = W, k): stride 1, padding k // 2.
LAYERS = [
    ("resnet56 stage1 3x3", 64, 16, 16, 32, 3),
    ("resnet56 stage2 3x3", 64, 32, 32, 16, 3),
    ("resnet56 stage3 3x3", 64, 64, 64, 8, 3),
    ("resnet50 layer1 3x3", 16, 64, 64, 56, 3),
    ("resnet50 layer2 3x3", 16, 128, 128, 28, 3),
    ("resnet50 layer3 3x3", 16, 256, 256, 14, 3),
    ("resnet50 layer1 1x1 256->64", 16, 256, 64, 56, 1),
]
MASKS = [
    ("filter", 0.3),
    ("filter", 0.5),
    ("filter", 0.7),
    ("kernel", 0.5),
    ("kernel", 0.8),
    ("kernel", 0.9),
    ("kernel", 0.95),
]


def exact_mask(shape: tuple[int, ...], sparsity: float, gen: torch.Generator) -> torch.Tensor:
    """A random bool mask of `shape` with exactly round(numel * sparsity) entries False (pruned), as a
    pruner at that rate leaves; independent draws would leave e.g. 5 of 16 filters pruned at "50%"."""
    numel = 1
    for size in shape:
        numel *= size
    mask = torch.ones(numel, dtype=torch.bool)
    mask[torch.randperm(numel, generator=gen)[: round(numel * sparsity)]] = False
    return mask.view(shape)


def _passes(
    x, w, mask, pad, grad_y, backend: str = "cpu"
) -> dict[str, tuple[Callable[[], object], Callable[[], object]]]:
    """{pass: (dense, masked)} callables; on a GPU each waits for its kernels to finish."""
    finish = torch.cuda.synchronize if x.is_cuda else (lambda: None)

    def dense_fwd():
        with torch.no_grad():
            F.conv2d(x, w, None, 1, pad)
        finish()

    def masked_fwd():
        with torch.no_grad():
            masked_conv2d(x, w, mask, None, 1, pad, backend=backend)
        finish()

    def dense_train():
        F.conv2d(x, w, None, 1, pad).backward(grad_y)
        finish()

    def masked_train():
        masked_conv2d(x, w, mask, None, 1, pad, backend=backend).backward(grad_y)
        finish()

    return {"forward": (dense_fwd, masked_fwd), "forward+backward": (dense_train, masked_train)}


def _device_for(backend: str) -> str:
    """The device a backend is timed on, after checking it can run masked_conv2d there."""
    if backend not in ("cpu", "cuda", "triton"):
        raise BackendError(f"backend: expected 'cpu', 'cuda' or 'triton' for bench conv, got {backend!r}")
    device = "cpu" if backend == "cpu" else "cuda"
    if device == "cuda" and not torch.cuda.is_available():  # triton accepts CUDA tensors even then
        reason = "no CUDA GPU (torch.cuda.is_available() is False)"
    else:
        reason = refusal_reasons(device, "masked_conv2d")[backend]
    if reason is not None:
        raise BackendError(f"bench conv --backend {backend}: cannot run on {device} tensors here: {reason}")
    return device


def run(out_dir: Path | None = None, reps: int = 11, backend: str = "cpu") -> list[dict]:
    device = _device_for(backend)
    machine, rev, date = machine_name(), commit(), datetime.datetime.now().isoformat(timespec="seconds")
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        machine = f"{props.name}, cuDNN {torch.backends.cudnn.version()}; host {machine}"
    steady = steady_allocator()
    print(f"machine: {machine}; commit {rev}; backend {backend}; steady allocator: {steady}")
    cudnn_benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True  # the dense side at its best: cuDNN's fastest algorithm
    try:
        return _run(out_dir, reps, backend, device, machine, rev, date)
    finally:
        torch.backends.cudnn.benchmark = cudnn_benchmark


def _run(out_dir, reps, backend, device, machine, rev, date) -> list[dict]:
    gen = torch.Generator().manual_seed(0)
    rows = []
    for name, batch, c, o, size, k in LAYERS:
        x = torch.randn(batch, c, size, size, generator=gen).to(device).requires_grad_()
        w = (torch.randn(o, c, k, k, generator=gen) * 0.1).to(device).requires_grad_()
        grad_y = torch.randn(batch, o, size, size, generator=gen).to(device)
        for kind, sparsity in MASKS:
            shape = (o,) if kind == "filter" else (o, c)
            mask = exact_mask(shape, sparsity, gen).to(device)

            passes = _passes(x, w, mask, k // 2, grad_y, backend)
            for label, pair in passes.items():
                dense_t, masked_t = interleaved_times(list(pair), reps)
                dense_s, masked_s = statistics.median(dense_t), statistics.median(masked_t)
                speedup = median_ratio(dense_t, masked_t)
                row = dict(
                    date=date,
                    commit=rev,
                    machine=machine,
                    backend=backend,
                    layer=name,
                    batch=batch,
                    mask=kind,
                    sparsity=sparsity,
                    dense_ms=round(dense_s * 1e3, 3),
                    masked_ms=round(masked_s * 1e3, 3),
                    speedup=round(speedup, 3),
                )
                row["pass"] = label
                rows.append(row)
                print(
                    f"{name:<30} {kind:<6} {sparsity:4.0%} {label:<17} dense {dense_s * 1e3:8.2f} ms  "
                    f"masked {masked_s * 1e3:8.2f} ms  x{speedup:5.2f}",
                    flush=True,
                )
    out = out_dir or Path("bench/results")
    append_csv(out / "masked_conv.csv", FIELDS, rows)
    return rows
