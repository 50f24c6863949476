"""masked_conv2d and MaskedConv2d against F.conv2d on masked weights in float64.

Tolerances (float32 op against the float64 reference computed from the same float32 inputs): absolute
2e-5 * sqrt(kept taps per output) on outputs and gradients (values and weights are O(1)); masked weight
gradients exactly 0. gradcheck runs the torch backend in float64 (the cpu backend is float32-only: its
gradients are checked against the float64 reference instead). The same tolerances hold for the triton
backend (small cases: interpreted on CPU tensors without a GPU) and the cuda backend (GPU only)."""

from __future__ import annotations

import ctypes
import os

import pytest
import torch
import torch.nn.functional as F
from conftest import outputs_per_thread_count, requires_cuda
from torch import nn

from fastprune.backends import BackendError
from fastprune.nn import MaskedConv2d, convert
from fastprune.ops import masked_conv2d

BACKENDS = ["cpu", "torch"]
# Triton runs on CUDA tensors when a GPU is present, else interpreted on CPU tensors (conftest.py sets
# TRITON_INTERPRET=1), which is slow: it gets small cases of its own.
TRITON_DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# (N, C, H, W, O, k, stride, padding, dilation): kernels 1/3/5/7, strides 1/2, padding 0/1/2, dilation 1/2,
# odd sizes.
CASES = [
    (2, 3, 9, 11, 5, 3, 1, 1, 1),
    (2, 4, 10, 7, 6, 3, 2, 2, 2),
    (1, 2, 5, 5, 3, 1, 1, 0, 1),
    (2, 3, 13, 13, 4, 7, 2, 3, 1),
    (2, 5, 8, 9, 7, 5, 1, 2, 1),
    (1, 4, 17, 15, 9, 3, 2, 0, 1),
    (2, 6, 12, 12, 5, 3, 1, 2, 2),
    (3, 16, 20, 20, 12, 3, 1, 1, 1),
    # whole vectors of output positions (8x8 1x1; 4x4 from stride 2): grad_y read in place, not staged
    (2, 12, 8, 8, 10, 1, 1, 0, 1),
    (2, 6, 8, 8, 5, 3, 2, 1, 1),
    # rows of 150-152 floats: staging past the first 8 vectors of a row
    (1, 2, 3, 150, 3, 3, 1, 1, 1),
    # 3x3 stride 1 with >= 8 kept filters: forward and input gradient by Winograd F(2x2, 3x3) (cpu)
    (2, 8, 9, 17, 20, 3, 1, 1, 1),
    # ... and the weight gradient by Winograd too (>= 8 channels, >= 4 kept filters, small maps): no
    # padding with partial tiles (5x3 outputs), padding 2, channel counts off whole vectors (9, 20, 33: the
    # transposes' and GEMM's channel tails), 40 filters (several filter blocks of the GEMM)
    (2, 20, 7, 5, 9, 3, 1, 0, 1),
    (3, 9, 6, 11, 6, 3, 1, 2, 1),
    (2, 33, 4, 4, 40, 3, 1, 1, 1),
    # >= 128 input channels, k > 1: filter masks take the cpu backend's dense sub-problem route
    (2, 128, 9, 9, 6, 3, 1, 1, 1),
    (2, 128, 10, 11, 5, 3, 2, 1, 2),
]


def _masks(o: int, c: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    return {
        "filter": torch.rand(o, generator=gen) > 0.5,
        "kernel": torch.rand(o, c, generator=gen) > 0.6,
        "empty": torch.zeros(o, dtype=torch.bool),
        "full": torch.ones(o, c, dtype=torch.bool),
    }


def _reference(x, w, mask, b, stride, padding, dilation, grad_y):
    """Output and gradients in float64 from the float32 inputs."""
    m = (mask[:, None].expand(w.shape[:2]) if mask.dim() == 1 else mask)[:, :, None, None]
    x64, w64, b64 = (t.double().requires_grad_() for t in (x, w, b))
    y = F.conv2d(x64, w64 * m, b64, stride, padding, dilation)
    y.backward(grad_y.double())
    return y.detach(), x64.grad, w64.grad * m, b64.grad


def _check_against_reference(backend: str, case: tuple, device: str = "cpu") -> None:
    n, c, h, w_, o, k, stride, padding, dilation = case
    gen = torch.Generator().manual_seed(sum(case))
    x, w, b = torch.randn(n, c, h, w_, generator=gen), torch.randn(o, c, k, k, generator=gen), torch.randn(o)
    for kind, mask in _masks(o, c, gen).items():
        xg, wg, bg = (t.clone().to(device).requires_grad_() for t in (x, w, b))
        y = masked_conv2d(xg, wg, mask.to(device), bg, stride, padding, dilation, backend=backend)
        grad_y = torch.randn(y.shape, generator=gen)
        y.backward(grad_y.to(device))
        ref = _reference(x, w, mask, b, stride, padding, dilation, grad_y)
        atol = 2e-5 * (c * k * k) ** 0.5
        for got, expected, what in zip(
            (y, xg.grad, wg.grad, bg.grad), ref, ("y", "grad x", "grad w", "grad b")
        ):
            assert got.dtype == torch.float32 and got.shape == expected.shape, what
            torch.testing.assert_close(
                got.detach().cpu().double(), expected, rtol=1e-5, atol=atol, msg=f"{kind} {what}"
            )
        m = mask[:, None].expand(o, c) if mask.dim() == 1 else mask
        assert torch.all(wg.grad.cpu()[~m] == 0), "masked weights must get exactly zero gradient"
        if kind == "empty":
            assert torch.equal(y.detach().cpu(), b.view(1, o, 1, 1).expand_as(y))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES)
def test_matches_float64_reference(backend: str, case: tuple) -> None:
    _check_against_reference(backend, case)


# Small, for the interpreter: stride 2 with padding, dilation 2 with padding 2 (non-square kernel reach),
# 1x1, odd sizes; each with filter, kernel, empty and full masks.
TRITON_CASES = [
    (1, 3, 7, 6, 4, 3, 2, 1, 1),
    (2, 2, 7, 8, 3, 3, 1, 2, 2),
    (1, 3, 5, 4, 2, 1, 2, 0, 1),
]


@pytest.mark.parametrize("case", TRITON_CASES)
def test_triton_matches_float64_reference(case: tuple) -> None:
    _check_against_reference("triton", case, TRITON_DEVICE)


@requires_cuda
@pytest.mark.parametrize("case", CASES)
def test_cuda_matches_float64_reference(case: tuple) -> None:
    # Filter-uniform masks run on cuDNN (the gathered filters): float32 precision needs TF32 off, as for
    # PyTorch's own convolutions (on by default for cuDNN on Ampere and later).
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        _check_against_reference("cuda", case, "cuda")


@requires_cuda
def test_cuda_opcheck() -> None:
    test_opcheck("cuda")


def _layer(gen: torch.Generator, n: int, c: int, size: int, o: int):
    """x (n, c, size, size), a 3x3 weight (o, c, 3, 3) and a bias (o,), standard normal."""
    return (
        torch.randn(n, c, size, size, generator=gen),
        torch.randn(o, c, 3, 3, generator=gen),
        torch.randn(o, generator=gen),
    )


def _check_cpu_padded_call(x, w, mask, b, gen, atol: float) -> torch.Tensor:
    """masked_conv2d on the cpu backend (stride 1, padding 1) and its gradients against the float64
    reference; masked weights get exactly zero gradient. Returns the output."""
    xg, wg, bg = (t.clone().requires_grad_() for t in (x, w, b))
    y = masked_conv2d(xg, wg, mask, bg, 1, 1, backend="cpu")
    grad_y = torch.randn(y.shape, generator=gen)
    y.backward(grad_y)
    ref = _reference(x, w, mask, b, 1, 1, 1, grad_y)
    for got, expected, what in zip((y, xg.grad, wg.grad, bg.grad), ref, ("y", "grad x", "grad w", "grad b")):
        torch.testing.assert_close(got.detach().double(), expected, rtol=1e-5, atol=atol, msg=what)
    assert torch.all(wg.grad[~mask] == 0)
    return y.detach()


@pytest.mark.parametrize("kept", [16, 13, 0])
def test_cpu_filter_masks_on_a_wide_layer_either_route(kept: int) -> None:
    """128 channels at 6x6: 16 kept filters of 32 (and none) go to oneDNN on the gathered filters, 13 to the
    blocked kernel (oneDNN would round them up to 16 slots); every route matches the reference."""
    from fastprune.ops._mask_lists import mask_lists
    from fastprune.ops._masked_conv2d_native import dense_route

    gen = torch.Generator().manual_seed(kept)
    x, w, b = _layer(gen, 3, 128, 6, 32)
    mask = torch.zeros(32, dtype=torch.bool)
    mask[torch.randperm(32, generator=gen)[:kept]] = True
    lists = mask_lists(mask, 128)
    expanded = mask_lists(mask[:, None].expand(32, 128).clone(), 128)  # the same mask as (O, C)
    for got, expected in zip(lists, expanded):
        assert (got is None and expected is None) or torch.equal(got, expected)
    assert dense_route(lists, w, 36) == (kept % 16 == 0)
    y = _check_cpu_padded_call(x, w, mask, b, gen, atol=2e-5 * 34)
    assert torch.equal(y[:, ~mask], b[~mask].view(1, -1, 1, 1).expand(3, -1, 6, 6))


def test_cpu_channel_mask_by_winograd() -> None:
    """Every kept filter reads the same 10 of 24 channels: one dense block over a channel subset, whose
    forward and weight gradient (3x3, stride 1, 8x8) run by Winograd through the block's channel list."""
    gen = torch.Generator().manual_seed(5)
    x, w, b = _layer(gen, 4, 24, 8, 12)
    channels = torch.zeros(24, dtype=torch.bool)
    channels[torch.randperm(24, generator=gen)[:10]] = True
    mask = (torch.arange(12) % 3 != 1)[:, None] & channels[None, :]  # 8 filters x 10 channels
    _check_cpu_padded_call(x, w, mask, b, gen, atol=2e-5 * 16)


def test_cpu_winograd_weight_gradient_of_a_wide_layer() -> None:
    """113 of 256 filters x 384 channels at 3x3 (not oneDNN's route: 113 would idle 15 of its 128 slots):
    the Winograd weight gradient sums 9 images in 6 groups (its dU capped at 16 MB), not min(N, 8)."""
    gen = torch.Generator().manual_seed(7)
    x, w, b = _layer(gen, 9, 384, 3, 256)
    mask = torch.zeros(256, dtype=torch.bool)
    mask[torch.randperm(256, generator=gen)[:113]] = True
    _check_cpu_padded_call(x, w, mask, b, gen, atol=2e-5 * (384 * 9) ** 0.5)


def test_empty_mask_without_bias_is_zero() -> None:
    x, w = torch.randn(2, 3, 6, 6), torch.randn(4, 3, 3, 3)
    y = masked_conv2d(x, w, torch.zeros(4, dtype=torch.bool), backend="cpu")
    assert torch.equal(y, torch.zeros(2, 4, 4, 4))


def test_masked_weight_gradient_exactly_zero_even_with_huge_values() -> None:
    x, w = torch.randn(2, 3, 6, 6) * 1e30, torch.randn(4, 3, 3, 3).requires_grad_()
    mask = torch.tensor([True, False, True, False])
    for backend in BACKENDS:
        w.grad = None
        masked_conv2d(x, w, mask, padding=1, backend=backend).sum().backward()
        assert torch.all(w.grad[~mask] == 0)


def test_gradcheck_torch_backend_float64() -> None:
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 3, 6, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, generator=gen, requires_grad=True)
    for mask in (torch.tensor([True, False, True, True]), torch.rand(4, 3, generator=gen) > 0.5):

        def conv(x, w, b, mask=mask):
            return masked_conv2d(x, w, mask, b, stride=2, padding=1)

        assert torch.autograd.gradcheck(conv, (x, w, b))


@pytest.mark.parametrize("backend", [*BACKENDS, "triton"])
def test_opcheck(backend: str) -> None:
    gen = torch.Generator().manual_seed(6)
    dev = {"triton": TRITON_DEVICE, "cuda": "cuda"}.get(backend, "cpu")
    x = torch.randn(2, 3, 7, 6, generator=gen).to(dev).requires_grad_()
    w = torch.randn(5, 3, 3, 3, generator=gen).to(dev).requires_grad_()
    b = torch.randn(5, generator=gen).to(dev).requires_grad_()
    mask = (torch.rand(5, 3, generator=gen) > 0.4).to(dev)
    for bias in (b, None):
        args = (x, w, mask, bias, [2, 1], [1, 0], [1, 2], backend)
        torch.library.opcheck(torch.ops.fastprune.masked_conv2d.default, args)
    grad_y = torch.randn(2, 5, 4, 2, generator=gen).to(dev)
    args = (grad_y, x.detach(), w.detach(), mask, [2, 1], [1, 0], [1, 2], [True, True], backend)
    torch.library.opcheck(torch.ops.fastprune.masked_conv2d_backward.default, args)


_THREAD_SCRIPT = """
import sys, torch
from fastprune.ops import masked_conv2d
gen = torch.Generator().manual_seed(7)
x = torch.randn(5, 24, 17, 19, generator=gen, requires_grad=True)
w = torch.randn(20, 24, 3, 3, generator=gen, requires_grad=True)
b = torch.randn(20, generator=gen, requires_grad=True)
parts = []
for mask, stride in ((torch.rand(20, 24, generator=gen) > 0.7, 1), (torch.rand(20, generator=gen) > 0.5, 2)):
    y = masked_conv2d(x, w, mask, b, stride, 1, backend="cpu")
    gx, gw, gb = torch.autograd.grad(y, (x, w, b), torch.randn(y.shape, generator=gen))
    parts += [t.reshape(-1) for t in (y, gx, gw, gb)]
torch.save(torch.cat(parts), sys.argv[1])
"""


def test_cpu_bitwise_identical_across_openmp_thread_counts(tmp_path) -> None:
    one_thread, two_threads = outputs_per_thread_count(_THREAD_SCRIPT, tmp_path)
    assert torch.equal(one_thread, two_threads)


def test_bad_input_errors() -> None:
    x, w = torch.randn(2, 3, 8, 8), torch.randn(4, 3, 3, 3)
    keep = torch.ones(4, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"mask: expected a filter mask \(4,\) or a kernel mask \(4, 3\)"):
        masked_conv2d(x, w, torch.ones(3, dtype=torch.bool))
    with pytest.raises(TypeError, match=r"mask: expected dtype torch.bool"):
        masked_conv2d(x, w, torch.ones(4))
    with pytest.raises(ValueError, match=r"mask: expected a tensor on cpu"):
        masked_conv2d(x, w, torch.ones(4, dtype=torch.bool, device="meta"))
    with pytest.raises(
        ValueError, match=r"weight: expected 3 input channels per group \(x's 3 channels / groups = 1\)"
    ):
        masked_conv2d(x, torch.randn(4, 1, 3, 3), keep)
    with pytest.raises(ValueError, match=r"x: expected a 4-D tensor \(N, C, H, W\), got shape \(3, 8, 8\)"):
        masked_conv2d(x[0], w, keep)
    with pytest.raises(TypeError, match=r"x: the cpu backend computes in float32, got torch.float64"):
        masked_conv2d(x.double(), w.double(), keep, backend="cpu")
    with pytest.raises(TypeError, match=r"x: the triton backend computes in float32, got torch.float64"):
        dev = TRITON_DEVICE
        masked_conv2d(x.double().to(dev), w.double().to(dev), keep.to(dev), backend="triton")
    assert masked_conv2d(x.double(), w.double(), keep).dtype == torch.float64  # auto -> torch
    with pytest.raises(TypeError, match=r"weight: expected torch.float32 on cpu like x"):
        masked_conv2d(x, w.double(), keep)
    with pytest.raises(ValueError, match=r"bias: expected \(4,\) torch.float32"):
        masked_conv2d(x, w, keep, torch.randn(5))
    with pytest.raises(ValueError, match=r"stride: expected values >= 1"):
        masked_conv2d(x, w, keep, stride=0)
    with pytest.raises(ValueError, match=r"padding: expected values >= 0"):
        masked_conv2d(x, w, keep, padding=-1)
    with pytest.raises(ValueError, match=r"x: output size \(-4, -4\) must be positive"):
        masked_conv2d(x, torch.randn(4, 3, 5, 5), keep, dilation=3)
    with pytest.raises(BackendError, match=r"cannot run masked_conv2d on cpu tensors: needs cuda tensors"):
        masked_conv2d(x, w, keep, backend="cuda")


def _library_path() -> str:
    import fastprune

    lib_dir = os.path.join(os.path.dirname(fastprune.__file__), "lib")
    return os.path.join(lib_dir, next(f for f in os.listdir(lib_dir) if f.startswith("libfastprune")))


class _Exec(ctypes.Structure):
    _fields_ = [("device", ctypes.c_int), ("stream", ctypes.c_void_p)]


class _Shape(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int64) for name in "n c h w o kh kw sh sw ph pw dh dw".split()]


def test_c_abi_rejects_bad_arguments() -> None:
    lib = ctypes.CDLL(_library_path())
    lib.fp_last_error.restype = ctypes.c_char_p
    forward = lib.fp_masked_conv2d_forward
    forward.restype = ctypes.c_int
    x, y, kernels = (ctypes.c_float * 64)(), (ctypes.c_float * 64)(), (ctypes.c_float * 9)()
    row_ptr, col = (ctypes.c_int32 * 3)(0, 1, 1), (ctypes.c_int32 * 1)(0)

    def call(shape, rows=row_ptr, cols=col, xp=x, out=y, device=0):
        status = forward(
            ctypes.byref(shape) if shape else None, xp, rows, cols, kernels, None, _Exec(device, None), out
        )
        return status, lib.fp_last_error().decode()

    good = _Shape(1, 1, 4, 4, 2, 3, 3, 1, 1, 0, 0, 1, 1)
    assert call(good) == (0, "")
    assert call(None) == (1, "shape: expected a fp_conv2d_shape pointer, got NULL")
    assert call(good, xp=None) == (1, "x: expected N * C * H * W floats, got NULL")
    assert call(good, out=None)[1].startswith("y: expected an output buffer")
    assert call(good, rows=None)[1].startswith("row_ptr: expected out_channels + 1 int32 offsets, got NULL")
    assert call(_Shape(-1, 1, 4, 4, 2, 3, 3, 1, 1, 0, 0, 1, 1))[1] == "shape->batch: expected >= 0, got -1"
    assert call(_Shape(1, 1, 4, 4, 2, 3, 3, 0, 1, 0, 0, 1, 1))[1].startswith("shape->stride_h: expected 1 <=")
    assert call(_Shape(1, 1, 4, 4, 2, 3, 3, 1, 1, -1, 0, 1, 1))[1].startswith("shape->pad_h: expected 0 <=")
    assert call(_Shape(1, 1, 4, 4, 2, 3, 3, 1, 1, 0, 0, 1, 0))[1].startswith("shape->dilation_w: expected 1")
    assert "must be positive" in call(_Shape(1, 1, 4, 4, 2, 3, 3, 1, 1, 0, 0, 2, 1))[1]
    status, message = call(good, cols=(ctypes.c_int32 * 1)(5))
    assert status == 1 and message == "col[0]: expected an input channel in [0, 1), got 5"
    assert call(good, rows=(ctypes.c_int32 * 3)(0, 1, 0))[1].startswith("row_ptr[2]: expected row_ptr[1] = 1")
    if (
        not torch.cuda.is_available()
    ):  # with a GPU, FP_DEVICE_CUDA would take these host buffers as device ones
        status, message = call(good, device=1)
        assert status == 3 and message.startswith("exec.device:")


def test_masked_conv2d_module_and_convert() -> None:
    gen = torch.Generator().manual_seed(8)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 6, 3, stride=2, bias=False))
    x = torch.randn(2, 3, 9, 9, generator=gen)
    filter_mask, kernel_mask = torch.rand(8, generator=gen) > 0.5, torch.rand(6, 8, generator=gen) > 0.5
    weights = (model[0].weight, model[2].weight)
    reference = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 6, 3, stride=2, bias=False)
    )
    reference.load_state_dict(model.state_dict())
    with torch.no_grad():
        reference[0].weight.mul_(filter_mask[:, None, None, None])
        reference[0].bias.mul_(1)  # a pruned filter still outputs its bias
        reference[2].weight.mul_(kernel_mask[:, :, None, None])
    assert convert(model, {"0": filter_mask, "2": kernel_mask}) is model
    assert isinstance(model[0], MaskedConv2d) and isinstance(model[2], MaskedConv2d)
    assert model[0].weight is weights[0] and model[2].weight is weights[1]  # parameters shared
    assert torch.equal(model[2].mask, kernel_mask) and "mask" in model.state_dict().keys().__str__()
    torch.testing.assert_close(model(x), reference(x), rtol=1e-5, atol=1e-5)
    model(x).sum().backward()
    assert torch.all(model[2].weight.grad[~kernel_mask] == 0)


def test_convert_errors_leave_model_untouched() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3, groups=2))
    keep = torch.ones(8, dtype=torch.bool)
    with pytest.raises(TypeError, match=r"masks\['1'\]: expected an nn.Conv2d, got ReLU"):
        convert(model, {"0": keep, "1": keep})
    with pytest.raises(
        ValueError, match=r"masks\['2'\]: mask: expected a filter mask \(8,\) or a kernel mask \(8, 4\)"
    ):
        convert(model, {"0": keep, "2": torch.ones(8, 8, dtype=torch.bool)})  # groups = 2: (O, C / 2)
    with pytest.raises(ValueError, match=r"masks\['9'\]: the model has no submodule '9'"):
        convert(model, {"9": keep})
    with pytest.raises(ValueError, match=r"masks\['0'\]: mask: expected a filter mask \(8,\)"):
        convert(model, {"0": torch.ones(7, dtype=torch.bool)})
    with pytest.raises(TypeError, match=r"masks\['0'\]: mask: expected dtype torch.bool"):
        convert(model, {"0": torch.ones(8)})
    assert type(model[0]) is nn.Conv2d


def test_cpu_list_cache_never_serves_a_changed_mask():
    """The cpu backend caches compressed lists per mask storage; a mask changed in place, a new mask at
    the same storage, or a filter mask broadcast to (O, C) must still give the exact masked result."""
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 6, 7, 7, generator=gen)
    w = torch.randn(5, 6, 3, 3, generator=gen)
    mask = torch.rand(5, 6, generator=gen) > 0.5
    for step in range(4):
        if step == 1:
            mask[0] = ~mask[0]  # in place: same storage, shape and strides
        if step == 2:
            mask.copy_(torch.rand(5, 6, generator=gen) > 0.5)
        if step == 3:
            mask = torch.rand(5, generator=gen) > 0.5  # a filter mask
        got = masked_conv2d(x, w, mask, None, 1, 1, backend="cpu")
        full = mask[:, None].expand(5, 6) if mask.dim() == 1 else mask
        ref = F.conv2d(x.double(), w.double() * full[:, :, None, None], None, 1, 1)
        assert float((got.double() - ref).abs().max()) <= 1e-4 * float(ref.abs().max())


def test_cpu_random_geometries_match_reference():
    """40 random geometries (kernel 1-5, stride 1-3, dilation 1-2, padding 0-3, odd sizes, filter and kernel
    masks): output and both gradients of the cpu backend against float64 references. Staging layouts,
    tails and the dense and sparse routes meet here in combinations the listed cases do not spell out."""
    import random

    rng = random.Random(3)
    gen = torch.Generator().manual_seed(3)
    for _ in range(40):
        k, s, d, p = (
            rng.choice([1, 2, 3, 5]),
            rng.choice([1, 1, 2, 3]),
            rng.choice([1, 1, 2]),
            rng.randint(0, 3),
        )
        c, o, n = rng.randint(1, 24), rng.randint(1, 12), rng.randint(1, 3)
        low = max(1, d * (k - 1) + 1 - 2 * p)
        h, w_ = rng.randint(low, 24), rng.randint(low, 24)
        kind = rng.choice(["filter", "kernel"])
        mask = (
            torch.rand(o, generator=gen) > 0.4 if kind == "filter" else torch.rand(o, c, generator=gen) > 0.5
        )
        x, w = torch.randn(n, c, h, w_, generator=gen), torch.randn(o, c, k, k, generator=gen)
        xg, wg = x.clone().requires_grad_(), w.clone().requires_grad_()
        y = masked_conv2d(xg, wg, mask, None, s, p, d, backend="cpu")
        grad_y = torch.randn(y.shape, generator=gen)
        y.backward(grad_y)
        ref_y, ref_x, ref_w, _ = _reference(x, w, mask, torch.zeros(o), s, p, d, grad_y)
        what = f"{kind} n={n} c={c} o={o} {h}x{w_} k={k} s={s} p={p} d={d}"
        atol = 2e-5 * (c * k * k) ** 0.5
        for got, expected, name in ((y, ref_y, "y"), (xg.grad, ref_x, "grad x"), (wg.grad, ref_w, "grad w")):
            torch.testing.assert_close(
                got.detach().double(), expected, rtol=1e-5, atol=atol, msg=f"{what}: {name}"
            )


def test_torch_func_transforms_are_refused_clearly():
    x, w, mask = (
        torch.randn(2, 3, 7, 6),
        torch.randn(5, 3, 3, 3),
        torch.tensor([True, False, True, True, False]),
    )
    with pytest.raises(NotImplementedError, match="masked_conv2d: torch.func transforms"):
        torch.func.grad(lambda w: masked_conv2d(x, w, mask, None, 1, 1, backend="cpu").sum())(w)


def test_torch_compile_traces_the_op_without_graph_breaks():
    gen = torch.Generator().manual_seed(8)
    x, w, b = torch.randn(2, 3, 7, 6, generator=gen), torch.randn(5, 3, 3, 3, generator=gen), torch.randn(5)
    mask = torch.tensor([True, False, True, True, False])

    def conv(x, w, b):
        return masked_conv2d(x, w, mask, b, 1, 1, backend="cpu")

    results = []
    for call in (conv, torch.compile(conv, backend="aot_eager", fullgraph=True)):
        xg, wg, bg = (t.clone().requires_grad_() for t in (x, w, b))
        y = call(xg, wg, bg)
        y.sum().backward()
        results.append((y.detach(), xg.grad, wg.grad, bg.grad))
    assert all(torch.equal(a, c) for a, c in zip(*results))


# 128 channels: the cpu backend's dense sub-problem route for filter masks
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("channels", [3, 128])
def test_eager_calls_match_the_registered_op_bitwise(backend: str, channels: int):
    """masked_conv2d runs eager calls through an autograd.Function (skipping the dispatcher); the
    registered op, which torch.compile and fake tensors see, must compute the same bits."""
    gen = torch.Generator().manual_seed(channels)
    x, w, b = (
        torch.randn(2, channels, 7, 6, generator=gen),
        torch.randn(5, channels, 3, 3, generator=gen),
        torch.randn(5, generator=gen),
    )
    filter_mask = torch.tensor([True, False, True, True, False])
    for mask in (filter_mask, torch.rand(5, channels, generator=gen) > 0.5):
        mask2d = mask[:, None].expand(5, channels) if mask.dim() == 1 else mask
        results = []
        for eager in (True, False):
            xg, wg, bg = (t.clone().requires_grad_() for t in (x, w, b))
            if eager:
                y = masked_conv2d(xg, wg, mask, bg, 1, 1, backend=backend)
            else:
                y = torch.ops.fastprune.masked_conv2d(xg, wg, mask2d, bg, [1, 1], [1, 1], [1, 1], backend)
            y.backward(torch.ones_like(y))
            results.append((type(y.grad_fn).__name__, y.detach(), xg.grad, wg.grad, bg.grad))
        (eager_fn, *eager_values), (op_fn, *op_values) = results
        assert eager_fn != op_fn, "the eager call should not go through the registered op's autograd"
        assert all(torch.equal(a, c) for a, c in zip(eager_values, op_values))


@pytest.mark.parametrize("backend", BACKENDS)
def test_calls_autograd_does_not_record_compute_the_same_bits(backend: str):
    """Under no_grad, or with no input requiring grad, eager calls take a path without the
    autograd.Function: it must give the same output bits as a recorded call, and no graph."""
    gen = torch.Generator().manual_seed(11)
    x, w, b = (
        torch.randn(3, 20, 8, 8, generator=gen),
        torch.randn(12, 20, 3, 3, generator=gen),
        torch.randn(12),
    )
    for mask in (torch.arange(12) % 3 != 0, torch.rand(12, 20, generator=gen) > 0.8):
        recorded = masked_conv2d(x, w.clone().requires_grad_(), mask, b, 1, 1, backend=backend)
        assert recorded.grad_fn is not None
        wg = w.clone().requires_grad_()
        with torch.no_grad():
            inference = masked_conv2d(x, wg, mask, b, 1, 1, backend=backend)
        plain = masked_conv2d(x, w, mask, b, 1, 1, backend=backend)  # nothing requires grad
        for y in (inference, plain):
            assert y.grad_fn is None and not y.requires_grad
            assert torch.equal(y, recorded.detach())


def test_fake_tensors_take_the_registered_op():
    from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode

    with FakeTensorMode():
        x, w = torch.empty(2, 3, 7, 6), torch.empty(5, 3, 3, 3)
        y = masked_conv2d(x, w, torch.ones(5, dtype=torch.bool), None, 2, 1, backend="cpu")
    assert isinstance(y, FakeTensor) and y.shape == (2, 5, 4, 3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_second_derivatives_are_refused_clearly(backend: str):
    x = torch.randn(2, 3, 5, 5, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    y = masked_conv2d(x, w, torch.tensor([True, False, True, True]), None, 1, 1, backend=backend)
    (grad_x,) = torch.autograd.grad(y.pow(2).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="differentiate twice"):
        grad_x.sum().backward()
