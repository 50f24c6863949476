"""fastprune.ops.conv2d (dense convolution, fused bias + ReLU) against F.conv2d in float64; its autograd,
opcheck, errors and native binding; the conv2d_cpu_inference fast path; masked_conv2d's filter-uniform
route (filter and channel masks run by the same register-blocked kernel).

Tolerance: the float32 result against the float64 reference computed from the same float32 inputs,
max |got - ref| <= RTOL * max |ref| (RTOL = 1e-4, conftest). The cpu kernel's register block is 6 filters
x 64 output positions: the cases below use filter counts that are not multiples of 6 and output planes
that are not multiples of 16 and span several 64-position tiles."""

from __future__ import annotations

import ctypes
import os
import re

import pytest
import torch
import torch.nn.functional as F
from conftest import RTOL

import fastprune
from fastprune._native import native
from fastprune.backends import BackendError, auto_fallback
from fastprune.ops import conv2d, masked_conv2d
from fastprune.ops.conv2d import conv2d_cpu_inference

# (N, C, H, W, O, (kh, kw), stride, padding, dilation)
CASES = [
    (2, 3, 9, 11, 5, (3, 3), 1, 1, 1),
    (1, 1, 7, 9, 7, (1, 1), 1, 0, 1),  # C = 1, 1x1, odd 7x9
    (3, 10, 7, 9, 13, (5, 5), 1, 2, 1),
    (2, 17, 13, 13, 4, (7, 7), 2, 3, 1),
    (1, 39, 12, 10, 20, (3, 3), (1, 2), (2, 1), 1),  # asymmetric stride and padding
    (2, 64, 9, 9, 6, (3, 3), 2, 1, 2),
    (1, 3, 1, 1, 5, (3, 3), 1, 1, 1),  # 1x1 input, padding: only the centre tap reads it
    (3, 3, 15, 17, 11, (3, 3), 1, 1, 1),  # Ho * Wo = 255: four tiles, the last one partial
    (1, 10, 20, 21, 7, (3, 5), 1, (1, 2), (2, 1)),  # non-square kernel, asymmetric dilation
    (2, 5, 11, 6, 9, (1, 1), 2, 0, 1),
    (1, 4, 14, 13, 8, (3, 3), 3, 1, 2),  # stride 3, dilation 2: taps in several row phases
    (1, 2, 23, 5, 6, (7, 1), (2, 1), (3, 0), 1),
    (2, 3, 8, 8, 1, (3, 3), 1, 0, 2),  # one filter, dilation 2 without padding
    # wide rows (pitched staging): padding beyond "same" (no padding column shared between rows) and
    # dilation 2 with padding 1 (one shared)
    (1, 3, 6, 40, 4, (3, 3), 1, 2, 1),
    (2, 3, 5, 60, 4, (3, 3), 1, 1, 2),
    # output rows 1 wide: a staged vector of 16 positions takes its inputs from 16 rows, too far apart for
    # one window of the vector gather (its per-index path)
    (2, 4, 40, 3, 5, (3, 3), 1, 0, 1),
    # Winograd F(2x2, 3x3) (3x3, stride 1, >= 8 channels, >= 4 filters, >= 15 output columns): odd output
    # sizes (partial tiles), no padding (one output row), a one-row input, more than 16 tile columns
    (2, 8, 7, 19, 4, (3, 3), 1, 1, 1),
    (1, 9, 3, 17, 6, (3, 3), 1, 0, 1),
    (2, 12, 1, 16, 5, (3, 3), 1, 1, 1),
    (1, 8, 6, 40, 4, (3, 3), 1, 2, 1),
    (2, 16, 17, 35, 7, (3, 3), 1, 1, 1),
    # ... on narrow maps (at most 4 tiles a row): 16 tiles of several rows per vector, their inputs up to
    # 64 floats apart (the gather's wide windows); 8x8, and 5x7 with partial tiles
    (2, 8, 8, 8, 6, (3, 3), 1, 1, 1),
    (1, 10, 5, 7, 4, (3, 3), 1, 1, 1),
]


def _inputs(case: tuple, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    n, c, h, w, o, (kh, kw) = case[:6]
    gen = torch.Generator().manual_seed(seed + sum(case[:5]) + kh * 10 + kw)
    return (
        torch.randn(n, c, h, w, generator=gen),
        torch.randn(o, c, kh, kw, generator=gen),
        torch.randn(o, generator=gen),
    )


def _reference(x, w, b, stride, padding, dilation, relu: bool = False) -> torch.Tensor:
    """float64 F.conv2d (+ ReLU) on float64 copies of the float32 inputs."""
    y = F.conv2d(x.double(), w.double(), None if b is None else b.double(), stride, padding, dilation)
    return y.clamp_min(0) if relu else y


def _assert_matches(got: torch.Tensor, ref: torch.Tensor, what: str = "", rtol: float = RTOL) -> None:
    assert got.shape == ref.shape, f"{what}: shape {tuple(got.shape)} != {tuple(ref.shape)}"
    err = float((got.detach().double() - ref).abs().max()) if ref.numel() else 0.0
    scale = float(ref.abs().max()) if ref.numel() else 0.0
    assert err <= rtol * scale, f"{what}: max |got - ref| = {err:.3e} > {rtol} * {scale:.3e}"


@pytest.mark.parametrize("backend", ["cpu", "torch"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[:5])) + f"-k{c[5][0]}{c[5][1]}")
def test_matches_float64_reference(backend: str, case: tuple) -> None:
    x, w, b = _inputs(case)
    stride, padding, dilation = case[6:]
    for bias in (None, b):
        plain = conv2d(x, w, bias, stride, padding, dilation, backend=backend)
        fused = conv2d(x, w, bias, stride, padding, dilation, relu=True, backend=backend)
        ref = _reference(x, w, bias, stride, padding, dilation)
        assert plain.dtype == torch.float32 and fused.dtype == torch.float32
        _assert_matches(plain, ref, f"{backend} bias={bias is not None}")
        _assert_matches(fused, ref.clamp_min(0), f"{backend} relu bias={bias is not None}")
        assert bool((ref < 0).any()), "the case must have negative pre-activations"
        # The epilogue is max(y, 0) on the same sums: negative pre-activations give exactly 0.0.
        assert torch.equal(fused, plain.clamp_min(0))
        assert torch.all(fused[plain < 0] == 0.0)
    if backend == "cpu":  # auto picks the cpu kernel for float32 CPU tensors, unless this CPU's are slower
        auto = conv2d(x, w, b, stride, padding, dilation, relu=True)
        expected = "torch" if auto_fallback("conv2d") else "cpu"
        assert torch.equal(auto, conv2d(x, w, b, stride, padding, dilation, relu=True, backend=expected))


@pytest.mark.parametrize("backend", ["cpu", "torch"])
def test_empty_batch_gives_empty_output(backend: str) -> None:
    x, w, b = torch.randn(0, 3, 7, 5), torch.randn(4, 3, 3, 3), torch.randn(4)
    for relu in (False, True):
        y = conv2d(x, w, b, stride=(2, 1), padding=1, relu=relu, backend=backend)
        assert y.shape == (0, 4, 4, 5) and y.dtype == torch.float32


def test_float64_auto_uses_torch_and_matches_reference() -> None:
    x, w, b = (t.double() for t in _inputs(CASES[0]))
    y = conv2d(x, w, b, 1, 1, relu=True)
    assert y.dtype == torch.float64
    torch.testing.assert_close(y, _reference(x, w, b, 1, 1, 1, relu=True), rtol=1e-12, atol=1e-12)


# Batch 1 with n_filters * Ho * Wo * C * kh * kw >= 2^20 (10 * 1024 * 144): the shared-staging path whose
# tiles are split across threads; batch 3 takes whole images per thread.
LARGE = (16, 32, 32, 10, 3)


def _large_inputs(batch: int, seed: int = 11):
    c, h, w, o, k = LARGE
    gen = torch.Generator().manual_seed(seed)
    return (
        torch.randn(batch, c, h, w, generator=gen),
        torch.randn(o, c, k, k, generator=gen),
        torch.randn(o, generator=gen),
    )


@pytest.mark.parametrize("batch", [1, 3])
def test_large_layer_matches_reference(batch: int) -> None:
    x, w, b = _large_inputs(batch)
    y = conv2d(x, w, b, 1, 1, relu=True, backend="cpu")
    _assert_matches(y, _reference(x, w, b, 1, 1, 1, relu=True), f"batch {batch}")
    if batch > 1:  # an image of the batch comes out as the batch-1 call (the other path) computes it
        assert torch.equal(conv2d(x[1:2], w, b, 1, 1, relu=True, backend="cpu"), y[1:2])


def _thread_outputs() -> list[torch.Tensor]:
    """Outputs of every parallel split: batch 1 large (tiles across threads), batch 1 small (one thread),
    batch 3 (images across threads), the masked convolution's filter-uniform route at batch 1 and 3 (and its
    weight gradient)."""
    parts = []
    for batch in (1, 3):
        x, w, b = _large_inputs(batch)
        parts.append(conv2d(x, w, b, 1, 1, relu=True, backend="cpu"))
        parts.append(conv2d(x, w, None, 2, 0, backend="cpu"))
        wide = torch.cat([w, w.flip(0)])  # 20 filters, 10 kept: still >= 2^20 at batch 1
        keep = torch.arange(20) % 2 == 0
        parts.append(masked_conv2d(x, wide, keep, torch.cat([b, b]), 1, 1, backend="cpu"))
        channels = keep[:, None] & (torch.arange(16) % 3 != 0)[None, :]
        parts.append(masked_conv2d(x, wide, channels, None, 1, 1, backend="cpu"))
        # the weight gradient of the filter-uniform route (Winograd: images in fixed groups)
        wg = wide.clone().requires_grad_()
        y = masked_conv2d(x, wg, keep, None, 1, 1, backend="cpu")
        parts.append(
            torch.autograd.grad(y, wg, torch.randn(y.shape, generator=torch.Generator().manual_seed(3)))[0]
        )
    for case in CASES[2:5]:
        x, w, b = _inputs(case)
        parts.append(conv2d(x[:1], w, b, *case[6:], relu=True, backend="cpu"))
    return [p.reshape(-1) for p in parts]


def test_cpu_bitwise_identical_across_thread_counts() -> None:
    threads = torch.get_num_threads()
    results = []
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            # torch and libfastprune share one OpenMP runtime: the setting reaches the kernel.
            assert native().build_info()["openmp_max_threads"] == count
            results.append(_thread_outputs())
    finally:
        torch.set_num_threads(threads)
    assert len(results[0]) == len(results[1])
    for i, (one, two) in enumerate(zip(*results)):
        assert torch.equal(one, two), f"output {i} differs between 1 and 2 threads"


# ---- autograd and opcheck -----------------------------------------------------------------------------


def test_gradcheck_torch_backend_float64() -> None:
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(1, 2, 5, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, generator=gen, requires_grad=True)
    for relu in (False, True):

        def conv(x, w, b, relu=relu):
            return conv2d(x, w, b, stride=(2, 1), padding=1, dilation=(1, 2), relu=relu, backend="torch")

        assert torch.autograd.gradcheck(conv, (x, w, b))


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("with_bias", [False, True])
def test_cpu_gradients_match_float64_reference(relu: bool, with_bias: bool) -> None:
    gen = torch.Generator().manual_seed(6 + 2 * relu + with_bias)
    x, w, b = torch.randn(2, 5, 9, 8, generator=gen), torch.randn(7, 5, 3, 3, generator=gen), torch.randn(7)
    geometry = ((2, 1), (1, 2), (1, 2))
    xg, wg, bg = (t.clone().requires_grad_() for t in (x, w, b))
    y = conv2d(xg, wg, bg if with_bias else None, *geometry, relu=relu, backend="cpu")
    grad_y = torch.randn(y.shape, generator=gen)
    y.backward(grad_y)
    x64, w64, b64 = (t.double().requires_grad_() for t in (x, w, b))
    ref = _reference(x64, w64, b64 if with_bias else None, *geometry, relu=relu)
    ref.backward(grad_y.double())
    _assert_matches(y, ref.detach(), "y")
    _assert_matches(xg.grad, x64.grad, "grad x")
    _assert_matches(wg.grad, w64.grad, "grad w")
    if with_bias:
        _assert_matches(bg.grad, b64.grad, "grad b")
    else:
        assert bg.grad is None
    # Only x needs a gradient: the same grad x.
    xg2 = x.clone().requires_grad_()
    conv2d(xg2, w, b if with_bias else None, *geometry, relu=relu, backend="cpu").backward(grad_y)
    assert torch.equal(xg2.grad, xg.grad)


@pytest.mark.parametrize("backend", ["cpu", "torch"])
def test_opcheck(backend: str) -> None:
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(2, 3, 7, 6, generator=gen).requires_grad_()
    w = torch.randn(5, 3, 3, 3, generator=gen).requires_grad_()
    b = torch.randn(5, generator=gen).requires_grad_()
    for bias, relu in ((b, True), (None, False)):
        args = (x, w, bias, [2, 1], [1, 0], [1, 2], relu, backend)
        torch.library.opcheck(torch.ops.fastprune.conv2d.default, args)


# ---- errors -------------------------------------------------------------------------------------------


def test_bad_input_errors() -> None:
    x, w = torch.randn(2, 3, 8, 8), torch.randn(4, 3, 3, 3)
    with pytest.raises(ValueError, match=r"x: expected a 4-D tensor \(N, C, H, W\), got shape \(3, 8, 8\)"):
        conv2d(x[0], w)
    with pytest.raises(ValueError, match=r"weight: expected a 4-D tensor \(O, C, kh, kw\)"):
        conv2d(x, w[0])
    with pytest.raises(TypeError, match=r"x: expected a tensor, got list"):
        conv2d([1.0], w)
    with pytest.raises(ValueError, match=r"weight: expected 3 input channels like x \(groups = 1 only\)"):
        conv2d(x, torch.randn(4, 2, 3, 3))
    with pytest.raises(ValueError, match=r"bias: expected \(4,\) torch.float32 on cpu, got \(5,\)"):
        conv2d(x, w, torch.randn(5))
    with pytest.raises(ValueError, match=r"bias: expected a 1-D tensor \(O,\)"):
        conv2d(x, w, torch.randn(4, 1))
    with pytest.raises(ValueError, match=r"bias: expected \(4,\) torch.float32 .* torch.float64"):
        conv2d(x, w, torch.randn(4, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"weight: expected torch.float32 on cpu like x, got torch.float64"):
        conv2d(x, w.double())
    with pytest.raises(TypeError, match=r"x: the cpu backend computes in float32, got torch.float64"):
        conv2d(x.double(), w.double(), backend="cpu")
    with pytest.raises(ValueError, match=r"stride: expected values >= 1, got 0"):
        conv2d(x, w, stride=0)
    with pytest.raises(ValueError, match=r"stride: expected an int or a pair of ints, got \(1, 2, 3\)"):
        conv2d(x, w, stride=(1, 2, 3))
    with pytest.raises(ValueError, match=r"padding: expected values >= 0, got \(0, -1\)"):
        conv2d(x, w, padding=(0, -1))
    with pytest.raises(ValueError, match=r"dilation: expected values >= 1, got 0"):
        conv2d(x, w, dilation=0)
    with pytest.raises(ValueError, match=r"x: output size \(-4, -4\) must be positive"):
        conv2d(x, torch.randn(4, 3, 5, 5), dilation=3)
    with pytest.raises(ValueError, match=r"x: output size \(0, 1\) must be positive"):
        conv2d(torch.randn(1, 3, 2, 3), w)
    with pytest.raises(BackendError, match=r"cannot run conv2d on cpu tensors"):
        conv2d(x, w, backend="cuda")


def test_native_binding_errors_name_the_argument() -> None:
    x, w, y = torch.randn(1, 1, 4, 4), torch.randn(2, 1, 3, 3), torch.full((1, 2, 2, 2), 7.0)
    good = [1, 1, 4, 4, 2, 3, 3, 1, 1, 0, 0, 1, 1]
    conv = native().conv2d
    conv(good, x.data_ptr(), w.data_ptr(), 0, False, y.data_ptr())
    torch.testing.assert_close(y, F.conv2d(x, w), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"x: expected N \* C \* H \* W floats, got NULL"):
        conv(good, 0, w.data_ptr(), 0, False, y.data_ptr())
    with pytest.raises(ValueError, match=r"weight: expected O \* C \* kh \* kw floats, got NULL"):
        conv(good, x.data_ptr(), 0, 0, False, y.data_ptr())
    with pytest.raises(ValueError, match=r"y: expected an output buffer"):
        conv(good, x.data_ptr(), w.data_ptr(), 0, False, 0)
    bad_fields = {
        1: (0, r"shape->in_channels: expected 1 <= value <= 2\^31-1, got 0"),
        8: (0, r"shape->stride_w: expected 1 <= value"),
        9: (-1, r"shape->pad_h: expected 0 <= value"),
        12: (0, r"shape->dilation_w: expected 1 <= value"),
        0: (-1, r"shape->batch: expected >= 0, got -1"),
    }
    for index, (value, message) in bad_fields.items():
        fields = list(good)
        fields[index] = value
        with pytest.raises(ValueError, match=message):
            conv(fields, x.data_ptr(), w.data_ptr(), 0, False, y.data_ptr())
    with pytest.raises(ValueError, match=r"shape: output size .* must be positive"):
        conv([1, 1, 4, 4, 2, 5, 5, 1, 1, 0, 0, 1, 1], x.data_ptr(), w.data_ptr(), 0, False, y.data_ptr())
    with pytest.raises(ValueError, match=r"shape: expected the 13 fields of fp_conv2d_shape"):
        conv(good[:12], x.data_ptr(), w.data_ptr(), 0, False, y.data_ptr())


class _Exec(ctypes.Structure):
    _fields_ = [("device", ctypes.c_int), ("stream", ctypes.c_void_p)]


class _Shape(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int64) for name in "n c h w o kh kw sh sw ph pw dh dw".split()]


def test_c_abi_status_codes() -> None:
    lib_dir = os.path.join(os.path.dirname(fastprune.__file__), "lib")
    lib = ctypes.CDLL(
        os.path.join(lib_dir, next(f for f in os.listdir(lib_dir) if f.startswith("libfastprune")))
    )
    lib.fp_last_error.restype = ctypes.c_char_p
    forward = lib.fp_conv2d_forward
    forward.restype = ctypes.c_int
    x, w, b = (ctypes.c_float * 9)(*[1.0] * 9), (ctypes.c_float * 9)(*[1.0] * 9), (ctypes.c_float * 1)(-5.0)
    y = (ctypes.c_float * 9)(*[42.0] * 9)
    shape = ctypes.byref(_Shape(1, 1, 3, 3, 1, 3, 3, 1, 1, 1, 1, 1, 1))

    def call(device=0, shape_ptr=shape, xp=x, relu=1):
        status = forward(shape_ptr, xp, w, b, relu, _Exec(device, None), y)
        return status, lib.fp_last_error().decode()

    # CUDA exec: unavailable (no device, no CUDA build, or a CPU-only op), and y untouched.
    status, message = call(device=1)
    assert status == 3 and message.startswith("exec.device:"), (status, message)
    assert list(y) == [42.0] * 9
    assert call(device=7) == (1, "exec.device: expected FP_DEVICE_CPU or FP_DEVICE_CUDA, got 7")
    assert call(shape_ptr=None) == (1, "shape: expected a fp_conv2d_shape pointer, got NULL")
    assert call(xp=None) == (1, "x: expected N * C * H * W floats, got NULL")
    assert list(y) == [42.0] * 9
    # Ones through a 3x3 kernel of ones, padding 1: corners 4, edges 6, centre 9; bias -5, ReLU.
    assert call() == (0, "")
    assert list(y) == [0.0, 1.0, 0.0, 1.0, 4.0, 1.0, 0.0, 1.0, 0.0]
    assert call(relu=0) == (0, "")
    assert list(y) == [-1.0, 1.0, -1.0, 1.0, 4.0, 1.0, -1.0, 1.0, -1.0]


# ---- conv2d_cpu_inference -----------------------------------------------------------------------------


def test_cpu_inference_declines_what_it_cannot_run() -> None:
    x, w, b = _inputs(CASES[0])
    geometry = [1, 1, 1, 1, 1, 1]
    assert conv2d_cpu_inference(x.double(), w, b, geometry, False) is None
    assert conv2d_cpu_inference(x, w[:, :2].contiguous(), b, geometry, False) is None  # channels differ
    assert conv2d_cpu_inference(x[:, :2], w, b, geometry, False) is None
    w_cl = w.to(memory_format=torch.channels_last)
    assert not w_cl.is_contiguous()
    assert conv2d_cpu_inference(x, w_cl, b, geometry, False) is None
    strided_bias = torch.randn(2 * b.shape[0])[::2]
    assert conv2d_cpu_inference(x, w, strided_bias, geometry, False) is None
    assert conv2d_cpu_inference(x.to("meta"), w, b, geometry, False) is None
    x_grad, w_grad = x.clone().requires_grad_(), w.clone().requires_grad_()
    with torch.enable_grad():
        assert conv2d_cpu_inference(x_grad, w, b, geometry, True) is None
        assert conv2d_cpu_inference(x, w_grad, b, geometry, True) is None
    with torch.no_grad():  # outside autograd the same arguments run
        y = conv2d_cpu_inference(x_grad, w, b, geometry, True)
    assert y is not None and not y.requires_grad
    _assert_matches(y, _reference(x, w, b, 1, 1, 1, relu=True))


@pytest.mark.parametrize("case", [CASES[4], CASES[8], CASES[10], CASES[7]], ids=lambda c: str(c[:5]))
def test_cpu_inference_matches_reference(case: tuple) -> None:
    x, w, b = _inputs(case, seed=3)
    stride, padding, dilation = (v if isinstance(v, tuple) else (v, v) for v in case[6:])
    geometry = [*stride, *padding, *dilation]
    for relu in (False, True):
        for bias in (b, None):
            ref = _reference(x, w, bias, stride, padding, dilation, relu)
            expected = conv2d(x, w, bias, stride, padding, dilation, relu=relu, backend="cpu")
            for layout in (torch.contiguous_format, torch.channels_last):
                y = conv2d_cpu_inference(x.to(memory_format=layout), w, bias, geometry, relu)
                assert y is not None and y.is_contiguous()
                _assert_matches(y, ref, f"relu={relu} layout={layout}")
                assert torch.equal(y, expected)  # the same kernel as the op


# ---- masked_conv2d: filter-uniform masks on narrow layers take the blocked kernel ------------------------

# (N, C, H, W, O, k, stride, padding, dilation): C < 128 (DENSE_MIN_CHANNELS), or 1x1 with C >= 128, so the
# cpu backend's C++ kernel routes filter-uniform masks to the register-blocked kernel.
MASKED_CASES = [
    (2, 3, 9, 11, 13, 3, 1, 1, 1),
    (1, 10, 15, 17, 8, 3, 2, 1, 2),
    (3, 39, 9, 8, 7, 5, 1, 2, 1),
    (2, 17, 6, 7, 14, 1, 1, 0, 1),
    (2, 64, 5, 9, 9, 1, 2, 0, 1),
]


def _uniform_masks(o: int, c: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    filters = torch.rand(o, generator=gen) > 0.5
    filters[0], filters[1] = True, False  # some kept, some pruned
    channels = torch.rand(c, generator=gen) > 0.4
    channels[0] = True
    if c > 1:
        channels[-1] = False
    return {
        "filter": filters,
        "channel-uniform": filters[:, None] & channels[None, :],
        "filter as kernel mask": filters[:, None].expand(o, c).clone(),
        "channels only": channels[None, :].expand(o, c).clone(),
    }


@pytest.mark.parametrize("case", MASKED_CASES, ids=lambda c: "x".join(map(str, c[:5])))
def test_masked_filter_uniform_masks_match_reference(case: tuple) -> None:
    n, c, h, w_, o, k, stride, padding, dilation = case
    gen = torch.Generator().manual_seed(sum(case))
    x, w, b = torch.randn(n, c, h, w_, generator=gen), torch.randn(o, c, k, k, generator=gen), torch.randn(o)
    for kind, mask in _uniform_masks(o, c, gen).items():
        m = mask[:, None].expand(o, c) if mask.dim() == 1 else mask
        pruned = ~m.any(dim=1)
        for bias in (b, None):
            y = masked_conv2d(x, w, mask, bias, stride, padding, dilation, backend="cpu")
            ref = _reference(x, w * m[:, :, None, None], bias, stride, padding, dilation)
            _assert_matches(y, ref, f"{kind} bias={bias is not None}")
            expected = torch.zeros(o) if bias is None else bias
            plane = expected[pruned].view(1, -1, 1, 1).expand(n, -1, *y.shape[2:])
            assert torch.equal(y[:, pruned], plane), f"{kind}: pruned filters must output exactly their bias"


@pytest.mark.parametrize("batch", [1, 3])
def test_masked_filter_mask_large_layer(batch: int) -> None:
    x, w, b = _large_inputs(batch, seed=12)
    wide, bias = torch.cat([w, -w]), torch.cat([b, b])
    keep = torch.arange(20) % 3 != 1
    y = masked_conv2d(x, wide, keep, bias, 1, 1, backend="cpu")
    _assert_matches(y, _reference(x, wide * keep[:, None, None, None], bias, 1, 1, 1))
    assert torch.equal(y[:, ~keep], bias[~keep].view(1, -1, 1, 1).expand(batch, -1, 32, 32))


def test_cpu_inference_declines_mixed_dtypes():
    x = torch.randn(1, 3, 5, 5)
    w64 = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    assert conv2d_cpu_inference(x, w64, None, [1, 1, 1, 1, 1, 1], False) is None
    w = torch.randn(4, 3, 3, 3)
    assert conv2d_cpu_inference(x, w, torch.zeros(4, dtype=torch.float64), [1, 1, 1, 1, 1, 1], False) is None


# ---- fp_conv2d_accumulate (the residual add fused into a conv) ------------------------------------------


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize(
    "n, c, o, size, y_channels, k, pad",
    [(2, 5, 3, 7, 8, 3, 1), (1, 16, 10, 32, 16, 3, 1), (3, 4, 6, 9, 6, 1, 0)],
)
def test_conv2d_accumulate_matches_reference(relu, n, c, o, size, y_channels, k, pad):
    from fastprune._native import native
    from fastprune.ops._conv_args import shape_fields

    gen = torch.Generator().manual_seed(n * 100 + c)
    x, w, b = (
        torch.randn(n, c, size, size, generator=gen),
        torch.randn(o, c, k, k, generator=gen),
        torch.randn(o, generator=gen),
    )
    out = size + 2 * pad - k + 1
    y = torch.randn(n, y_channels, out, out, generator=gen)
    pos = torch.randperm(y_channels, generator=gen)[:o].contiguous()
    ref = y.double().clone()
    ref[:, pos] += F.conv2d(x.double(), w.double(), b.double(), 1, pad)
    if relu:
        ref[:, pos] = ref[:, pos].clamp_min(0)
    untouched = y[:, [ch for ch in range(y_channels) if ch not in pos.tolist()]].clone()
    native().conv2d_accumulate(
        shape_fields(x, w, [1, 1], [pad, pad], [1, 1]),
        x.data_ptr(),
        w.data_ptr(),
        b.data_ptr(),
        pos.data_ptr(),
        y_channels,
        relu,
        y.data_ptr(),
    )
    assert float((y.double() - ref).abs().max()) <= RTOL * float(ref.abs().max())
    assert torch.equal(y[:, [ch for ch in range(y_channels) if ch not in pos.tolist()]], untouched)


def test_conv2d_accumulate_rejects_bad_channels():
    from fastprune._native import native
    from fastprune.ops._conv_args import shape_fields

    x, w, y = torch.randn(1, 2, 4, 4), torch.randn(2, 2, 3, 3), torch.zeros(1, 4, 4, 4)
    fields = shape_fields(x, w, [1, 1], [1, 1], [1, 1])
    for pos, width, what in [
        ([0, 0], 4, "out_channels[1]"),
        ([0, 4], 4, "out_channels[1]"),
        ([0, 1], 0, "y_channels"),
    ]:
        index = torch.tensor(pos, dtype=torch.int64)
        with pytest.raises(ValueError, match=re.escape(what)):
            native().conv2d_accumulate(
                fields, x.data_ptr(), w.data_ptr(), 0, index.data_ptr(), width, False, y.data_ptr()
            )
    with pytest.raises(ValueError, match="out_channels"):
        native().conv2d_accumulate(fields, x.data_ptr(), w.data_ptr(), 0, 0, 4, False, y.data_ptr())


def test_winograd_image_groups_match_single_images() -> None:
    """Small maps run several images' tiles per GEMM (8x8: four, the last group of 9 images partial):
    every image matches the float64 reference and comes out bitwise as a batch-1 call computes it."""
    gen = torch.Generator().manual_seed(5)
    x, w, b = torch.randn(9, 8, 8, 8, generator=gen), torch.randn(6, 8, 3, 3, generator=gen), torch.randn(6)
    y = conv2d(x, w, b, 1, 1, relu=True, backend="cpu")
    _assert_matches(y, _reference(x, w, b, 1, 1, 1, relu=True))
    for n in range(9):
        assert torch.equal(conv2d(x[n : n + 1], w, b, 1, 1, relu=True, backend="cpu"), y[n : n + 1])
