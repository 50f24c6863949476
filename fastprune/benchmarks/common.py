"""Helpers shared by the benchmark runners: machine and commit names, timing, CSV output."""

from __future__ import annotations

import csv
import io
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Callable

import torch

from fastprune.serialization import replace_atomically


def cpu_capability_name() -> str:
    """The CPU capability fastprune's kernels run with in this process ("avx2" when FASTPRUNE_CPU_CAPABILITY
    forces it on an AVX-512 machine), or "unavailable" without the native library."""
    from fastprune import _native
    from fastprune.backends import cpu_capability

    return "unavailable" if _native.unavailable_reason() else cpu_capability().name


# Variables that cap the instruction set of PyTorch's own kernels (oneDNN, ATen, MKL): set together with
# FASTPRUNE_CPU_CAPABILITY, they make an AVX-512 machine time both sides as an AVX2-only CPU would.
BASELINE_ISA_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS")


def baseline_isa() -> str:
    """How PyTorch's side of a benchmark is capped: "native" (nothing set), else the variables' values."""
    caps = [f"{name}={os.environ[name]}" for name in BASELINE_ISA_VARIABLES if os.environ.get(name)]
    return " ".join(caps) or "native"


def machine_name() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{model}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, "
        f"fastprune CPU kernels {cpu_capability_name()}, torch ISA {baseline_isa()}"
    )


def commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def median_seconds(fn: Callable[[], object], min_runs: int = 3, budget_s: float = 2.0) -> float:
    """Median wall time of fn after one warm-up; at least one timed run, up to min_runs within budget."""
    fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 50:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - start
        if (len(times) >= min_runs and elapsed >= budget_s) or elapsed > 4 * budget_s:
            break
    return statistics.median(times)


def append_csv(path: Path, fields: list[str], rows: list[dict]) -> None:
    """Appends rows to a CSV (header written when the file is new) and says where. The file is rewritten
    and replaced atomically; when the benchmark gained columns since the file was started, the header is
    the union of both (old rows leave the new columns empty), so every column stays under its own name.
    Every row records the CPU capability of fastprune's kernels (column cpu_capability) and any cap on
    PyTorch's (baseline_isa)."""
    path.parent.mkdir(parents=True, exist_ok=True)  # `--out results` need not exist yet
    extra = {"cpu_capability": cpu_capability_name(), "baseline_isa": baseline_isa()}
    rows = [{**extra, **row} for row in rows]
    fields = [*fields, *(name for name in extra if name not in fields)]
    old_fields: list[str] = []
    old_rows: list[dict] = []
    if path.exists():
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            old_fields = list(reader.fieldnames or [])
            old_rows = list(reader)
    union = old_fields + [name for name in fields if name not in old_fields]
    # The whole file rewritten and replaced atomically: a Ctrl-C or a crash leaves the old rows intact.
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=union)
    writer.writeheader()
    writer.writerows(old_rows + rows)
    replace_atomically(path, lambda f: f.write(text.getvalue().encode()))
    print(f"\nappended {len(rows)} rows to {path}")


def steady_allocator() -> bool:
    """Pins glibc malloc's mmap and trim thresholds (mallopt) for the rest of the process, so that tensors
    of up to 32 MB are reused from the heap instead of being mapped afresh, page faults and all, on every
    call. With the default, adaptive thresholds the same oneDNN convolution measured 1.5 ms or 3 ms here
    depending on what had been allocated before it (ResNet-56 stage-2 layer, batch 64): both contenders of
    a benchmark get this steady state. Returns False where it cannot be set (not glibc)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    ok = mallopt(m_mmap_threshold, 32 * 1024 * 1024) == 1
    return bool(mallopt(m_trim_threshold, 1 << 30) == 1 and ok)


def interleaved_times(fns: list[Callable[[], object]], repeats: int) -> list[list[float]]:
    """Seconds of each function, timed round-robin `repeats` times after one warm-up each, so that load
    changes during the run hit every contender alike: times[i][r] is function i in round r."""
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, record in zip(fns, times):
            start = time.perf_counter()
            fn()
            record.append(time.perf_counter() - start)
    return times


def interleaved_medians(fns: list[Callable[[], object]], repeats: int) -> list[float]:
    """Median seconds of each function over :func:`interleaved_times`."""
    return [statistics.median(t) for t in interleaved_times(fns, repeats)]


def median_ratio(numerator: list[float], denominator: list[float]) -> float:
    """Median over rounds of numerator[r] / denominator[r]: each ratio compares two runs taken back to back,
    so a burst of load from elsewhere that slows one round shifts one ratio, not a whole median."""
    return statistics.median(a / b for a, b in zip(numerator, denominator))
