"""Whole-network geometric-median scoring: fastprune against the paths users have today.

For each network (random weights of its conv shapes) and each method, the time to score every conv
layer once (g_j = sum_j' ||F_j - F_j'||_2), measured side by side in one run:

    fastprune-<backend>  fastprune.ops.gm_scores(list of weights): one native call
    torch.cdist loop     per layer torch.cdist(x, x).sum(1) (matmul mode: the fast, lossy path)
    scipy cdist loop     per layer scipy.spatial.distance.cdist(x, x) (FPGM's official code)
    BLAS ssyrk loop      per layer scipy.linalg.blas.ssyrk(1, x): the Gram step alone through SciPy's
                         OpenBLAS, no distances or sums: what a BLAS-based kernel could at best reach

Columns: median seconds, speed-up of fastprune over the method, GFLOP/s of useful work
sum_l N_l (N_l - 1) D_l (one multiply-add per weight for each unordered pair: the least any exact
method must do; the same count for every method, so rates compare like times), that rate as a share of
the best float32 matmul rate (torch or NumPy, 2048^3) measured in the same run, and the largest
relative error against float64.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Callable

import torch

from fastprune.benchmarks.common import append_csv, commit, machine_name, median_seconds
from fastprune.benchmarks.networks import NETWORKS
from fastprune.ops import gm_scores

FIELDS = [
    "date",
    "commit",
    "machine",
    "network",
    "method",
    "seconds",
    "fastprune_speedup",
    "gflops",
    "matmul_share",
    "max_rel_err",
]


def matmul_gflops(size: int = 2048) -> float:
    """The best float32 matmul rate of torch and NumPy here: a practical reference rate for the
    machine (BLAS does not reach the hardware peak on every CPU, so shares above 100% can occur)."""

    a, b = torch.randn(size, size), torch.randn(size, size)
    an, bn = a.numpy(), b.numpy()
    seconds = min(median_seconds(lambda: a @ b, budget_s=1.0), median_seconds(lambda: an @ bn, budget_s=1.0))
    return 2 * size**3 / seconds / 1e9


def _reference_scores(weights: list[torch.Tensor]) -> list[torch.Tensor]:
    out = []
    for w in weights:
        x = w.reshape(w.shape[0], -1).double()
        out.append(torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist").sum(1))
    return out


def _max_rel_err(got: list[torch.Tensor], ref: list[torch.Tensor]) -> float:
    return max(
        float(((g.double().cpu() - r).abs() / r.abs().clamp_min(1e-30)).max()) for g, r in zip(got, ref)
    )


def _synchronized(result: object, device: torch.device) -> object:
    """`result`, once the GPU has finished computing it (a timing of queued work measures nothing)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return result


def methods(backend: str, with_scipy: bool) -> dict[str, Callable[[list[torch.Tensor]], list[torch.Tensor]]]:
    def torch_loop(ws):
        return [torch.cdist(x, x).sum(1) for x in (w.reshape(w.shape[0], -1) for w in ws)]

    def scipy_loop(ws):
        from scipy.spatial.distance import cdist

        return [
            torch.from_numpy(cdist(x, x, "euclidean").sum(0))
            for x in (w.reshape(w.shape[0], -1).cpu().numpy() for w in ws)
        ]

    def blas_gram_loop(ws):
        from scipy.linalg.blas import ssyrk

        return [ssyrk(1.0, x) for x in (w.reshape(w.shape[0], -1).cpu().numpy() for w in ws)]

    table = {
        f"fastprune-{backend}": lambda ws: gm_scores(ws, "l2", backend=backend),
        "torch.cdist loop": torch_loop,
    }
    if with_scipy:
        table["scipy cdist loop"] = scipy_loop
        table["BLAS ssyrk loop"] = blas_gram_loop
    return table


def run(
    networks: list[str],
    backend: str = "cpu",
    with_scipy: bool = True,
    out_dir: Path | None = None,
    seed: int = 0,
) -> list[dict]:
    """Runs the benchmark, prints the table, appends rows to out_dir/scoring.csv when given."""
    device = torch.device("cuda" if backend in ("cuda", "triton") and torch.cuda.is_available() else "cpu")
    generator = torch.Generator().manual_seed(seed)
    machine, rev, date = machine_name(), commit(), datetime.datetime.now().isoformat(timespec="seconds")
    ceiling = matmul_gflops()
    print(f"machine: {machine}; commit {rev}; best float32 matmul (2048^3) {ceiling:.1f} GFLOP/s")
    rows = []
    for network in networks:
        host = [torch.randn(shape, generator=generator) for shape in NETWORKS[network]]
        work = sum(s[0] * (s[0] - 1) * s[1] * s[2] * s[3] for s in NETWORKS[network])
        reference = _reference_scores(host)
        # The GPU backends score weights in GPU memory (torch.cdist there too; SciPy's rows copy back).
        weights = [w.to(device) for w in host]
        timings = {}
        for name, fn in methods(backend, with_scipy).items():
            seconds = median_seconds(lambda fn=fn, weights=weights: _synchronized(fn(weights), device))
            # The Gram-only row computes no scores, so it has no error to report.
            err = float("nan") if name == "BLAS ssyrk loop" else _max_rel_err(fn(weights), reference)
            timings[name] = (seconds, err)
        ours = timings[f"fastprune-{backend}"][0]
        print(f"\n{network}: {len(weights)} conv layers, {work / 1e9:.3f} GFLOP of pair work")
        print(f"  {'method':<20}{'time':>12}{'fastprune x':>14}{'GFLOP/s':>10}{'% mm':>8}{'max rel err':>13}")
        for name, (seconds, err) in timings.items():
            row = {
                "date": date,
                "commit": rev,
                "machine": machine,
                "network": network,
                "method": name,
                "seconds": seconds,
                "fastprune_speedup": seconds / ours,
                "gflops": work / seconds / 1e9,
                "matmul_share": work / seconds / 1e9 / ceiling,
                "max_rel_err": err,
            }
            rows.append(row)
            print(
                f"  {name:<20}{seconds * 1e3:>10.2f}ms{row['fastprune_speedup']:>13.1f}x"
                f"{row['gflops']:>10.1f}{100 * row['matmul_share']:>7.0f}%{err:>13.1e}"
            )
    if out_dir is not None:
        append_csv(Path(out_dir) / "scoring.csv", FIELDS, rows)
    return rows
