"""Shared test helpers: float64 NumPy/SciPy references (independent of torch and of fastprune) and the
list of backends that can run on this machine."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import settings
from scipy.spatial.distance import cdist

if not torch.cuda.is_available():
    # Triton kernels run on CPU tensors in interpreter mode; must be set before triton is imported.
    os.environ.setdefault("TRITON_INTERPRET", "1")

# CI replays the same hypothesis examples every run (no flaky reds); local runs keep exploring.
settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

HAS_TRITON = importlib.util.find_spec("triton") is not None
HAS_CUDA = torch.cuda.is_available()
# Triton runs on CPU tensors only in interpreter mode, which is set (above) only without a GPU: on a GPU
# machine it compiles for the GPU and its cases run on CUDA tensors (the cuda-marked tests).
HAS_TRITON_ON_CPU = HAS_TRITON and not HAS_CUDA
# Backends exercised on CPU tensors. Triton runs interpreted here, so its cases keep sizes small.
CPU_BACKENDS = ["cpu", "torch"] + (["triton"] if HAS_TRITON_ON_CPU else [])
METRIC_NAMES = ["l2", "l1", "cosine", "sqeuclidean"]
# Stated tolerance for every op, metric and backend against float64: relative 1e-4.
RTOL = 1e-4

requires_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")

# A training run of seconds: ResNet-20 on the embedded digits, two batches an epoch, no progress bars.
TINY_TRAIN = dict(arch="resnet20", dataset="digits", batch_size=16, max_batches=2, progress=False)


@pytest.fixture(scope="module")
def one_thread():
    """In-process training with one thread (`pytestmark = pytest.mark.usefixtures("one_thread")`): two
    OpenMP threads spin badly on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def die_while_writing_epoch(monkeypatch, epoch: int) -> None:
    """The training process "dies" (KeyboardInterrupt) while writing the metrics of `epoch`, so the last
    checkpoint holds epoch - 1 epochs; monkeypatch.undo() lets the next run write again."""
    from fastprune.training import loop as training_loop

    real = training_loop.write_metrics

    def dying_write(metrics, out_dir):
        if len(metrics) == epoch:
            raise KeyboardInterrupt("killed")
        real(metrics, out_dir)

    monkeypatch.setattr(training_loop, "write_metrics", dying_write)


def pytest_collection_modifyitems(items: list) -> None:
    """Every test that needs a GPU (skipped with "needs a CUDA GPU" without one) carries the `cuda` marker,
    so `pytest -m cuda` selects exactly the GPU tests (make gpu-check)."""
    for item in items:
        if any(
            mark.name == "skipif" and "needs a CUDA GPU" in str(mark.kwargs.get("reason", ""))
            for mark in item.iter_markers()
        ):
            item.add_marker(pytest.mark.cuda)


def reference_distances(rows: np.ndarray, metric: str) -> np.ndarray:
    """(N, D) -> (N, N) float64 distances by SciPy's direct per-pair formulas (no Gram form)."""
    x = np.asarray(rows, dtype=np.float64)
    if metric == "cosine":
        norms = np.linalg.norm(x, axis=1)
        zero = norms == 0
        out = np.ones((len(x), len(x)))
        live = ~zero
        if live.any():
            unit = x[live] / norms[live, None]
            # 1 - cos as |u - v|^2 / 2 from direct differences keeps near-parallel rows exact.
            out[np.ix_(live, live)] = cdist(unit, unit, "sqeuclidean") / 2.0
    else:
        out = cdist(x, x, {"l2": "euclidean", "l1": "cityblock", "sqeuclidean": "sqeuclidean"}[metric])
    np.fill_diagonal(out, 0.0)
    return out


def reference_gm_scores(rows: np.ndarray, metric: str, keep: np.ndarray | None = None) -> np.ndarray:
    """g_j = sum over kept j' of d(F_j, F_j'); +inf for pruned rows."""
    dist = reference_distances(rows, metric)
    keep = np.ones(len(dist), dtype=bool) if keep is None else np.asarray(keep, dtype=bool)
    scores = (dist * keep[None, :]).sum(axis=1)
    return np.where(keep, scores, np.inf)


def assert_close_rel(got: torch.Tensor, expected: np.ndarray, rtol: float = RTOL, what: str = "") -> None:
    """|got - expected| <= rtol * |expected| elementwise, plus a floor of rtol * 1e-6 * max(max|expected|, 1)
    for entries that are zero in exact arithmetic (duplicate or parallel rows) and come out as ~1e-30."""
    got64 = got.detach().cpu().double().numpy()
    assert got64.shape == expected.shape, f"{what}: shape {got64.shape} != {expected.shape}"
    finite = np.isfinite(expected)
    assert np.array_equal(np.isfinite(got64), finite), f"{what}: inf/finite pattern differs"
    if not finite.any():
        return
    scale = max(float(np.abs(expected[finite]).max()), 1.0)
    err = np.abs(got64[finite] - expected[finite])
    bound = rtol * np.abs(expected[finite]) + rtol * 1e-6 * scale
    worst = int(np.argmax(err / bound))
    assert np.all(err <= bound), (
        f"{what}: max relative error {float((err / np.maximum(np.abs(expected[finite]), 1e-30)).max()):.3e} "
        f"exceeds {rtol} (got {got64[finite][worst]!r}, expected {expected[finite][worst]!r})"
    )


def rows_of(weight: torch.Tensor) -> np.ndarray:
    """The float32 values the kernels see, as float64 rows F_j = W[j].flatten()."""
    return weight.detach().float().reshape(weight.shape[0], -1).double().numpy()


def near_duplicate_family(n: int, d: int, separation: float = 1e-4, seed: int = 0) -> torch.Tensor:
    """n filters base + eps_j with |eps_j| ~ separation * |base|: the pairs FPGM must rank."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(d, generator=gen, dtype=torch.float64)
    noise = torch.randn(n, d, generator=gen, dtype=torch.float64)
    noise = noise / noise.norm(dim=1, keepdim=True) * separation * base.norm()
    return (base[None, :] + noise).float()


def reference_kernel_scores(weight: np.ndarray, criterion: str) -> np.ndarray:
    """c(K) per kernel of a (..., k, k) weight, float64 NumPy/LAPACK (criterion by name)."""
    k = weight.astype(np.float64)
    if criterion == "weight":
        return np.abs(k).mean(axis=(-2, -1))
    if criterion in ("det", "det_gram"):
        det = np.abs(np.linalg.det(k))
        return det**2 if criterion == "det_gram" else det
    if criterion == "spectral_norm":
        return np.linalg.svd(k, compute_uv=False)[..., 0]
    eig = np.linalg.eigvals(k)
    values = np.abs(eig.real) if criterion.endswith("_real") else np.abs(eig)
    return values.min(axis=-1) if criterion.startswith("min") else values.max(axis=-1)


def outputs_per_thread_count(script: str, tmp_path: Path) -> list[torch.Tensor]:
    """Runs `script` (which torch.saves one tensor to sys.argv[1]) in fresh processes with
    OMP_NUM_THREADS = 1 and 2 and returns the two tensors: for bitwise thread-count determinism tests."""
    results = []
    for threads in ("1", "2"):
        path = tmp_path / f"out_{threads}.pt"
        env = dict(os.environ, OMP_NUM_THREADS=threads)
        subprocess.run([sys.executable, "-c", script, str(path)], check=True, env=env, timeout=300)
        results.append(torch.load(path))
    return results
