"""Lazy access to the compiled module fastprune._C (the C ABI bindings).

Importing fastprune never loads native code or initialises CUDA; the first op that needs the library
loads it here, and a missing build becomes a reason a backend gives, not an import error.
"""

from __future__ import annotations

import functools
from types import ModuleType


@functools.cache
def _load() -> tuple[ModuleType | None, str | None]:
    try:
        from fastprune import _C
    except ImportError as exc:
        return None, (
            f"the native library fastprune._C is not built or failed to load ({exc}); "
            "build it with `make build` or `pip install .`"
        )
    return _C, None


def native() -> ModuleType:
    """The loaded fastprune._C module; raises RuntimeError saying why when it cannot be loaded."""
    module, reason = _load()
    if module is None:
        raise RuntimeError(reason)
    return module


def unavailable_reason() -> str | None:
    """None when fastprune._C loads, else why not."""
    return _load()[1]


@functools.cache
def cuda_unavailable_reason() -> str | None:
    """None when the CUDA backend can run (compiled in and a device present), else why not."""
    reason = unavailable_reason()
    if reason is not None:
        return reason
    module = native()
    if not module.build_info()["cuda_compiled"]:
        return "libfastprune was built without CUDA kernels (nvcc not found or FASTPRUNE_CUDA=0)"
    ok, why = module.cuda_device_check()
    return None if ok else why
