"""float16 / bfloat16 convolutions and torch.autocast (issue 17, every dtype).

masked_conv2d and conv2d accept every floating dtype and return the input's; the float32 kernels named by
backend compute half-precision input in float32. Under torch.autocast the wrappers, the registered ops and
the modules built on them cast like nn.Conv2d: to the autocast dtype, with float32 weight gradients.
References are float64 convolutions; bounds scale with the dtype's precision and the output magnitude.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fastprune import models, ops
from fastprune.compaction import compact
from fastprune.nn import MaskedConv2d
from fastprune.ops import conv2d, masked_conv2d

# Relative error bound of one conv output against float64, in units of the output's largest magnitude:
# inputs rounded to the dtype (unit roundoff 2^-8 bf16, 2^-11 fp16) and a float32 or wider accumulation.
BOUND = {torch.bfloat16: 3e-2, torch.float16: 4e-3, torch.float32: 1e-5}


def _case(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 5, 9, 9, generator=g)
    w = torch.randn(7, 5, 3, 3, generator=g)
    b = torch.randn(7, generator=g)
    mask = torch.rand(7, 5, generator=g) < 0.5
    ref = F.conv2d(x.double(), w.double() * mask[:, :, None, None], b.double(), padding=1)
    return x, w, b, mask, ref


def _close(y: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype) -> bool:
    return bool((y.double() - ref).abs().max() <= BOUND[dtype] * ref.abs().max())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("backend", ["auto", "cpu", "torch"])
def test_masked_conv2d_half_precision_returns_its_dtype(dtype: torch.dtype, backend: str) -> None:
    x, w, b, mask, ref = _case()
    y = masked_conv2d(x.to(dtype), w.to(dtype), mask, b.to(dtype), padding=1, backend=backend)
    assert y.dtype is dtype
    assert _close(y, ref, dtype)


def test_masked_conv2d_half_precision_gradients_match_float32() -> None:
    x, w, b, mask, _ = _case(1)
    xs = [x.clone().requires_grad_(), x.to(torch.bfloat16).requires_grad_()]
    ws = [w.clone().requires_grad_(), w.to(torch.bfloat16).requires_grad_()]
    for xi, wi in zip(xs, ws):
        masked_conv2d(xi, wi, mask, None, padding=1, backend="cpu").float().square().sum().backward()
    assert ws[1].grad.dtype is torch.bfloat16
    assert (ws[1].grad.float()[~mask] == 0).all()  # masked kernels get exactly no gradient
    scale = ws[0].grad.abs().max()
    assert (ws[1].grad.float() - ws[0].grad).abs().max() <= 5e-2 * scale


def test_float32_kernels_refuse_float64_by_name() -> None:
    x, w, b, mask, _ = _case()
    with pytest.raises(TypeError, match="x: the cpu backend computes in float32"):
        masked_conv2d(x.double(), w.double(), mask, None, backend="cpu")
    with pytest.raises(TypeError, match="weight: expected"):
        masked_conv2d(x, w.int(), mask, None)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_masked_conv_module_follows_autocast_like_nn_conv2d(dtype: torch.dtype) -> None:
    x, _, _, mask, _ = _case(2)
    conv = torch.nn.Conv2d(5, 7, 3, padding=1)
    masked = MaskedConv2d.from_conv(conv)
    masked.set_mask(mask)
    ref = F.conv2d(x.double(), conv.weight.double() * mask[:, :, None, None], conv.bias.double(), padding=1)
    with torch.autocast("cpu", dtype=dtype):
        expected = conv(x)
        y = masked(x)
    assert y.dtype is expected.dtype is dtype
    assert _close(y, ref, dtype)
    y.float().sum().backward()
    assert masked.weight.grad.dtype is torch.float32  # the parameter's dtype, as nn.Conv2d
    assert (masked.weight.grad[~mask] == 0).all()


def test_registered_ops_follow_autocast() -> None:
    x, w, b, mask, ref = _case(3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        # backend "cpu" asked of the op directly: the autocast rule casts and runs PyTorch's bf16 conv
        y = torch.ops.fastprune.masked_conv2d(x, w, mask, b, [1, 1], [1, 1], [1, 1], "cpu", 1)
        dense = torch.ops.fastprune.conv2d(x, w, b, [1, 1], [1, 1], [1, 1], False, "cpu")
        wrapped = conv2d(x, w, b, padding=1)
    assert y.dtype is dense.dtype is wrapped.dtype is torch.bfloat16
    assert _close(y, ref, torch.bfloat16)
    dense_ref = F.conv2d(x.double(), w.double(), b.double(), padding=1)
    assert _close(dense, dense_ref, torch.bfloat16) and _close(wrapped, dense_ref, torch.bfloat16)
    # float64 is not cast (autocast leaves double alone), and outside autocast nothing changes
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert masked_conv2d(x.double(), w.double(), mask, b.double(), padding=1).dtype is torch.float64
    assert (
        torch.ops.fastprune.masked_conv2d(x, w, mask, b, [1, 1], [1, 1], [1, 1], "cpu", 1).dtype
        is torch.float32
    )


def test_compact_inference_form_follows_autocast() -> None:
    torch.manual_seed(0)
    model = models.create("resnet20", num_classes=10).eval()
    fast = compact(model).for_inference()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = model.double()(x.double())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = fast(x)
    assert y.dtype is torch.bfloat16
    # 20 layers of bf16 rounding: a looser bound than one conv's
    assert (y.double() - ref).abs().max() <= 0.1 * ref.abs().max()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_scoring_and_spectral_ops_take_half_precision_and_compute_in_float32(dtype: torch.dtype) -> None:
    """Half-precision weights are scored as their exact float32 values: results are float32 (complex64)
    and equal what float32 input holding the same (rounded) values gives."""
    w = torch.randn(8, 4, 3, 3, generator=torch.Generator().manual_seed(4)).to(dtype)
    same = w.float()  # exactly the half-precision values
    for op, args in (
        (ops.gm_scores, ()),
        (ops.pairwise_distances, ()),
        (ops.kernel_scores, ("spectral_norm",)),
        (ops.small_eigvals, ()),
        (ops.small_svdvals, ()),
        (ops.small_det, ()),
    ):
        got, want = op(w, *args), op(same, *args)
        assert got.dtype is want.dtype and want.dtype in (torch.float32, torch.complex64), op.__name__
        assert torch.equal(got, want), op.__name__
