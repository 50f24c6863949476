"""masked_conv2d and MaskedConv2d with groups > 1 (grouped and depthwise convolutions) against F.conv2d
with groups on masked weights in float64.

weight (O, C/groups, kh, kw), mask (O,) or (O, C/groups). "auto" takes torch for groups > 1; the native
backends, when named, run the ungrouped convolution with a block-diagonal kernel mask. Tolerances as in
test_masked_conv2d.py: absolute 2e-5 * sqrt(taps per output), relative 1e-5; masked weight gradients
exactly 0; a pruned filter outputs its bias."""

from __future__ import annotations

import importlib

import pytest
import torch
import torch.nn.functional as F
from conftest import HAS_TRITON, requires_cuda
from torch import nn

import fastprune
from fastprune.backends import auto_fallbacks, select_backend
from fastprune.nn import MaskedConv2d, convert, restore
from fastprune.ops import masked_conv2d

op_module = importlib.import_module("fastprune.ops.masked_conv2d")  # the module, not the function
TRITON_DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
requires_triton = pytest.mark.skipif(not HAS_TRITON, reason="needs triton")

# (N, C, H, W, O, k, stride, padding, dilation, groups)
TINY_CASES = [
    (2, 4, 7, 6, 6, 3, 1, 1, 1, 2),  # 2 groups of 2 channels -> 3 filters
    (1, 8, 6, 7, 8, 3, 2, 1, 1, 4),  # 4 groups, stride 2
    (2, 6, 7, 7, 6, 3, 1, 2, 2, 6),  # depthwise, dilation 2
    (1, 4, 5, 5, 8, 1, 1, 0, 1, 4),  # depthwise with multiplier 2 (O = 2 C), 1x1
]
CASES = TINY_CASES + [
    (2, 32, 9, 9, 32, 3, 1, 1, 1, 32),  # MobileNet depthwise 3x3
    (2, 24, 9, 10, 16, 3, 1, 1, 1, 2),  # 12 channels per group, 3x3 stride 1 (the cpu Winograd routes)
    (2, 16, 8, 8, 24, 3, 2, 1, 1, 4),
    (2, 256, 6, 6, 32, 3, 1, 1, 1, 2),  # >= 128 channels: never the dense filter route for groups > 1
]


def _expanded(mask: torch.Tensor, per_group: int) -> torch.Tensor:
    return mask[:, None].expand(-1, per_group) if mask.dim() == 1 else mask


def _masks(o: int, per_group: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    return {
        "filter": torch.rand(o, generator=gen) > 0.5,
        "kernel": torch.rand(o, per_group, generator=gen) > 0.4,
        "empty": torch.zeros(o, dtype=torch.bool),
        "full": torch.ones(o, per_group, dtype=torch.bool),
    }


def _reference(x, w, mask, b, stride, padding, dilation, groups, grad_y):
    """Output and gradients in float64 from the float32 inputs."""
    m = _expanded(mask, w.shape[1])[:, :, None, None]
    x64, w64, b64 = (t.double().requires_grad_() for t in (x, w, b))
    y = F.conv2d(x64, w64 * m, b64, stride, padding, dilation, groups)
    y.backward(grad_y.double())
    return y.detach(), x64.grad, w64.grad * m, b64.grad


def _check(backend: str, case: tuple, device: str = "cpu") -> None:
    n, c, h, w_, o, k, stride, padding, dilation, groups = case
    gen = torch.Generator().manual_seed(sum(case))
    per_group = c // groups
    x = torch.randn(n, c, h, w_, generator=gen)
    w = torch.randn(o, per_group, k, k, generator=gen)
    b = torch.randn(o, generator=gen)
    for kind, mask in _masks(o, per_group, gen).items():
        xg, wg, bg = (t.clone().to(device).requires_grad_() for t in (x, w, b))
        y = masked_conv2d(xg, wg, mask.to(device), bg, stride, padding, dilation, groups, backend=backend)
        grad_y = torch.randn(y.shape, generator=gen)
        y.backward(grad_y.to(device))
        ref = _reference(x, w, mask, b, stride, padding, dilation, groups, grad_y)
        atol = 2e-5 * (per_group * k * k) ** 0.5
        for got, expected, what in zip(
            (y, xg.grad, wg.grad, bg.grad), ref, ("y", "grad x", "grad w", "grad b")
        ):
            assert got.dtype == torch.float32 and got.shape == expected.shape, what
            torch.testing.assert_close(
                got.detach().cpu().double(), expected, rtol=1e-5, atol=atol, msg=f"{kind} {what}"
            )
        kept = _expanded(mask, per_group)
        assert torch.all(wg.grad.cpu()[~kept] == 0), "masked weights must get exactly zero gradient"
        pruned = ~kept.any(1)
        assert torch.equal(
            y.detach().cpu()[:, pruned], b[pruned].view(1, -1, 1, 1).expand(n, -1, *y.shape[2:])
        )
        with torch.no_grad():  # the path without autograd bookkeeping computes the same bits
            again = masked_conv2d(
                xg, wg, mask.to(device), bg, stride, padding, dilation, groups, backend=backend
            )
        assert torch.equal(again, y.detach()), kind


@pytest.mark.parametrize("backend", ["cpu", "torch", "auto"])
@pytest.mark.parametrize("case", CASES)
def test_grouped_matches_float64_reference(backend: str, case: tuple) -> None:
    _check(backend, case)


# Interpreted on CPU tensors without a GPU (slow): smaller still.
TRITON_CASES = [
    (1, 4, 5, 4, 4, 3, 1, 1, 1, 2),
    (1, 3, 5, 5, 3, 3, 2, 1, 2, 3),  # depthwise, stride 2, dilation 2
]


@requires_triton
@pytest.mark.parametrize("case", TRITON_CASES)
def test_triton_grouped_matches_float64_reference(case: tuple) -> None:
    _check("triton", case, TRITON_DEVICE)


@requires_cuda
@pytest.mark.parametrize("case", CASES)
def test_cuda_grouped_matches_float64_reference(case: tuple) -> None:
    _check("cuda", case, "cuda")


def test_gradcheck_torch_backend_float64_grouped() -> None:
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(1, 4, 5, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.randn(4, 2, 3, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, generator=gen, requires_grad=True)
    for mask in (torch.tensor([True, False, True, True]), torch.rand(4, 2, generator=gen) > 0.5):

        def conv(x, w, b, mask=mask):
            return masked_conv2d(x, w, mask, b, stride=2, padding=1, groups=2)

        assert torch.autograd.gradcheck(conv, (x, w, b))


def test_auto_takes_torch_for_groups_and_named_backends_still_run(monkeypatch) -> None:
    """groups > 1 under "auto" computes the torch backend's bits (never the cpu kernels); a backend named
    by argument, use_backend() or FASTPRUNE_BACKEND runs the native kernels; groups = 1 is untouched."""
    gen = torch.Generator().manual_seed(3)
    x, w = torch.randn(2, 8, 7, 7, generator=gen), torch.randn(8, 2, 3, 3, generator=gen)
    mask = torch.rand(8, 2, generator=gen) > 0.3
    calls = []
    native = op_module.cpu_forward
    monkeypatch.setattr(op_module, "cpu_forward", lambda *a, **k: calls.append(1) or native(*a, **k))
    auto = masked_conv2d(x, w, mask, None, 1, 1, 1, 4)
    assert not calls and torch.equal(auto, masked_conv2d(x, w, mask, None, 1, 1, 1, 4, backend="torch"))
    assert select_backend("auto", "cpu", "masked_conv2d", auto_torch="grouped") == "torch"
    assert select_backend("auto", "cuda", "masked_conv2d", auto_torch="grouped") == "torch"
    assert select_backend("cpu", "cpu", "masked_conv2d", auto_torch="grouped") == "cpu"
    named = masked_conv2d(x, w, mask, None, 1, 1, 1, 4, backend="cpu")
    assert len(calls) == 1
    with fastprune.use_backend("cpu"):
        assert torch.equal(masked_conv2d(x, w, mask, None, 1, 1, 1, 4), named)
    assert len(calls) == 2
    monkeypatch.setenv("FASTPRUNE_BACKEND", "cpu")
    assert torch.equal(masked_conv2d(x, w, mask, None, 1, 1, 1, 4), named)
    assert len(calls) == 3
    monkeypatch.delenv("FASTPRUNE_BACKEND")
    torch.testing.assert_close(named, auto, rtol=1e-5, atol=1e-4)
    # float64 with groups: torch under auto
    assert masked_conv2d(x.double(), w.double(), mask, None, 1, 1, 1, 4).dtype == torch.float64
    assert "groups > 1" in auto_fallbacks("cpu")["masked_conv2d"]
    assert "groups > 1" in auto_fallbacks("cuda")["masked_conv2d"]


def test_mask_lists_of_a_grouped_mask() -> None:
    """The lists of a grouped mask are those of its block-diagonal (O, C) mask: col indexes x's channels,
    `channels` the weight's; never filter-uniform (the dense route would convolve every channel)."""
    from fastprune.ops._mask_lists import block_diagonal, mask_lists

    mask = torch.tensor([[True, False], [True, True], [False, True], [False, False]])  # O = 4, C/g = 2
    full = block_diagonal(mask, 2)
    assert torch.equal(full, torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0]]).bool())
    lists = mask_lists(mask, 2, groups=2)
    assert lists.row_ptr.tolist() == [0, 1, 3, 4, 4]
    assert lists.col.tolist() == [0, 0, 1, 3]
    assert lists.channels.tolist() == [0, 0, 1, 1] and lists.filters.tolist() == [0, 1, 1, 2]
    filters = mask_lists(torch.tensor([True, True, False, True]), 2, groups=2)
    assert filters.kept is None and filters.pruned is None
    assert filters.col.tolist() == [0, 1, 0, 1, 2, 3]


def test_grouped_errors_name_the_argument() -> None:
    x, w = torch.randn(2, 4, 6, 6), torch.randn(6, 2, 3, 3)
    keep = torch.ones(6, dtype=torch.bool)
    for bad in (0, -2, 1.5, True, "2", None):
        with pytest.raises(ValueError, match=rf"groups: expected a positive int, got {bad!r}"):
            masked_conv2d(x, w, keep, groups=bad)
    with pytest.raises(
        ValueError, match=r"groups: expected a divisor of x's 4 input channels, got groups = 3"
    ):
        masked_conv2d(x, torch.randn(6, 1, 3, 3), keep, groups=3)
    with pytest.raises(
        ValueError, match=r"groups: expected a divisor of weight's 6 output channels .*, got groups = 4"
    ):
        masked_conv2d(x, torch.randn(6, 1, 3, 3), keep, groups=4)
    with pytest.raises(
        ValueError,
        match=r"weight: expected 2 input channels per group \(x's 4 channels / groups = 2\), got weight of "
        r"shape \(6, 4, 3, 3\)",
    ):
        masked_conv2d(x, torch.randn(6, 4, 3, 3), keep, groups=2)
    with pytest.raises(
        ValueError,
        match=r"mask: expected a filter mask \(6,\) or a kernel mask \(6, 2\) for a weight of shape",
    ):
        masked_conv2d(x, w, torch.ones(6, 4, dtype=torch.bool), groups=2)
    with pytest.raises(ValueError, match=r"bias: expected \(6,\)"):
        masked_conv2d(x, w, keep, torch.randn(4), groups=2)
    assert masked_conv2d(x, w, keep, groups=2).shape == (2, 6, 4, 4)


def test_masked_conv2d_module_with_groups() -> None:
    """A MobileNet block (depthwise 3x3, pointwise 1x1, grouped 3x3) converted with filter and kernel
    masks matches nn.Conv2d on masked weights, trains with zero gradient on masked weights, and
    restores to nn.Conv2d with its groups."""
    gen = torch.Generator().manual_seed(9)
    torch.manual_seed(9)
    model = nn.Sequential(
        nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU(), nn.Conv2d(8, 12, 1), nn.ReLU(),
        nn.Conv2d(12, 12, 3, stride=2, padding=1, groups=3, bias=False),
    )  # fmt: skip
    reference = nn.Sequential(
        *(m.__class__(**_conv_kwargs(m)) if isinstance(m, nn.Conv2d) else m for m in model)
    )
    reference.load_state_dict(model.state_dict())
    depthwise, grouped = torch.rand(8, generator=gen) > 0.4, torch.rand(12, 4, generator=gen) > 0.5
    with torch.no_grad():
        reference[0].weight.mul_(depthwise[:, None, None, None])
        reference[4].weight.mul_(grouped[:, :, None, None])
    weights = (model[0].weight, model[4].weight)
    assert convert(model, {"0": depthwise, "4": grouped}) is model
    assert isinstance(model[0], MaskedConv2d) and model[0].groups == 8 and model[4].groups == 3
    assert model[0].weight is weights[0] and model[4].weight is weights[1]
    x = torch.randn(2, 8, 9, 9, generator=gen)
    torch.testing.assert_close(model(x), reference(x), rtol=1e-5, atol=1e-5)
    model(x).sum().backward()
    assert torch.all(model[0].weight.grad[~depthwise] == 0)
    assert torch.all(model[4].weight.grad[~grouped] == 0)
    for backend in ("cpu", "torch"):
        model[0].backend = model[4].backend = backend
        torch.testing.assert_close(model(x), reference(x), rtol=1e-5, atol=1e-5)

    direct = MaskedConv2d(4, 6, 3, padding=1, groups=2, mask=torch.rand(6, 2, generator=gen) > 0.5)
    assert direct.weight.shape == (6, 2, 3, 3) and direct.mask.shape == (6, 2)
    with pytest.raises(ValueError, match=r"mask: expected a filter mask \(6,\) or a kernel mask \(6, 2\)"):
        direct.set_mask(torch.ones(6, 4, dtype=torch.bool))
    from_conv = MaskedConv2d.from_conv(nn.Conv2d(4, 4, 3, groups=4), torch.tensor([True, False, True, True]))
    assert from_conv.groups == 4 and from_conv(torch.randn(1, 4, 5, 5)).shape == (1, 4, 3, 3)

    restore(model)
    assert type(model[0]) is nn.Conv2d and model[0].groups == 8 and model[4].groups == 3
    assert model[0].weight is weights[0]


def _conv_kwargs(conv: nn.Conv2d) -> dict:
    return dict(
        in_channels=conv.in_channels, out_channels=conv.out_channels, kernel_size=conv.kernel_size,
        stride=conv.stride, padding=conv.padding, groups=conv.groups, bias=conv.bias is not None,
    )  # fmt: skip


@pytest.mark.parametrize("backend", ["cpu", "torch", pytest.param("triton", marks=requires_triton)])
def test_opcheck_grouped(backend: str) -> None:
    gen = torch.Generator().manual_seed(6)
    dev = TRITON_DEVICE if backend == "triton" else "cpu"
    # small: the triton case runs interpreted without a GPU
    x = torch.randn(1, 4, 5, 6, generator=gen).to(dev).requires_grad_()
    w = torch.randn(4, 2, 3, 3, generator=gen).to(dev).requires_grad_()
    b = torch.randn(4, generator=gen).to(dev).requires_grad_()
    mask = (torch.rand(4, 2, generator=gen) > 0.4).to(dev)
    for bias in (b, None):
        args = (x, w, mask, bias, [2, 1], [1, 0], [1, 2], backend, 2)
        torch.library.opcheck(torch.ops.fastprune.masked_conv2d.default, args)
    grad_y = torch.randn(1, 4, 3, 2, generator=gen).to(dev)
    args = (grad_y, x.detach(), w.detach(), mask, [2, 1], [1, 0], [1, 2], [True, True], backend, 2)
    torch.library.opcheck(torch.ops.fastprune.masked_conv2d_backward.default, args)


@pytest.mark.parametrize("backend", ["cpu", "torch"])
def test_grouped_eager_calls_match_the_registered_op_bitwise(backend: str) -> None:
    gen = torch.Generator().manual_seed(4)
    x, w, b = torch.randn(2, 6, 7, 6, generator=gen), torch.randn(9, 2, 3, 3, generator=gen), torch.randn(9)
    for mask in (torch.rand(9, generator=gen) > 0.5, torch.rand(9, 2, generator=gen) > 0.5):
        results = []
        for eager in (True, False):
            xg, wg, bg = (t.clone().requires_grad_() for t in (x, w, b))
            if eager:
                y = masked_conv2d(xg, wg, mask, bg, 1, 1, 1, 3, backend=backend)
            else:
                mask2d = _expanded(mask, 2)
                y = torch.ops.fastprune.masked_conv2d(xg, wg, mask2d, bg, [1, 1], [1, 1], [1, 1], backend, 3)
            y.backward(torch.ones_like(y))
            results.append((y.detach(), xg.grad, wg.grad, bg.grad))
        assert all(torch.equal(a, c) for a, c in zip(*results))


def test_fake_tensors_and_compile_take_groups() -> None:
    from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode

    with FakeTensorMode():
        y = masked_conv2d(
            torch.empty(2, 6, 7, 6), torch.empty(6, 1, 3, 3), torch.ones(6, dtype=torch.bool), None, 2, 1,
            groups=6, backend="cpu",
        )  # fmt: skip
    assert isinstance(y, FakeTensor) and y.shape == (2, 6, 4, 3)
    gen = torch.Generator().manual_seed(8)
    x, w = torch.randn(2, 4, 7, 6, generator=gen), torch.randn(4, 2, 3, 3, generator=gen)
    mask = torch.tensor([True, False, True, True])

    def conv(x, w):
        return masked_conv2d(x, w, mask, None, 1, 1, 1, 2, backend="cpu")

    compiled = torch.compile(conv, backend="aot_eager", fullgraph=True)
    assert torch.equal(compiled(x, w), conv(x, w))
