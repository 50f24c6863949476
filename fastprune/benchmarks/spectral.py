"""Small-matrix spectral ops and whole-network kernel criteria: fastprune against torch.linalg and NumPy.

Part 1, batched 3x3 matrices (1e4 ... 1e6 of them): small_eigvals / small_svdvals / small_det against
torch.linalg.eigvals / svdvals / det and numpy.linalg.eigvals (float32 input everywhere). Part 2, every
3x3 (and 1x1, 7x7) kernel of CIFAR ResNet-56 and ImageNet ResNet-50 (random weights): kernel_scores for
each criterion, fastprune against the per-layer torch.linalg computation of the same criterion.
Columns: median seconds, speed-up of fastprune, GB/s of input read (the matrices; outputs are small).
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from fastprune.benchmarks.common import append_csv, commit, machine_name, median_seconds
from fastprune.benchmarks.networks import NETWORKS
from fastprune.ops import CRITERIA, kernel_scores, small_det, small_eigvals, small_svdvals
from fastprune.ops.kernel_scores import criterion_with_torch

FIELDS = ["date", "commit", "machine", "case", "method", "seconds", "fastprune_speedup", "gb_per_s"]


def _torch_criterion(weights: list[torch.Tensor], criterion: str) -> list[torch.Tensor]:
    """The same criterion the way a PyTorch user writes it: torch.linalg per layer, in float32."""
    return [criterion_with_torch(w, CRITERIA[criterion], torch.float32) for w in weights]


def _batched_cases(sizes: list[int]) -> list[tuple[str, torch.Tensor, dict[str, Callable]]]:
    generator = torch.Generator().manual_seed(0)
    cases = []
    for count in sizes:
        x = torch.randn(count, 3, 3, generator=generator)
        cases += [
            (
                f"eigvals 3x3 x{count:.0e}",
                x,
                {
                    "fastprune-cpu": small_eigvals,
                    "torch.linalg.eigvals": torch.linalg.eigvals,
                    "numpy.linalg.eigvals": lambda m: np.linalg.eigvals(m.numpy()),
                },
            ),
            (
                f"svdvals 3x3 x{count:.0e}",
                x,
                {"fastprune-cpu": small_svdvals, "torch.linalg.svdvals": torch.linalg.svdvals},
            ),
            (f"det 3x3 x{count:.0e}", x, {"fastprune-cpu": small_det, "torch.linalg.det": torch.linalg.det}),
        ]
    return cases


def run(sizes: list[int], networks: list[str], out_dir: Path | None = None) -> list[dict]:
    machine, rev, date = machine_name(), commit(), datetime.datetime.now().isoformat(timespec="seconds")
    print(f"machine: {machine}; commit {rev}")
    rows = []

    def report(case: str, nbytes: int, timings: dict[str, float]) -> None:
        ours = timings["fastprune-cpu"]
        print(f"\n{case}")
        for method, seconds in timings.items():
            row = {
                "date": date,
                "commit": rev,
                "machine": machine,
                "case": case,
                "method": method,
                "seconds": seconds,
                "fastprune_speedup": seconds / ours,
                "gb_per_s": nbytes / seconds / 1e9,
            }
            rows.append(row)
            speedup, rate = row["fastprune_speedup"], row["gb_per_s"]
            print(f"  {method:<24}{seconds * 1e3:>11.2f}ms{speedup:>10.1f}x{rate:>9.2f} GB/s")

    for case, x, methods in _batched_cases(sizes):
        report(
            case,
            x.numel() * 4,
            {name: median_seconds(lambda fn=fn, x=x: fn(x)) for name, fn in methods.items()},
        )

    generator = torch.Generator().manual_seed(1)
    for network in networks:
        weights = [torch.randn(shape, generator=generator) * 0.05 for shape in NETWORKS[network]]
        nbytes = sum(w.numel() for w in weights) * 4
        kernels = sum(w.shape[0] * w.shape[1] for w in weights)
        # The headline case: every 3x3 kernel of the network as one batch of matrices.
        k3 = torch.cat([w.reshape(-1, 3, 3) for w in weights if tuple(w.shape[2:]) == (3, 3)])
        timings = {
            "fastprune-cpu": median_seconds(lambda k3=k3: small_eigvals(k3)),
            "torch.linalg.eigvals": median_seconds(lambda k3=k3: torch.linalg.eigvals(k3)),
        }
        report(f"{network} eigvals of all {k3.shape[0]} 3x3 kernels", k3.numel() * 4, timings)
        for criterion in CRITERIA:
            timings = {
                "fastprune-cpu": median_seconds(lambda c=criterion, ws=weights: kernel_scores(ws, c)),
                "torch.linalg per layer": median_seconds(
                    lambda c=criterion, ws=weights: _torch_criterion(ws, c)
                ),
            }
            report(f"{network} kernel_scores {criterion} ({kernels} kernels)", nbytes, timings)
    if out_dir is not None:
        append_csv(Path(out_dir) / "spectral.csv", FIELDS, rows)
    return rows
