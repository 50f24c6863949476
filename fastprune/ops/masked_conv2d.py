"""masked_conv2d: a 2-D convolution that computes only the kept filters / kernels of a pruning mask.

    y = conv2d(x, W * M, b, stride, padding, dilation, groups)

with W (O, C/groups, kh, kw) and M a bool filter mask (O,) or kernel mask (O, C/groups) (True = kept).
Gradients: dL/dx through the kept kernels only; dL/dW on kept entries and exactly 0 on masked ones;
dL/db = sum of dL/dy over N, H, W.

Backends: "torch" (F.conv2d on W * M and torch.nn.grad; any device, float32 or float64, the oracle),
"cpu" (fastprune's C++ kernels through the C ABI, float32: direct convolution over compressed lists of
the kept kernels, work proportional to their number; see fastprune/ops/_masked_conv2d_native.py and
csrc/cpu/masked_conv2d.cpp) and "triton" (the
same direct convolution over the same lists, float32, on CUDA tensors or interpreted on CPU tensors under
TRITON_INTERPRET=1; see triton_kernels/masked_conv2d.py) and "cuda" (the same again in CUDA C++ through
the C ABI, float32, CUDA tensors; see csrc/cuda/masked_conv2d.cu; a filter-uniform mask takes cuDNN on
the gathered kept filters instead).
Registered as torch.ops.fastprune.masked_conv2d (+ masked_conv2d_backward) with fake implementations
and autograd, on the (O, C/groups) mask.

Grouped convolutions (groups > 1, e.g. MobileNet's depthwise ones): "auto" takes torch (F.conv2d with
groups), on every device. The native backends (cpu, cuda, triton), whose kernels know groups = 1 only, run
them when named, as the ungrouped convolution with a block-diagonal (O, C) kernel mask (filter o keeps
only channels of its group; see fastprune.ops._mask_lists): one call, work proportional to the kept
kernels, the weight gradient gathered back to (O, C/groups, kh, kw).
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from fastprune.backends import MASKED_CONV_GROUPED, masked_conv_auto_fallback, select_backend
from fastprune.ops._conv_args import IntPair, check_conv_args, empty_output
from fastprune.ops._library import LIBRARY, autocast_inputs, register, register_autocast
from fastprune.ops._mask_lists import (
    block_diagonal,
    kept_lists,
    kernel_mask,
    mask_lists,
    transposed_lists,
    weight_channels,
)
from fastprune.ops._masked_conv2d_native import (
    DEVICE_CPU,
    DEVICE_CUDA,
    cpu_backward,
    cpu_forward,
    cuda_backward,
    cuda_forward,
    prepare,
)

# ---- torch backend: the reference --------------------------------------------------------------------


def _float_mask(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mask.to(like.dtype)[:, :, None, None]


def _torch_forward(x, weight, mask, bias, stride, padding, dilation, groups=1):
    return F.conv2d(x, weight * _float_mask(mask, weight), bias, stride, padding, dilation, groups)


def _torch_backward(grad_y, x, weight, mask, stride, padding, dilation, need, groups=1):
    grad_x = grad_w = None
    if need[0]:
        masked = weight * _float_mask(mask, weight)
        grad_x = torch.nn.grad.conv2d_input(x.shape, masked, grad_y, stride, padding, dilation, groups)
    if need[1]:
        full = torch.nn.grad.conv2d_weight(x, weight.shape, grad_y, stride, padding, dilation, groups)
        # where(), not a product: a masked entry is exactly 0 even when the dense gradient is inf/NaN.
        grad_w = torch.where(mask[:, :, None, None], full, torch.zeros((), dtype=full.dtype))
    return grad_x, grad_w


# ---- triton backend -----------------------------------------------------------------------------------


def _triton_lists(weight, mask, groups):
    """The compressed lists of the (O, C/groups) mask as the block-diagonal (O, C) one (groups = 1: the
    mask itself), on the mask's device, and the weight's dim-1 index of each kept kernel."""
    row_ptr, col, filters = kept_lists(block_diagonal(mask, groups))
    return row_ptr, col, filters, weight_channels(col, filters, weight.shape[0], weight.shape[1], groups)


def _triton_forward(x, weight, mask, bias, stride, padding, dilation, groups=1):
    from fastprune.triton_kernels import masked_conv2d as kernels_mod

    row_ptr, col, filters, channels = _triton_lists(weight, mask, groups)
    kernels = weight[filters, channels].contiguous()
    bias = None if bias is None else bias.contiguous()
    return kernels_mod.forward(
        x.contiguous(), kernels, row_ptr, col, bias, weight.shape[0], stride, padding, dilation
    )


def _triton_backward(grad_y, x, weight, mask, stride, padding, dilation, need, groups=1):
    from fastprune.triton_kernels import masked_conv2d as kernels_mod

    row_ptr, col, filters, channels = _triton_lists(weight, mask, groups)
    grad_y = grad_y.contiguous()
    grad_x = grad_w = None
    if need[0]:
        kernels = weight[filters, channels].contiguous()
        col_ptr, csc_kernel, csc_filter = transposed_lists(col, filters, x.shape[1])
        grad_x = kernels_mod.backward_input(
            grad_y, kernels, col_ptr, csc_kernel, csc_filter, x.shape, stride, padding, dilation
        )
    if need[1]:
        kh, kw = weight.shape[2], weight.shape[3]
        grad_kernels = kernels_mod.backward_weight(
            x.contiguous(), grad_y, col, filters.to(torch.int32), kh, kw, stride, padding, dilation
        )
        grad_w = weight.new_zeros(weight.shape)
        grad_w[filters, channels] = grad_kernels
    return grad_x, grad_w


# ---- registration -------------------------------------------------------------------------------------

_FORWARD = {"cpu": cpu_forward, "cuda": cuda_forward, "triton": _triton_forward, "torch": _torch_forward}
_BACKWARD = {
    "cpu": cpu_backward,
    "cuda": cuda_backward,
    "triton": _triton_backward,
    "torch": _torch_backward,
}


def _forward(x, weight, mask, bias, stride, padding, dilation, backend, groups=1):
    return _FORWARD[backend](x, weight, mask, bias, stride, padding, dilation, groups)


def _forward_fake(x, weight, mask, bias, stride, padding, dilation, backend, groups=1):
    return empty_output(x, weight, stride, padding, dilation)


def _backward_op(grad_y, x, weight, mask, stride, padding, dilation, output_mask, backend, groups=1):
    grad_x, grad_w = _BACKWARD[backend](
        grad_y, x, weight, mask, stride, padding, dilation, output_mask, groups
    )
    # A schema returns tensors: an unneeded gradient is an empty one, never computed.
    return (
        x.new_empty(0) if grad_x is None else grad_x,
        weight.new_empty(0) if grad_w is None else grad_w,
    )


def _backward_fake(grad_y, x, weight, mask, stride, padding, dilation, output_mask, backend, groups=1):
    return (
        x.new_empty(x.shape if output_mask[0] else (0,)),
        weight.new_empty(weight.shape if output_mask[1] else (0,)),
    )


register(
    "masked_conv2d",
    "(Tensor x, Tensor weight, Tensor mask, Tensor? bias, int[2] stride, int[2] padding, int[2] dilation, "
    "str backend, int groups=1) -> Tensor",
    _forward,
    _forward_fake,
)
register(
    "masked_conv2d_backward",
    "(Tensor grad_y, Tensor x, Tensor weight, Tensor mask, int[2] stride, int[2] padding, int[2] dilation, "
    "bool[2] output_mask, str backend, int groups=1) -> (Tensor, Tensor)",
    _backward_op,
    _backward_fake,
)


def _setup_context(ctx, inputs, output):
    x, weight, mask, bias, stride, padding, dilation, backend, *rest = inputs
    ctx.save_for_backward(x, weight, mask)
    ctx.conv = (stride, padding, dilation, backend, rest[0] if rest else 1)
    ctx.has_bias = bias is not None


def _gradients(ctx, grad_y, backward):
    """The gradients of (x, weight, mask, bias, stride, padding, dilation, backend, groups), with
    `backward` the backward op (or its implementation) for those of x and weight."""
    x, weight, mask = ctx.saved_tensors
    stride, padding, dilation, backend, groups = ctx.conv
    need_x, need_w, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[3]
    grad_x = grad_w = grad_b = None
    if need_x or need_w:
        grad_x, grad_w = backward(
            grad_y, x, weight, mask, stride, padding, dilation, [need_x, need_w], backend, groups
        )
    if ctx.has_bias and need_b:
        grad_b = grad_y.sum((0, 2, 3))
    grad_x, grad_w = grad_x if need_x else None, grad_w if need_w else None
    return grad_x, grad_w, None, grad_b, None, None, None, None, None


def _autograd_backward(ctx, grad_y):
    return _gradients(ctx, grad_y, torch.ops.fastprune.masked_conv2d_backward)


torch.library.register_autograd(
    "fastprune::masked_conv2d", _autograd_backward, setup_context=_setup_context, lib=LIBRARY
)
register_autocast("masked_conv2d")


# ---- eager calls --------------------------------------------------------------------------------------

# In eager mode the op's forward and backward implementations are called through a plain autograd.Function:
# the dispatcher's path (torch.library's Python autograd wrapper, then a second dispatch to the backward op)
# cost 0.12-0.17 ms a ResNet-56 layer forward+backward (2-core Zen 4, batch 64, filter mask 50%, each call
# right after a dense conv as in bench conv: 1.60 -> 1.69x on stage 1, 1.48 -> 1.57x on stage 2, 1.48 ->
# 1.55x on stage 3). That Python runs between kernels that have just evicted it from cache, at several
# times its warm cost. The registered op stays the one that torch.compile, torch.export, tracing, fake
# tensors, tensor subclasses and dispatch modes see.
_PLAIN_TENSORS = (torch.Tensor, torch.nn.Parameter)
_dispatch_modes = getattr(torch._C, "_len_torch_dispatch_stack", lambda: 1)  # private: unknown = some


def _plain_eager(*tensors: Optional[torch.Tensor]) -> bool:
    """Whether a call may skip the dispatcher: eager, untraced, no dispatch mode, plain tensors."""
    return (
        not torch.compiler.is_compiling()
        and not torch.jit.is_tracing()
        and _dispatch_modes() == 0
        and all(t is None or type(t) in _PLAIN_TENSORS for t in tensors)
    )


_C_ABI_DEVICES = {"cpu": DEVICE_CPU, "cuda": DEVICE_CUDA}


def _records_graph(*tensors: Optional[torch.Tensor]) -> bool:
    """Whether autograd would record this call (grad mode on and some input requiring grad)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


class _EagerMaskedConv2d(torch.autograd.Function):
    """torch.ops.fastprune.masked_conv2d with its autograd formula, without the dispatcher; the C ABI
    backends' mask lists and packed kernels are derived once for the forward and the backward."""

    @staticmethod
    def forward(ctx, x, weight, mask, bias, stride, padding, dilation, backend, groups):
        _setup_context(ctx, (x, weight, mask, bias, stride, padding, dilation, backend, groups), None)
        device = _C_ABI_DEVICES.get(backend)
        if device is None:
            ctx.prepared = None
            return _forward(x, weight, mask, bias, stride, padding, dilation, backend, groups)
        ctx.prepared = prepare(x, weight, mask, stride, padding, dilation, device, groups)
        return cpu_forward(
            x, weight, mask, bias, stride, padding, dilation, groups, device=device, prepared=ctx.prepared
        )

    @staticmethod
    @once_differentiable  # as the registered backward op: no second derivatives, a clear error instead
    def backward(ctx, grad_y):
        def backward_impl(grad_y, x, weight, mask, stride, padding, dilation, need, backend, groups):
            if ctx.prepared is None:
                return _BACKWARD[backend](grad_y, x, weight, mask, stride, padding, dilation, need, groups)
            device = _C_ABI_DEVICES[backend]
            return cpu_backward(
                grad_y, x, weight, mask, stride, padding, dilation, need, groups, device=device,
                prepared=ctx.prepared,
            )  # fmt: skip

        return _gradients(ctx, grad_y, backward_impl)


# A tensor wrapped by a torch.func transform, which the op does not support (its kernels need real storage;
# private API: without it no tensor counts as wrapped and torch's own error stands).
_functorch_wrapped = getattr(torch._C._functorch, "is_functorch_wrapped_tensor", lambda t: False)


# ---- public op -----------------------------------------------------------------------------------------


def check_mask(mask: object, weight_shape: Sequence[int], device: torch.device) -> torch.Tensor:
    """Checks a filter mask (O,) or kernel mask (O, C/groups) for a weight (O, C/groups, kh, kw) (groups
    = 1: (O, C)); returns it."""
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask: expected a bool tensor, got {type(mask).__name__}")
    if mask.dtype is not torch.bool:
        raise TypeError(f"mask: expected dtype torch.bool (True = kept), got {mask.dtype}")
    out_ch, in_ch = weight_shape[0], weight_shape[1]
    if tuple(mask.shape) not in ((out_ch,), (out_ch, in_ch)):
        raise ValueError(
            f"mask: expected a filter mask ({out_ch},) or a kernel mask ({out_ch}, {in_ch}) for a weight of "
            f"shape {tuple(weight_shape)}, got shape {tuple(mask.shape)}"
        )
    if mask.device != device:
        raise ValueError(f"mask: expected a tensor on {device} (the weight's device), got {mask.device}")
    return mask


_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
# Why "auto" takes the torch backend (PyTorch's own convolution of W * M) for other dtypes than float32.
_DTYPE_TO_TORCH = {
    torch.float64: "float64 is computed in float64 by the torch backend",
    torch.float16: "float16 is computed in float16 by PyTorch's convolution (the kernels are float32)",
    torch.bfloat16: "bfloat16 is computed in bfloat16 by PyTorch's convolution (the kernels are float32)",
}


def _cpu_slower(mask: torch.Tensor, in_channels: int) -> Optional[str]:
    """Why the cpu kernels would be slower than the dense convolution for this mask (see
    fastprune.backends.MASKED_CONV_MAX_KEPT), from its cached lists (the cpu backend derives them anyway)."""
    if mask.dim() == 1 or torch.compiler.is_compiling():
        return None
    lists = mask_lists(mask, in_channels)
    return masked_conv_auto_fallback(lists.col.numel() / max(1, mask.numel()), lists.kept is not None)


def masked_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    mask: torch.Tensor,
    bias: Optional[torch.Tensor] = None,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    groups: int = 1,
    *,
    backend: str = "auto",
) -> torch.Tensor:
    """conv2d(x, weight * mask, bias, stride, padding, dilation, groups) computing only the kept kernels.

    x (N, C, H, W), weight (O, C/groups, kh, kw), bias (O,) or None, one dtype: float32, float64, float16 or
    bfloat16; mask bool (O,) filter mask or (O, C/groups) kernel mask, True = kept; groups a
    positive int dividing C and O (filter o reads channels G C/groups .. (G + 1) C/groups - 1 of x,
    G = o // (O/groups); groups = C = O: depthwise). Returns (N, O, Ho, Wo) of the input dtype,
    Ho = floor((H + 2 padding - dilation (kh - 1) - 1) / stride) + 1. A pruned filter outputs its bias
    (0 without bias). Differentiable in x, weight and bias; the weight gradient is exactly 0 on masked
    entries. Zero padding only. Backends: "cpu" (C++), "cuda" and "triton" (compute in float32: float16 /
    bfloat16 input is computed in float32 and the result cast back; float64 is refused), "torch"
    (PyTorch's convolution of W * M in the input dtype), or "auto" (cpu for float32 CPU tensors; cuda,
    else triton, for float32 CUDA tensors; torch otherwise: float64, float16 and bfloat16 on every device
    (cuDNN / oneDNN in that dtype), groups > 1, and where this CPU's kernels are slower than the dense
    convolution: kernel masks keeping many kernels, the SIMD-less default capability; see
    fastprune.backends.auto_fallbacks). Under ``torch.autocast`` x, weight and bias are first cast to the
    autocast dtype (bfloat16 on the CPU, float16 on CUDA by default) as for ``nn.Conv2d``; so is
    ``torch.ops.fastprune.masked_conv2d`` (a registered autocast rule). A named native backend runs
    groups > 1 as the ungrouped convolution with a block-diagonal kernel mask (see the module docstring).
    """
    x, weight, bias = autocast_inputs(x, weight, bias)  # under torch.autocast, like nn.Conv2d
    stride_, padding_, dilation_ = check_conv_args(
        x, weight, bias, stride, padding, dilation, groups, grouped=True
    )
    for t, name in ((x, "x"), (weight, "weight")):
        if t.dtype not in _DTYPES:
            raise TypeError(f"{name}: expected float32, float64, float16 or bfloat16, got {t.dtype}")
    mask = check_mask(mask, weight.shape, weight.device)
    name = select_backend(
        backend,
        x.device.type,
        "masked_conv2d",
        cpu_slower=lambda: _cpu_slower(mask, weight.shape[1]),
        auto_torch=_DTYPE_TO_TORCH.get(x.dtype) or (MASKED_CONV_GROUPED if groups > 1 else None),
    )
    if name in ("cpu", "cuda", "triton") and x.dtype is not torch.float32:
        if x.dtype is torch.float64:
            raise TypeError(
                f"x: the {name} backend computes in float32, got {x.dtype}; use backend='torch' (or 'auto')"
            )
        # float16 / bfloat16 asked of a float32 kernel by name: computed in float32, returned as given.
        bias32 = None if bias is None else bias.float()
        with torch.autocast(x.device.type, enabled=False):  # or autocast would cast them back
            y = masked_conv2d(
                x.float(), weight.float(), mask, bias32, stride_, padding_, dilation_, groups, backend=name
            )
        return y.to(x.dtype)
    if not torch.compiler.is_compiling() and any(
        t is not None and _functorch_wrapped(t) for t in (x, weight, bias)
    ):
        raise NotImplementedError(
            "masked_conv2d: torch.func transforms (grad, vmap, jacrev, ...) are not supported; "
            "differentiate with torch.autograd (loss.backward() or torch.autograd.grad)"
        )
    if _plain_eager(x, weight, mask, bias):
        device = _C_ABI_DEVICES.get(name)
        # Nothing for autograd to record (inference, frozen weights): the forward alone, without the
        # Function's bookkeeping (kernel-level 90% forward on ResNet-56 under no_grad: 65-100 us a call less,
        # 9-12%).
        if not _records_graph(x, weight, bias):
            if device is not None:
                return cpu_forward(x, weight, mask, bias, stride_, padding_, dilation_, groups, device=device)
            mask = kernel_mask(mask, weight.shape[1])
            return _forward(x, weight, mask, bias, stride_, padding_, dilation_, name, groups)
        if device is None:  # the C ABI backends take a filter mask as it is (see prepare)
            mask = kernel_mask(mask, weight.shape[1])
        return _EagerMaskedConv2d.apply(x, weight, mask, bias, stride_, padding_, dilation_, name, groups)
    mask = kernel_mask(mask, weight.shape[1])  # the registered op's schema: the (O, C/groups) mask
    return torch.ops.fastprune.masked_conv2d(
        x, weight, mask, bias, stride_, padding_, dilation_, name, groups
    )
