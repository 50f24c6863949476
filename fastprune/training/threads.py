"""`--threads N`: the CPU threads of a training run, for torch and for fastprune's own kernels.

fastprune's CPU kernels are OpenMP loops that take ``omp_get_max_threads()`` threads. In the usual
install (torch's wheel ships libgomp.so.1 and libfastprune links libgomp.so.1) both share one OpenMP
runtime, and ``torch.set_num_threads(n)`` sets that runtime's count as well: checked here through
``fastprune._C.build_info()["openmp_max_threads"]``. Where they load two runtimes, the count of every
OpenMP runtime loaded in the process is set too (``omp_set_num_threads``, Linux), with a warning if that
still does not take.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import torch


@contextlib.contextmanager
def torch_threads(threads: Optional[int]) -> Iterator[None]:
    """Runs the block with `threads` CPU threads (torch's intra-op pool and fastprune's kernels) and puts
    the previous count back after it; None leaves everything as it is."""
    if threads is None:
        yield
        return
    previous = torch.get_num_threads()
    set_threads(threads)
    try:
        yield
    finally:
        set_threads(previous)


def set_threads(threads: int) -> None:
    """torch.set_num_threads(threads), and the same count for fastprune's OpenMP kernels."""
    torch.set_num_threads(threads)
    native = _native_threads()
    if native is None or native == threads:
        return
    for path in _openmp_runtimes():  # fastprune's kernels on an OpenMP runtime of their own
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(path).omp_set_num_threads(threads)
    native = _native_threads()
    if native is not None and native != threads:
        warnings.warn(
            f"threads: torch uses {threads} threads, fastprune's CPU kernels {native} (OMP_NUM_THREADS sets "
            "both at start-up)",
            stacklevel=3,
        )


def _native_threads() -> Optional[int]:
    """OpenMP's thread count as fastprune's kernels see it (None without the native library)."""
    from fastprune import _native

    if _native.unavailable_reason() is not None:
        return None
    return int(_native.native().build_info()["openmp_max_threads"])


def _openmp_runtimes() -> list[str]:
    """Paths of the OpenMP runtimes (libgomp, libomp, libiomp5) mapped into this process (Linux)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return []
    found = {line.split()[-1] for line in maps.splitlines() if re.search(r"/lib(g|i)?omp[^/]*\.so", line)}
    return sorted(found)
