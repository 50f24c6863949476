"""masked_conv2d's C ABI backends: "cpu" (csrc/cpu/masked_conv2d*.cpp) and "cuda"
(csrc/cuda/masked_conv2d.cu), the same entry points fp_masked_conv2d_* with FP_DEVICE_CPU or
FP_DEVICE_CUDA, over the compressed lists of fastprune.ops._mask_lists; filter-level masks through oneDNN
(cpu, where dense_route says it is faster) or cuDNN (cuda, always) on the gathered filters. The op
itself (checks, dispatch, autograd): fastprune.ops.masked_conv2d.

The kernels know groups = 1 only: a grouped convolution (groups > 1, weight (O, C/groups, kh, kw)) runs as
the ungrouped one whose kernel mask is block diagonal (fastprune.ops._mask_lists.block_diagonal), in one
call, with work proportional to the kept kernels; the dense filter route is never taken for it.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from fastprune._native import native
from fastprune.ops._conv_args import address, empty_output, output_size, shape_fields
from fastprune.ops._mask_lists import MaskLists, mask_lists, packed_kernels, unpacked_kernels

DEVICE_CPU = 0  # fp_device
DEVICE_CUDA = 1


# ---- cpu backend: the C ABI --------------------------------------------------------------------------


# A filter-level mask (each filter keeps all its kernels or none) leaves a dense sub-problem: the kept
# filters against every input channel. The C++ kernels run it register-blocked over filters (see
# csrc/cpu/conv2d_blocked.cpp; 3x3 stride-1 layers by Winograd F(2x2, 3x3) where their per-image buffers
# fit L2, csrc/cpu/conv2d_winograd.cpp), vectorised over output positions, so 19 kept filters cost 19;
# oneDNN vectorises over channels, 16 at a time, so 19 cost 32. Measured (2-core Zen 4, fwd+bwd, batch
# 64/16, interleaved with the dense conv): on ResNet-50 layer2/3 (128/256 channels at 28x28/14x14, too
# large for the Winograd buffers) oneDNN on the gathered filters is faster when the kept count fills its
# blocks (50% pruning: 1.80 vs 1.66x on layer2, 1.84 vs 1.15x on layer3), the blocked kernel when rounding
# up idles more (70% of 64 filters, 19 kept: 1.76 vs 1.4x); on ResNet-56 stage 3 (64 channels at 8x8) the
# C++ kernels with Winograd match it at 50 and 70% and beat it at 30% (1.22-1.25 vs 1.10x). So the cpu
# backend hands oneDNN k x k convs (k > 1) with at least DENSE_MIN_CHANNELS inputs, fewer than
# DENSE_MAX_POSITIONS output positions and at most 1/8 of oneDNN's filter slots idle; everything else takes
# the C++ kernels.
DENSE_MIN_CHANNELS = 128
DENSE_MAX_POSITIONS = 1024


def dense_route(lists: MaskLists, weight: torch.Tensor, out_positions: int) -> bool:
    """Whether oneDNN on the gathered filters is the faster route (see above)."""
    if lists.kept is None:
        return False
    kept = lists.kept.numel()
    slots = -(-kept // 16) * 16  # oneDNN's filter blocks
    return (
        weight.shape[1] >= DENSE_MIN_CHANNELS
        and weight.shape[2] * weight.shape[3] > 1
        and out_positions < DENSE_MAX_POSITIONS
        and 8 * slots <= 9 * kept
    )


def _dense_filters_forward(x, weight, kernels, lists, bias, stride, padding, dilation):
    """kernels: the kept filters' weights (kept, C, kh, kw)."""
    y = empty_output(x, weight, stride, padding, dilation)
    if lists.kept.numel():
        y.index_copy_(1, lists.kept, F.conv2d(x, kernels, None, stride, padding, dilation))
    if lists.pruned.numel():
        y.index_fill_(1, lists.pruned, 0.0)
    return y if bias is None else y.add_(bias.view(1, -1, 1, 1))


def _dense_filters_backward(grad_y, x, weight, kernels, lists, stride, padding, dilation, need):
    kept = lists.kept
    grad_w = weight.new_zeros(weight.shape) if need[1] else None
    if not kept.numel():
        return (x.new_zeros(x.shape) if need[0] else None), grad_w
    grad_x, gw, _ = torch.ops.aten.convolution_backward(
        grad_y.index_select(1, kept), x, kernels, None, list(stride), list(padding), list(dilation), False,
        [0, 0], 1, [bool(need[0]), bool(need[1]), False],
    )  # fmt: skip
    if need[1]:
        grad_w.index_copy_(0, kept, gw)
    return (grad_x if need[0] else None), grad_w


class Prepared(NamedTuple):
    """What the C ABI backends derive from a weight and mask: an eager call derives it once for its
    forward and backward (see _EagerMaskedConv2d), the registered op at each pass."""

    lists: MaskLists
    dense: bool  # oneDNN on the gathered filters (see dense_route)
    kernels: torch.Tensor  # the kept kernels, as packed_kernels gives them


def _run_pass(pass_, shape, a, b, row_ptr, col, kernels, device, out: torch.Tensor) -> None:
    """One fp_masked_conv2d_* pass writing `out`. A CUDA pass runs with out's device current and on its
    current stream (as PyTorch's own ops do: ordered with the caller's work, capturable in a CUDA graph)."""
    if device != DEVICE_CUDA:
        native().masked_conv2d(pass_, shape, a, b, row_ptr, col, kernels, device, 0, address(out))
        return
    with torch.cuda.device(out.device):
        stream = torch.cuda.current_stream().cuda_stream
        native().masked_conv2d(pass_, shape, a, b, row_ptr, col, kernels, device, stream, address(out))


def prepare(x, weight, mask, stride, padding, dilation, device, groups=1) -> Prepared:
    """weight (O, C/groups, kh, kw); mask: a filter mask (O,) or kernel mask (O, C/groups)."""
    lists = mask_lists(mask, weight.shape[1], groups)
    ho, wo = output_size(x.shape[2:], weight.shape[2:], stride, padding, dilation)
    # On CUDA a filter-level mask always takes cuDNN on the gathered filters: fewer filters are fewer FLOPs
    # for cuDNN, and the CUDA C++ kernel is untiled (one thread per output; issue 19). Not yet timed on a GPU.
    dense = dense_route(lists, weight, ho * wo) if device == DEVICE_CPU else lists.kept is not None
    return Prepared(lists, dense, packed_kernels(weight, lists))


def cpu_forward(x, weight, mask, bias, stride, padding, dilation, groups=1, device=DEVICE_CPU, prepared=None):
    lists, dense, kernels = prepared or prepare(x, weight, mask, stride, padding, dilation, device, groups)
    if dense:
        return _dense_filters_forward(x, weight, kernels, lists, bias, stride, padding, dilation)
    x = x.contiguous()
    bias = None if bias is None else bias.contiguous()
    y = empty_output(x, weight, stride, padding, dilation)
    _run_pass(
        "forward",
        shape_fields(x, weight, stride, padding, dilation),
        address(x),
        address(bias),
        lists.row_ptr.data_ptr(),
        address(lists.col),
        address(kernels),
        device,
        y,
    )
    return y


def cpu_backward(
    grad_y, x, weight, mask, stride, padding, dilation, need, groups=1, device=DEVICE_CPU, prepared=None
):
    lists, dense, kernels = prepared or prepare(x, weight, mask, stride, padding, dilation, device, groups)
    if dense:
        return _dense_filters_backward(grad_y, x, weight, kernels, lists, stride, padding, dilation, need)
    row_ptr, col = lists.row_ptr, lists.col
    shape = shape_fields(x, weight, stride, padding, dilation)
    # Held in locals for the native calls: address(t.contiguous()) of a temporary would be freed before the
    # kernel reads it (found by fuzzing: garbage weight gradients for channels_last x).
    x, grad_y = x.contiguous(), grad_y.contiguous()
    grad_x = grad_w = None
    if need[0]:
        grad_x = x.new_empty(x.shape)
        _run_pass(
            "backward_input",
            shape,
            address(grad_y),
            0,
            row_ptr.data_ptr(),
            address(col),
            address(kernels),
            device,
            grad_x,
        )
    if need[1]:
        grad_kernels = kernels.new_empty(kernels.shape)
        _run_pass(
            "backward_weight",
            shape,
            address(x),
            address(grad_y),
            row_ptr.data_ptr(),
            address(col),
            0,
            device,
            grad_kernels,
        )
        grad_w = unpacked_kernels(grad_kernels, weight, lists)
    return grad_x, grad_w


# ---- cuda backend: the same C ABI entry points with FP_DEVICE_CUDA (csrc/cuda/masked_conv2d.cu) ---------


def cuda_forward(x, weight, mask, bias, stride, padding, dilation, groups=1):
    return cpu_forward(x, weight, mask, bias, stride, padding, dilation, groups, device=DEVICE_CUDA)


def cuda_backward(grad_y, x, weight, mask, stride, padding, dilation, need, groups=1):
    return cpu_backward(grad_y, x, weight, mask, stride, padding, dilation, need, groups, device=DEVICE_CUDA)
