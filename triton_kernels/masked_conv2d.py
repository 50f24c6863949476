"""masked_conv2d: direct convolution over compressed lists of the kept kernels (Triton).

The lists are those of the C ABI (fp_masked_conv2d_*): row_ptr (O + 1,) int32, col (nnz,) int32
(ascending channels per filter) and the packed kept kernels (nnz, kh, kw). Backward-input also takes the
transposed (CSC) lists: per input channel c, the kept kernels p that read it, col_ptr (C + 1,) int32,
csc_kernel (nnz,) int32 (index p into the packed kernels) and csc_filter (nnz,) int32 (the filter of p).

float32 in and out, accumulated in float32. Every output element has exactly one writer and sums its
terms in a fixed order (no atomics): results are bitwise reproducible run to run. Work is proportional
to the number of kept kernels. Offsets of whole planes are int64; one image (C * H * W and O * Ho * Wo)
and the packed kernels (nnz * kh * kw) must hold fewer than 2**31 elements.
"""

from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

BLOCK = 128  # output (forward) / input (backward-input) / reduction (backward-weight) positions per program


@triton.jit
def _forward_kernel(
    x_ptr, kernels_ptr, row_ptr, col_ptr, bias_ptr, y_ptr,
    C, H, W, OC, HO, WO, SH, SW, PH, PW, DH, DW,
    KH: tl.constexpr, KW: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    """One program per (image n, filter o) and block of output positions:
    y[n, o, oh, ow] = bias[o] + sum_{p in row o} sum_{i, j} x[n, col[p], oh*sh - ph + i*dh, ...] K[p, i, j]
    (taps outside the input read zero padding)."""
    pid_no = tl.program_id(0).to(tl.int64)
    n = pid_no // OC
    o = pid_no % OC
    offs = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    live = offs < HO * WO
    oh = offs // WO
    ow = offs % WO
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    start = tl.load(row_ptr + o).to(tl.int64)  # p * (KH * KW) past 2^31 kernels-taps: int64
    end = tl.load(row_ptr + o + 1).to(tl.int64)
    for p in range(start, end):
        c = tl.load(col_ptr + p).to(tl.int64)
        plane = x_ptr + (n * C + c) * H * W
        for i in tl.static_range(KH):
            ih = oh * SH - PH + i * DH
            row_ok = live & (ih >= 0) & (ih < H)
            for j in tl.static_range(KW):
                iw = ow * SW - PW + j * DW
                ok = row_ok & (iw >= 0) & (iw < W)
                xv = tl.load(plane + ih * W + iw, mask=ok, other=0.0)
                wv = tl.load(kernels_ptr + p * (KH * KW) + (i * KW + j))
                acc += xv * wv
    if HAS_BIAS:
        acc += tl.load(bias_ptr + o)
    tl.store(y_ptr + (n * OC + o) * HO * WO + offs, acc, mask=live)


@triton.jit
def _backward_input_kernel(
    grad_y_ptr, kernels_ptr, col_ptr_ptr, csc_kernel_ptr, csc_filter_ptr, grad_x_ptr,
    C, H, W, OC, HO, WO, SH, SW, PH, PW, DH, DW,
    KH: tl.constexpr, KW: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    """One program per (image n, input channel c) and block of input positions:
    grad_x[n, c, ih, iw] = sum over kept kernels p = (o, c) and taps (i, j) with
    ih + ph - i*dh = oh*sh (0 <= oh < Ho; likewise for w) of grad_y[n, o, oh, ow] K[p, i, j]."""
    pid_nc = tl.program_id(0).to(tl.int64)
    n = pid_nc // C
    c = pid_nc % C
    offs = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    live = offs < H * W
    ih = offs // W
    iw = offs % W
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    start = tl.load(col_ptr_ptr + c)
    end = tl.load(col_ptr_ptr + c + 1)
    for q in range(start, end):
        p = tl.load(csc_kernel_ptr + q).to(tl.int64)
        o = tl.load(csc_filter_ptr + q).to(tl.int64)
        plane = grad_y_ptr + (n * OC + o) * HO * WO
        for i in tl.static_range(KH):
            th = ih + PH - i * DH
            th_c = tl.where(th >= 0, th, 0)  # keep // and % on non-negative values
            oh = th_c // SH
            row_ok = live & (th >= 0) & (th_c % SH == 0) & (oh < HO)
            for j in tl.static_range(KW):
                tw = iw + PW - j * DW
                tw_c = tl.where(tw >= 0, tw, 0)
                ow = tw_c // SW
                ok = row_ok & (tw >= 0) & (tw_c % SW == 0) & (ow < WO)
                gy = tl.load(plane + oh * WO + ow, mask=ok, other=0.0)
                wv = tl.load(kernels_ptr + (p * KH + i) * KW + j)
                acc += gy * wv
    tl.store(grad_x_ptr + (n * C + c) * H * W + offs, acc, mask=live)


@triton.jit
def _backward_weight_kernel(
    x_ptr, grad_y_ptr, col_ptr, filter_ptr, grad_kernels_ptr,
    N, C, H, W, OC, HO, WO, SH, SW, PH, PW, DH, DW,
    KH: tl.constexpr, KW: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    """One program per kept kernel p = (o, c) and tap (i, j):
    grad_K[p, i, j] = sum_n sum_{oh, ow} x[n, c, oh*sh - ph + i*dh, ...] grad_y[n, o, oh, ow],
    in a fixed order (images, then position blocks, then one tree sum): deterministic, no atomics."""
    p = tl.program_id(0).to(tl.int64)
    tap = tl.program_id(1)
    i = tap // KW
    j = tap % KW
    c = tl.load(col_ptr + p).to(tl.int64)
    o = tl.load(filter_ptr + p).to(tl.int64)
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    x_plane = x_ptr + c * H * W
    gy_plane = grad_y_ptr + o * HO * WO
    for _ in range(0, N):
        for base in range(0, HO * WO, BLOCK):
            offs = base + tl.arange(0, BLOCK)
            live = offs < HO * WO
            oh = offs // WO
            ow = offs % WO
            ih = oh * SH - PH + i * DH
            iw = ow * SW - PW + j * DW
            ok = live & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
            xv = tl.load(x_plane + ih * W + iw, mask=ok, other=0.0)
            gy = tl.load(gy_plane + offs, mask=live, other=0.0)
            acc += xv * gy
        x_plane += C * H * W  # pointers step image by image: one image's size fits int32
        gy_plane += OC * HO * WO
    tl.store(grad_kernels_ptr + p * KH * KW + tap, tl.sum(acc, axis=0))


def _conv_args(x: torch.Tensor, kh: int, kw: int, o: int, stride, padding, dilation) -> tuple:
    n, c, h, w = x.shape
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    return n, c, h, w, ho, wo


def forward(
    x: torch.Tensor,
    kernels: torch.Tensor,
    row_ptr: torch.Tensor,
    col: torch.Tensor,
    bias: Optional[torch.Tensor],
    out_channels: int,
    stride,
    padding,
    dilation,
) -> torch.Tensor:
    """y (N, OC, Ho, Wo) float32 from contiguous float32 x (N, C, H, W), packed kernels (nnz, kh, kw),
    row_ptr (OC + 1,) and col (nnz,) int32 and bias (OC,) or None, all on x's device."""
    kh, kw = kernels.shape[1], kernels.shape[2]
    n, c, h, w, ho, wo = _conv_args(x, kh, kw, out_channels, stride, padding, dilation)
    y = torch.empty(n, out_channels, ho, wo, dtype=torch.float32, device=x.device)
    if y.numel() == 0:
        return y
    grid = (n * out_channels, triton.cdiv(ho * wo, BLOCK))
    _forward_kernel[grid](
        x, kernels, row_ptr, col, bias if bias is not None else x, y,
        c, h, w, out_channels, ho, wo, *stride, *padding, *dilation,
        KH=kh, KW=kw, HAS_BIAS=bias is not None, BLOCK=BLOCK,
    )  # fmt: skip
    return y


def backward_input(
    grad_y: torch.Tensor,
    kernels: torch.Tensor,
    col_ptr: torch.Tensor,
    csc_kernel: torch.Tensor,
    csc_filter: torch.Tensor,
    x_shape,
    stride,
    padding,
    dilation,
) -> torch.Tensor:
    """grad_x (N, C, H, W) float32 from contiguous grad_y (N, OC, Ho, Wo), the packed kernels and the
    transposed lists col_ptr (C + 1,), csc_kernel (nnz,), csc_filter (nnz,) int32."""
    n, c, h, w = x_shape
    _, o, ho, wo = grad_y.shape
    kh, kw = kernels.shape[1], kernels.shape[2]
    grad_x = torch.empty(n, c, h, w, dtype=torch.float32, device=grad_y.device)
    if grad_x.numel() == 0:
        return grad_x
    grid = (n * c, triton.cdiv(h * w, BLOCK))
    _backward_input_kernel[grid](
        grad_y, kernels, col_ptr, csc_kernel, csc_filter, grad_x,
        c, h, w, o, ho, wo, *stride, *padding, *dilation,
        KH=kh, KW=kw, BLOCK=BLOCK,
    )  # fmt: skip
    return grad_x


def backward_weight(
    x: torch.Tensor,
    grad_y: torch.Tensor,
    col: torch.Tensor,
    filters: torch.Tensor,
    kh: int,
    kw: int,
    stride,
    padding,
    dilation,
) -> torch.Tensor:
    """grad of the packed kernels (nnz, kh, kw) float32 from contiguous x (N, C, H, W), grad_y
    (N, OC, Ho, Wo), col (nnz,) and filters (nnz,) int32 (the channel and filter of each kept kernel)."""
    n, c, h, w = x.shape
    _, o, ho, wo = grad_y.shape
    nnz = col.shape[0]
    grad_kernels = torch.empty(nnz, kh, kw, dtype=torch.float32, device=x.device)
    if nnz == 0:
        return grad_kernels
    _backward_weight_kernel[(nnz, kh * kw)](
        x, grad_y, col, filters, grad_kernels,
        n, c, h, w, o, ho, wo, *stride, *padding, *dilation,
        KH=kh, KW=kw, BLOCK=BLOCK,
    )  # fmt: skip
    return grad_kernels
