"""Backend registry: what each backend can run, why it refuses an input, and which one a call uses.

Backends:
    "cpu"     C++ kernels (OpenMP, register-blocked Gram step) through the C ABI; CPU tensors.
    "cuda"    CUDA C++ kernels through the C ABI; CUDA tensors, needs a build with nvcc and a GPU.
    "triton"  Triton kernels (fastprune.triton_kernels); CUDA tensors, or CPU tensors when the Triton
              interpreter is on (TRITON_INTERPRET=1; slow, meant for testing).
    "torch"   the plain-PyTorch float64 reference; any device, always available.

Which backend a call uses, first match wins:
    1. the call's ``backend=`` argument when it is not "auto";
    2. the innermost ``with fastprune.use_backend(name):`` block;
    3. the environment variable FASTPRUNE_BACKEND (read at each call, never cached at import);
    4. "auto": cpu for CPU tensors; cuda, else triton, for CUDA tensors; torch when nothing else accepts,
       or where fastprune's kernel is slower than PyTorch's own way on this machine (see auto_fallbacks:
       the cpu kernels of the CPU capability in use, e.g. the SIMD-less default ones; the masked
       convolution's GPU kernels, until measured), or for inputs the op sends to torch on every device
       (masked_conv2d with groups > 1).
A backend named by 1-3 that refuses the input raises BackendError listing every backend's reasons; a
backend named explicitly runs even where "auto" would fall back for speed.

The cpu backend's kernels exist once per CPU capability (default = x86-64 baseline or NEON, avx2,
avx512), chosen by the native library at its first call; see cpu_capability().
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib.util
import os
from dataclasses import dataclass
from typing import Callable, Iterator, NamedTuple, Optional

from fastprune import _native

BACKENDS = ("cpu", "cuda", "triton", "torch")
_AUTO_ORDER = {"cpu": ("cpu", "torch"), "cuda": ("cuda", "triton", "torch")}

_context_backend: contextvars.ContextVar[Optional[str]] = contextvars.ContextVar(
    "fastprune_backend", default=None
)


class BackendError(ValueError):
    """A named backend cannot run the call; the message lists each backend's reasons."""


@functools.cache
def _triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


def _triton_reason(device_type: str) -> str | None:
    if not _triton_installed():
        return "triton is not installed (pip install triton)"
    if device_type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        return "CPU tensors run on triton only in interpreter mode (set TRITON_INTERPRET=1)"
    if device_type not in ("cpu", "cuda"):
        return f"triton runs on cuda tensors, got {device_type}"
    return None


def _device_reason(wanted: str, device_type: str) -> str | None:
    return None if device_type == wanted else f"needs {wanted} tensors, got {device_type} tensors"


SCORING_OPS = frozenset({"pairwise_distances", "gm_scores"})
SPECTRAL_OPS = frozenset({"small_eigvals", "small_svdvals", "small_det", "kernel_scores"})
# Masked convolution: CPU C++ and CUDA kernels through the C ABI, Triton kernels (CUDA tensors, or CPU
# tensors under TRITON_INTERPRET=1) and the torch reference.
CONV_OPS = frozenset({"masked_conv2d"})
# Dense convolution with fused bias + ReLU: a CPU kernel (fastprune's) and torch (cuDNN on a GPU).
DENSE_CONV_OPS = frozenset({"conv2d"})


@dataclass(frozen=True)
class Backend:
    name: str
    ops: frozenset  # the ops this backend has kernels for
    # Returns None when the backend can run on tensors of this device type, else the reason it cannot.
    device_refusal: Callable[[str], Optional[str]]
    max_matrix_n: int = 7  # largest n x n matrix its small-matrix kernels take

    def refusal(
        self, device_type: str, op: Optional[str] = None, matrix_n: Optional[int] = None
    ) -> Optional[str]:
        if op is not None and op not in self.ops:
            return f"no {op} kernel in the {self.name} backend yet"
        if matrix_n is not None and matrix_n > self.max_matrix_n:
            return f"its {op} kernels take n <= {self.max_matrix_n}, got n = {matrix_n}"
        return self.device_refusal(device_type)


_REGISTRY = {
    "cpu": Backend(
        "cpu",
        SCORING_OPS | SPECTRAL_OPS | CONV_OPS | DENSE_CONV_OPS,
        lambda dev: _device_reason("cpu", dev) or _native.unavailable_reason(),
    ),
    "cuda": Backend(
        "cuda",
        SCORING_OPS | SPECTRAL_OPS | CONV_OPS,
        lambda dev: _device_reason("cuda", dev) or _native.cuda_unavailable_reason(),
    ),
    # Triton's small-matrix kernels are closed forms, written for the 1x1 to 3x3 kernels of a ResNet.
    "triton": Backend("triton", SCORING_OPS | SPECTRAL_OPS | CONV_OPS, _triton_reason, max_matrix_n=3),
    "torch": Backend("torch", SCORING_OPS | SPECTRAL_OPS | CONV_OPS | DENSE_CONV_OPS, lambda dev: None),
}


class CpuCapability(NamedTuple):
    """The CPU kernels the native library runs in this process."""

    name: str  # "default", "avx2" or "avx512"
    reason: str  # what the CPU supports, and what FASTPRUNE_CPU_CAPABILITY asked for
    built: tuple[str, ...]  # the capabilities compiled in ("default", "avx2", "avx512" on x86-64)


@functools.cache
def cpu_capability() -> CpuCapability:
    """The capability whose kernels the cpu backend runs: the best the CPU and OS support, lowered (never
    raised) by the environment variable FASTPRUNE_CPU_CAPABILITY=default|avx2|avx512, fixed for the process
    at the native library's first call (and so cached here). Raises RuntimeError when the native library
    cannot be loaded."""
    info = _native.native().build_info()
    return CpuCapability(
        info["cpu_capability"],
        info["cpu_capability_reason"],
        tuple(info["cpu_capabilities_built"].split(",")),
    )


# Where the cpu backend's kernels lose to PyTorch's own way (oneDNN / MKL through torch) on a capability,
# whatever the input: "auto" then takes torch for the op, and `fastprune info` prints the reason. Measured
# with FASTPRUNE_CPU_CAPABILITY forcing each capability on a 2-core Zen 4 (README, "CPUs and capabilities").
_CPU_SLOWER_THAN_TORCH: dict[tuple[str, str], str] = {
    # SSE2 (x86-64 baseline) against oneDNN's AVX2/AVX-512: ResNet-56 layers, filter 30% 0.34-0.50x
    # dense forward (kernel 90%: 1.1-1.9x, not worth a second rule for the rare CPU without AVX2).
    ("default", "masked_conv2d"): "are slower than PyTorch's convolution (no SIMD beyond the baseline)",
    ("default", "conv2d"): "are slower than PyTorch's convolution (no SIMD beyond the baseline)",
}

# Kernel-level masks (filters keeping different channels): the cpu kernels beat the dense convolution of
# W * M (forward + backward, ResNet-56 layers, interleaved) only when few kernels are kept. Crossover
# measured at 60-67% pruned on avx512 and 67-75% on avx2; auto takes torch above these kept fractions.
MASKED_CONV_MAX_KEPT = {"avx512": 1 / 3, "avx2": 1 / 4}


def masked_conv_auto_fallback(kept_fraction: float, uniform: bool) -> Optional[str]:
    """Why "auto" takes torch for a masked_conv2d whose kernel mask keeps `kept_fraction` of the kernels
    (`uniform`: every filter keeps all its kernels or none, i.e. a filter mask), or None."""
    capability = cpu_capability().name
    limit = MASKED_CONV_MAX_KEPT.get(capability)
    if uniform or limit is None or kept_fraction <= limit:
        return None
    return (
        f"the {capability} CPU kernels of masked_conv2d are slower than the dense convolution for kernel "
        f"masks keeping more than {limit:.0%} of the kernels (this one keeps {kept_fraction:.0%})"
    )


# Grouped and depthwise convolutions: the masked_conv2d kernels know groups = 1 only (a named backend runs
# a grouped call as the ungrouped one with a block-diagonal mask); "auto" takes PyTorch's grouped kernels.
MASKED_CONV_GROUPED = (
    "grouped convolutions (groups > 1) always, on every device (PyTorch's grouped convolution; "
    "fastprune's kernels take groups = 1)"
)


# Where fastprune's GPU kernels (cuda and triton backends) are expected to lose to PyTorch's own way on CUDA
# tensors. Not measured: no GPU has run them yet (issue 19). "auto" takes torch there until a GPU run shows
# otherwise; a backend named explicitly still runs them.
_GPU_SLOWER_THAN_TORCH: dict[str, str] = {
    # One thread per output, scalar loads, no shared-memory or tensor-core tiling: estimated 5-50x slower
    # than cuDNN's convolution of W * M (issue 19).
    "masked_conv2d": "are untiled (one thread per output) and estimated slower than cuDNN's convolution of "
    "W * M; not yet measured on a GPU",
}


def auto_fallback(op: str, device_type: str = "cpu") -> Optional[str]:
    """Why "auto" does not pick fastprune's kernels for `op` on tensors of `device_type` although they could
    run it (on the CPU: the kernels of the CPU capability in use are slower than PyTorch's; on CUDA: the
    GPU kernels are expected to be), or None."""
    if device_type == "cuda":
        why = _GPU_SLOWER_THAN_TORCH.get(op)
        return None if why is None else f"the CUDA and Triton kernels of {op} {why}"
    if device_type != "cpu" or _native.unavailable_reason() is not None:
        return None
    capability = cpu_capability().name
    why = _CPU_SLOWER_THAN_TORCH.get((capability, op))
    return None if why is None else f"the {capability} CPU kernels of {op} {why}"


def auto_fallbacks(device_type: str = "cpu") -> dict[str, str]:
    """For each op where "auto" takes torch instead of fastprune's kernels (the cpu backend's for CPU
    tensors) for speed, the reason; inputs that decide it (masked_conv2d's kernel density and groups)
    are described in general terms."""
    ops = sorted(SCORING_OPS | SPECTRAL_OPS | CONV_OPS | DENSE_CONV_OPS)
    reasons = {op: why for op in ops if (why := auto_fallback(op, device_type)) is not None}
    if device_type == "cpu" and "masked_conv2d" not in reasons and _native.unavailable_reason() is None:
        capability = cpu_capability().name
        limit = MASKED_CONV_MAX_KEPT.get(capability)
        if limit is not None:
            reasons["masked_conv2d"] = (
                f"for kernel masks keeping more than {limit:.0%} of the kernels (the {capability} CPU "
                "kernels are slower than the dense convolution there); filter masks and sparser kernel "
                "masks take the cpu backend"
            )
    if "masked_conv2d" in reasons:
        reasons["masked_conv2d"] += "; " + MASKED_CONV_GROUPED
    else:
        reasons["masked_conv2d"] = MASKED_CONV_GROUPED
    return reasons


def refusal_reasons(
    device_type: str, op: Optional[str] = None, matrix_n: Optional[int] = None
) -> dict[str, str | None]:
    """For each backend, None if it accepts `op` (any op when None) on `device_type` (for matrices of
    size `matrix_n`, when given), else why not."""
    return {name: _REGISTRY[name].refusal(device_type, op, matrix_n) for name in BACKENDS}


def available_backends(device_type: str = "cpu") -> list[str]:
    """Backends that can run on tensors of `device_type` ("cpu" or "cuda") in this process."""
    return [name for name, reason in refusal_reasons(device_type).items() if reason is None]


def _check_name(name: str, source: str) -> str:
    if name not in BACKENDS and name != "auto":
        raise ValueError(f"{source}: expected one of {', '.join(BACKENDS)} or 'auto', got {name!r}")
    return name


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Make `name` the default backend of calls inside the block (a per-call argument still wins)."""
    token = _context_backend.set(_check_name(name, "use_backend(name)"))
    try:
        yield
    finally:
        _context_backend.reset(token)


def select_backend(
    requested: str,
    device_type: str,
    op: str,
    matrix_n: Optional[int] = None,
    cpu_slower: Optional[Callable[[], Optional[str]]] = None,
    auto_torch: Optional[str] = None,
) -> str:
    """Resolves the backend for one call of `op` on tensors of `device_type` (see module docstring);
    `matrix_n` is the largest matrix size of a small-matrix op's input. `cpu_slower`, called only when
    "auto" reaches the cpu backend, says why the cpu kernels would be slower than torch on this input.
    `auto_torch`, when not None, is why "auto" takes torch for this input on every device."""
    _check_name(requested, "backend")
    source = "backend argument"
    if requested == "auto" and _context_backend.get() is not None:
        requested, source = _context_backend.get(), "fastprune.use_backend()"
    if requested == "auto" and os.environ.get("FASTPRUNE_BACKEND", "auto") != "auto":
        requested = _check_name(os.environ["FASTPRUNE_BACKEND"], "FASTPRUNE_BACKEND environment variable")
        source = "FASTPRUNE_BACKEND environment variable"
    if requested == "auto":
        if auto_torch is not None:
            return "torch"
        for name in _AUTO_ORDER.get(device_type, ("torch",)):
            if _REGISTRY[name].refusal(device_type, op, matrix_n) is not None:
                continue
            if name != "torch" and auto_fallback(op, device_type):
                continue
            if name == "cpu" and cpu_slower and cpu_slower():
                continue
            return name
        return "torch"
    if _REGISTRY[requested].refusal(device_type, op, matrix_n) is not None:
        reasons = refusal_reasons(device_type, op, matrix_n)
        listing = "; ".join(f"{name}: {why or 'accepts'}" for name, why in reasons.items())
        raise BackendError(
            f"backend {requested!r} (from {source}) cannot run {op} on {device_type} tensors: "
            f"{reasons[requested]}. Backends: {listing}"
        )
    return requested
