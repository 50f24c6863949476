"""Compaction speed-up: a filter-pruned ResNet, masked (zeroed filters, full width) against compacted.

    python -m fastprune bench compact [--out bench/results]

Networks (random He-initialised weights, random BN running statistics):

    resnet56  CIFAR, 32x32, 40% of the filters of every conv, batches 64 and 1
    resnet50  ImageNet, 224x224, 30% of every conv but the projection shortcuts (the papers' layer set),
              batch 8

Three models per case: the masked network, its compact form as saved (standard PyTorch layers) and the
compact form's inference version (``CompactResNet.for_inference()``: BN folded, ReLU fused, convs on
fastprune's register-blocked kernel). ``speedup`` compares the first two, ``inference_speedup`` the first
and the third; the target applies to what fastprune ships for inference, the latter.

Pruning: per conv with N filters the floor(N * rate) lowest-l2 filters (ties by index) are zeroed and the
following BN's scale and shift too (``SoftFilterPruner.finalize`` semantics). The models run in eval mode
under ``torch.no_grad`` with the default torch thread count, timed interleaved (masked, compact,
inference form, masked, ...) in one run; times are medians and each speed-up is the median over rounds
of the two models' ratio, so a burst of load from other processes hits both alike. The allocator is held
steady first (`common.steady_allocator`: no fresh page faults per call for either side).
"""

from __future__ import annotations

import datetime
import math
import statistics
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from fastprune.benchmarks.common import (
    append_csv,
    commit,
    interleaved_times,
    machine_name,
    median_ratio,
    steady_allocator,
)

FIELDS = [
    "date", "commit", "machine", "network", "rate", "batch", "threads", "layout", "masked_ms", "compact_ms",
    "speedup", "target", "macs_ratio", "params_ratio", "repeats", "load_avg", "max_rel_err", "inference_ms",
    "inference_speedup", "inference_max_rel_err",
]  # fmt: skip

CASES = [  # network, rate, input size, batch, repeats, target speed-up
    ("resnet56", 0.4, 32, 64, 15, 1.7),
    ("resnet56", 0.4, 32, 1, 60, 1.4),
    ("resnet50", 0.3, 224, 8, 5, 1.5),
]
# Besides the default (NCHW, default threads): one thread (no OpenMP barrier waits on a busy machine) and
# channels_last for both models (oneDNN's NHWC kernels handle odd channel counts better).
VARIANTS = [("nchw", None), ("nchw", 1), ("channels_last", None)]


def prune_l2(model: nn.Module, rate: float, skip_shortcuts: bool = True) -> nn.Module:
    """Zero the floor(N * rate) lowest-l2 filters of every conv (not projection shortcuts when asked)
    and the scale and shift of the BN after each; returns the model."""
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name, conv in modules.items():
            if not isinstance(conv, nn.Conv2d) or (skip_shortcuts and "downsample" in name.split(".")):
                continue
            count = int(math.floor(conv.out_channels * rate + 1e-9))
            norms = conv.weight.flatten(1).norm(dim=1)
            keep = torch.ones(conv.out_channels, dtype=torch.bool)
            keep[torch.sort(norms, stable=True).indices[:count]] = False
            conv.weight.mul_(keep.to(conv.weight.dtype).view(-1, 1, 1, 1))
            bn_name = name[:-1] + "1" if name.endswith("downsample.0") else name.replace("conv", "bn")
            bn = modules.get(bn_name)
            if isinstance(bn, nn.BatchNorm2d):
                bn.weight.mul_(keep.to(bn.weight.dtype))
                bn.bias.mul_(keep.to(bn.bias.dtype))
    return model


def random_bn_stats(model: nn.Module, seed: int = 0) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(0.2 * torch.randn(m.num_features, generator=generator))
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=generator))
    return model


def _load_avg() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return float("nan")


def run(
    out_dir: Optional[Path] = None,
    networks: Optional[list[str]] = None,
    repeats: Optional[int] = None,
    variants: Optional[list[tuple[str, Optional[int]]]] = None,
) -> list[dict]:
    """Time every case under every variant, print a table, append rows to OUT/compaction.csv."""
    import copy

    from fastprune import models
    from fastprune.compaction import compact, count_compact_flops

    rows = []
    built: dict[tuple[str, float], tuple[nn.Module, nn.Module, nn.Module]] = {}
    default_threads = torch.get_num_threads()
    steady = steady_allocator()
    print(f"{machine_name()}, commit {commit()}, steady allocator: {steady}")
    head = (
        f"{'network':<10}{'rate':>5}{'batch':>6}{'threads':>8}  {'layout':<14}{'masked ms':>11}"
        f"{'compact ms':>11}{'speed-up':>10}{'infer. ms':>11}{'speed-up':>10}{'target':>8}{'MACs ratio':>12}"
        f"{'load':>6}"
    )
    print(head + "\n" + "-" * len(head))
    for network, rate, size, batch, reps, target in CASES:
        if networks and network not in networks:
            continue
        if (network, rate) not in built:
            torch.manual_seed(0)
            net = models.create(network, num_classes=1000 if size > 64 else 10)
            masked = prune_l2(random_bn_stats(net), rate).eval()
            small = compact(masked)
            built[(network, rate)] = (masked, small, small.for_inference())
        masked, small, fused = built[(network, rate)]
        shape = (3, size, size)
        before, after = count_compact_flops(masked, shape), count_compact_flops(small, shape)
        x = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(1))
        for layout, threads in variants or VARIANTS:
            if network == "resnet50" and (layout, threads) != ("nchw", None) and variants is None:
                continue  # slow on 2 cores: the default variant only
            trio = (masked, small, fused)
            inp = x
            if layout == "channels_last":  # the inference form reads NCHW: it converts its input
                trio = tuple(copy.deepcopy(m).to(memory_format=torch.channels_last) for m in trio)
                inp = x.contiguous(memory_format=torch.channels_last)
            torch.set_num_threads(threads or default_threads)
            try:
                with torch.no_grad():
                    ref = trio[0](inp)
                    err, err_fused = (
                        float((ref - m(inp)).abs().max() / ref.abs().max().clamp_min(1e-30)) for m in trio[1:]
                    )
                    load = _load_avg()
                    times = interleaved_times([lambda m=m, x=inp: m(x) for m in trio], repeats or reps)
            finally:
                torch.set_num_threads(default_threads)
            t_masked, t_small, t_fused = (statistics.median(t) for t in times)
            speedup, fused_speedup = median_ratio(times[0], times[1]), median_ratio(times[0], times[2])
            nthreads, macs_ratio = threads or default_threads, before.macs / after.macs
            print(
                f"{network:<10}{rate:>5.1f}{batch:>6}{nthreads:>8}  {layout:<14}{1e3 * t_masked:>11.2f}"
                f"{1e3 * t_small:>11.2f}{speedup:>9.2f}x{1e3 * t_fused:>11.2f}{fused_speedup:>9.2f}x"
                f"{target:>7.1f}x{macs_ratio:>11.2f}x{load:>6.1f}"
            )
            rows.append({
                "date": datetime.datetime.now().isoformat(timespec="seconds"), "commit": commit(),
                "machine": machine_name(), "network": network, "rate": rate, "batch": batch,
                "threads": nthreads, "layout": layout, "masked_ms": 1e3 * t_masked,
                "compact_ms": 1e3 * t_small, "speedup": speedup, "target": target, "macs_ratio": macs_ratio,
                "params_ratio": before.params / after.params, "repeats": repeats or reps, "load_avg": load,
                "max_rel_err": err, "inference_ms": 1e3 * t_fused, "inference_speedup": fused_speedup,
                "inference_max_rel_err": err_fused,
            })  # fmt: skip
    if out_dir is not None:
        append_csv(Path(out_dir) / "compaction.csv", FIELDS, rows)
    return rows
