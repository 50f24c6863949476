"""Registration of fastprune's ops in the torch.library namespace "fastprune".

Each op is defined with a schema, one implementation for every device (the op resolves its own
backend before the call and passes it as an argument) and a fake implementation, so that it works
under torch.compile / FakeTensor and passes torch.library.opcheck. The low-level Library API is used
rather than @custom_op: it costs ~7 us per call against ~35 us, and a whole network is scored in
well under a millisecond.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch

LIBRARY = torch.library.Library("fastprune", "DEF")


def register(name: str, schema: str, implementation: Callable, fake: Callable) -> None:
    LIBRARY.define(name + schema)
    LIBRARY.impl(name, implementation, "CompositeExplicitAutograd")
    torch.library.register_fake(f"fastprune::{name}", fake, lib=LIBRARY)


# --- autocast ------------------------------------------------------------------------------------------
# fastprune's convolutions follow torch.autocast as aten::conv2d does (a "lower precision" op): under
# autocast on the inputs' device, floating-point inputs other than float64 are cast to the autocast dtype
# (bfloat16 by default on the CPU, float16 on CUDA) and the result comes out in it.
_AUTOCAST_KEYS = {"cpu": "AutocastCPU", "cuda": "AutocastCUDA"}


def autocast_dtype(device_type: str) -> Optional[torch.dtype]:
    """The dtype autocast casts a conv's inputs to on `device_type`, or None when autocast is off there."""
    if device_type not in _AUTOCAST_KEYS or not torch.is_autocast_enabled(device_type):
        return None
    return torch.get_autocast_dtype(device_type)


def autocast_cast(dtype: Optional[torch.dtype], *values: Any) -> tuple:
    """`values` with every floating tensor except float64 cast to `dtype` (unchanged when dtype is None)."""
    if dtype is None:
        return values
    return tuple(
        v.to(dtype)
        if isinstance(v, torch.Tensor) and v.is_floating_point() and v.dtype != torch.float64
        else v
        for v in values
    )


def autocast_inputs(x: Any, *others: Any) -> tuple:
    """(x, *others) cast as autocast on x's device casts a conv's inputs (unchanged outside autocast, or
    when x is not a tensor: the op's checks then say what is wrong)."""
    if not isinstance(x, torch.Tensor):
        return (x, *others)
    return autocast_cast(autocast_dtype(x.device.type), x, *others)


def register_autocast(name: str) -> None:
    """Registers the autocast rule above for fastprune::`name` on the CPU and CUDA dispatch keys (the rule
    of torch.library.register_autocast, with the dtype of the autocast region instead of a fixed one), so
    the op called through torch.ops casts like the eager wrapper does. The op's `backend` argument, when
    it names a float32 kernel, becomes "torch" for cast inputs (PyTorch's convolution in that dtype, what
    the wrapper picks for them)."""
    op = getattr(torch.ops.fastprune, name).default
    names = [a.name for a in op._schema.arguments]
    backend_at = names.index("backend") if "backend" in names else None
    for device_type, key in _AUTOCAST_KEYS.items():
        dispatch_key = getattr(torch._C.DispatchKey, key)

        def cast_and_call(*args: Any, _device: str = device_type, _key: Any = dispatch_key) -> Any:
            dtype = autocast_dtype(_device)
            cast = list(autocast_cast(dtype, *args))
            if backend_at is not None and any(a is not b for a, b in zip(cast, args)):
                cast[backend_at] = "torch"
            with torch._C._ExcludeDispatchKeyGuard(torch._C.DispatchKeySet(_key)):
                return op(*cast)

        # As torch.library.register_autocast: a Python-dispatcher kernel (torch.compile) and the C++ key.
        op.py_impl(dispatch_key)(cast_and_call)
        LIBRARY.impl(name, lambda _keyset, *args, _f=cast_and_call: _f(*args), key, with_keyset=True)
