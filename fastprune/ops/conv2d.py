"""conv2d: a dense 2-D convolution with a fused bias + ReLU epilogue, for a compacted network's layers.

    y = conv2d(x, W, b, stride, padding, dilation);   y = max(y, 0) when relu

Backends: "cpu" (fastprune's register-blocked direct convolution through the C ABI, float32; the kernel
the masked convolution runs for filter masks, see csrc/cpu/conv2d_blocked.cpp) and "torch" (F.conv2d and
relu; any device and dtype). "auto" takes cpu for float32 CPU tensors and torch otherwise (cuDNN on a
GPU, and CPUs whose capability's kernel is slower: fastprune.backends.auto_fallbacks). The cpu kernel
vectorises over output positions rather than channels, so the odd channel counts of a pruned layer (10,
20, 39) cost what their FLOPs say; oneDNN's channel-blocked kernels round them up.

Registered as torch.ops.fastprune.conv2d with a fake implementation and autograd (the backward is
PyTorch's convolution backward through the ReLU's mask), so it trains, compiles and passes opcheck.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from fastprune._native import native
from fastprune.backends import auto_fallback, select_backend
from fastprune.ops._conv_args import (
    IntPair,
    address,
    check_conv_args,
    empty_output,
    shape_fields,
)
from fastprune.ops._library import LIBRARY, autocast_dtype, autocast_inputs, register, register_autocast


def _torch_forward(x, weight, bias, stride, padding, dilation, relu):
    y = F.conv2d(x, weight, bias, stride, padding, dilation)
    return F.relu(y) if relu else y


def _cpu_forward(x, weight, bias, stride, padding, dilation, relu):
    x, weight = x.contiguous(), weight.contiguous()
    bias = None if bias is None else bias.contiguous()
    y = empty_output(x, weight, stride, padding, dilation)
    native().conv2d(
        shape_fields(x, weight, stride, padding, dilation),
        address(x),
        address(weight),
        address(bias),
        relu,
        address(y),
    )
    return y


_FORWARD = {"cpu": _cpu_forward, "torch": _torch_forward}


def cpu_kernel_ready(*tensors: Optional[torch.Tensor]) -> bool:
    """True when fastprune's CPU kernel may be called directly on these tensors (None entries skipped):
    float32 CPU tensors outside autograd (none requires grad while grad is enabled), TorchScript and
    torch.compile tracing. Layout is the caller's to check or fix."""
    if torch.compiler.is_compiling() or torch.jit.is_scripting() or autocast_dtype("cpu") is not None:
        return False  # under autocast the conv runs in the autocast dtype (conv2d casts), as nn.Conv2d does
    grad = torch.is_grad_enabled()
    return all(
        t.device.type == "cpu" and t.dtype is torch.float32 and not (grad and t.requires_grad)
        for t in tensors
        if t is not None
    )


def cpu_conv_preferred() -> bool:
    """Whether "auto" runs fastprune's CPU conv kernel on this machine (not where the CPU capability's kernel
    is slower than PyTorch's: fastprune.backends.auto_fallback). Callers of the direct entry points below
    follow the same rule as the op."""
    return auto_fallback("conv2d") is None


def conv2d_cpu_inference(
    x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], geometry: list[int], relu: bool
) -> Optional[torch.Tensor]:
    """The cpu kernel called directly, for a layer whose arguments were checked when it was built:
    ``geometry`` = [stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w]. Returns None (the caller
    then uses :func:`conv2d`) unless :func:`cpu_kernel_ready` holds, weight and bias are contiguous and x's
    channels match the weight's (the C ABI cannot see the weight's shape). Skipping the dispatcher and the
    Python checks saves ~40 us a call, which is most of a batch-1 layer's time."""
    if (
        not cpu_kernel_ready(x, weight, bias)
        or x.shape[1] != weight.shape[1]
        or not weight.is_contiguous()
        or (bias is not None and not bias.is_contiguous())
    ):
        return None
    return _cpu_forward(x, weight, bias, geometry[0:2], geometry[2:4], geometry[4:6], relu)


def conv2d_accumulate_cpu(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    out_channels: torch.Tensor,
    y: torch.Tensor,
    geometry: list[int],
    relu: bool,
) -> torch.Tensor:
    """``y[:, out_channels] = act(y[:, out_channels] + conv2d(x, weight) + bias)`` in place on the CPU
    (C ABI fp_conv2d_accumulate; act = ReLU when ``relu``), ``geometry`` as in :func:`conv2d_cpu_inference`.
    For callers that checked :func:`cpu_kernel_ready`: x is made contiguous; weight, bias, out_channels
    (int64) and y must be contiguous, y (N, width, Ho, Wo). Returns y."""
    x = x.contiguous()
    native().conv2d_accumulate(
        shape_fields(x, weight, geometry[0:2], geometry[2:4], geometry[4:6]), address(x), address(weight),
        address(bias), address(out_channels), y.shape[1], relu, address(y),
    )  # fmt: skip
    return y


def _forward(x, weight, bias, stride, padding, dilation, relu, backend):
    return _FORWARD[backend](x, weight, bias, stride, padding, dilation, relu)


def _forward_fake(x, weight, bias, stride, padding, dilation, relu, backend):
    return empty_output(x, weight, stride, padding, dilation)


register(
    "conv2d",
    "(Tensor x, Tensor weight, Tensor? bias, int[2] stride, int[2] padding, int[2] dilation, bool relu, "
    "str backend) -> Tensor",
    _forward,
    _forward_fake,
)


def _setup_context(ctx, inputs, output):
    x, weight, bias, stride, padding, dilation, relu, _ = inputs
    ctx.save_for_backward(x, weight, output if relu else None)
    ctx.conv = (stride, padding, dilation, relu, bias is not None)


def _autograd_backward(ctx, grad_y):
    x, weight, y = ctx.saved_tensors
    stride, padding, dilation, relu, has_bias = ctx.conv
    if relu:
        grad_y = torch.where(y > 0, grad_y, torch.zeros((), dtype=grad_y.dtype, device=grad_y.device))
    need = ctx.needs_input_grad
    grad_x, grad_w, grad_b = torch.ops.aten.convolution_backward(
        grad_y, x, weight, [weight.shape[0]] if has_bias else None, stride, padding, dilation, False,
        [0, 0], 1, [need[0], need[1], has_bias and need[2]],
    )  # fmt: skip
    return grad_x, grad_w, grad_b, None, None, None, None, None


torch.library.register_autograd(
    "fastprune::conv2d", _autograd_backward, setup_context=_setup_context, lib=LIBRARY
)
register_autocast("conv2d")


def conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor] = None,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    *,
    relu: bool = False,
    backend: str = "auto",
) -> torch.Tensor:
    """F.conv2d(x, weight, bias, stride, padding, dilation), then ReLU when ``relu``.

    x (N, C, H, W), weight (O, C, kh, kw), bias (O,) or None, same dtype and device (any floating dtype).
    Returns (N, O, Ho, Wo) of that dtype, Ho = floor((H + 2 padding - dilation (kh - 1) - 1) / stride) + 1.
    groups = 1, zero padding. Differentiable. Backends: "cpu" (float32 CPU tensors), "torch" (F.conv2d in
    the input dtype), or "auto" (cpu for float32 on the CPU, torch otherwise). Under ``torch.autocast``
    the inputs are cast to the autocast dtype first (bfloat16 on the CPU, float16 on CUDA by default),
    as for ``nn.Conv2d``; so is ``torch.ops.fastprune.conv2d`` (a registered autocast rule).
    """
    x, weight, bias = autocast_inputs(x, weight, bias)  # under torch.autocast, like nn.Conv2d
    stride_, padding_, dilation_ = check_conv_args(x, weight, bias, stride, padding, dilation)
    requested = "torch" if backend == "auto" and x.dtype is not torch.float32 else backend
    name = select_backend(requested, x.device.type, "conv2d")
    if name == "cpu" and x.dtype is not torch.float32:
        raise TypeError(f"x: the cpu backend computes in float32, got {x.dtype}; use backend='torch'")
    return torch.ops.fastprune.conv2d(x, weight, bias, stride_, padding_, dilation_, bool(relu), name)
