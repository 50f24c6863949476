"""fastprune.compact: the compact network equals the masked one (outputs, MACs, parameters), saves and
loads without the original, scripts, and refuses what it cannot handle."""

import json

import pytest
import torch
from torch import nn

import fastprune
from fastprune import models
from fastprune.compaction import apply_masks, compact, count_compact_flops, load_compact, save_compact
from fastprune.models import BasicBlock, Bottleneck, ShortcutA
from fastprune.pruning import KernelPruner, SoftFilterPruner, count_flops

RTOL = 1e-5


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny inputs: one thread avoids waiting on a descheduled OpenMP thread at every op on a busy
    machine (the results are the same; the benchmark uses the default thread count)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _random_bn(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(0.5 * torch.randn(n, generator=g))
            m.running_var.copy_(0.5 + torch.rand(n, generator=g))
            m.weight.data.copy_(1 + 0.3 * torch.randn(n, generator=g))
            m.bias.data.copy_(0.3 * torch.randn(n, generator=g))
    return model


def _random_filter_masks(model, rate, seed=0, shortcuts=True):
    g = torch.Generator().manual_seed(seed)
    return {
        name: torch.rand(m.out_channels, generator=g) >= rate
        for name, m in model.named_modules()
        if isinstance(m, nn.Conv2d) and (shortcuts or "downsample" not in name)
    }


def _finalize_bn(model, masks):
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name, keep in masks.items():
            bn = modules[name[:-1] + "1" if name.endswith("downsample.0") else name.replace("conv", "bn")]
            bn.weight.mul_(keep)
            bn.bias.mul_(keep)


def _net(arch, seed=0):
    if arch in ("mini-basic", "mini-bottleneck"):
        return _mini(BasicBlock if arch == "mini-basic" else Bottleneck, seed)
    torch.manual_seed(seed)
    kwargs = {"small_input": True} if arch in ("resnet18", "resnet50") else {}
    return _random_bn(models.create(arch, num_classes=10, **kwargs), seed).eval()


class _MiniResNet(nn.Module):
    """torchvision layout with small widths: basic or bottleneck blocks, projection shortcuts."""

    def __init__(self, block, planes=(8, 16), counts=(2, 2), num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1, self.relu = nn.BatchNorm2d(8), nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = 8
        for index, (p, count) in enumerate(zip(planes, counts)):
            blocks = []
            for b in range(count):
                stride, out = (2 if index and not b else 1), p * block.expansion
                down = None
                if stride != 1 or inplanes != out:
                    down = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride, bias=False), nn.BatchNorm2d(out))
                blocks.append(block(inplanes, p, stride, down))
                inplanes = out
            setattr(self, f"layer{index + 1}", nn.Sequential(*blocks))
        self.avgpool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(inplanes, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(self.avgpool(self.layer2(self.layer1(x))), 1))


def _mini(block, seed=0):
    torch.manual_seed(seed)
    return _random_bn(_MiniResNet(block), seed).eval()


def _check_equal(masked, small, size=16, batch=2):
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        ref, got = masked(x), small(x)
    assert got.shape == ref.shape
    scale = ref.abs().max()
    assert float((ref - got).abs().max()) <= RTOL * float(scale), float((ref - got).abs().max() / scale)
    flops, dense = count_flops(masked, (3, size, size)), count_compact_flops(small, (3, size, size))
    assert (dense.macs, dense.conv_macs, dense.params) == (flops.macs, flops.conv_macs, flops.params)
    return ref


@pytest.mark.parametrize(
    "arch, rate",
    [("resnet20", 0.0), ("resnet20", 0.3), ("resnet20", 0.7), ("mini-basic", 0.4), ("mini-bottleneck", 0.5)],
)
@pytest.mark.parametrize("finalize", [True, False])
def test_random_filter_masks(arch, rate, finalize):
    model = _net(arch)
    masks = _random_filter_masks(model, rate, seed=int(10 * rate))
    apply_masks(model, masks)
    if finalize:
        _finalize_bn(model, masks)
    small = compact(model)
    assert isinstance(small, nn.Module) and not small.training
    _check_equal(model, small)
    if rate > 0:
        assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("finalize", [True, False])
def test_soft_filter_pruner_masks(finalize):
    model = _net("resnet20", seed=1)
    pruner = SoftFilterPruner(model, "l2", 0.4)
    pruner.step()
    if finalize:
        pruner.finalize()
    small, report = compact(model, return_report=True)
    _check_equal(model, small)
    kept = {row.name: row.filters_kept for row in report.layers}
    assert all(kept[name] == n for name, n in pruner.kept_filters().items())
    if not finalize:  # the BN constants of removed filters stay: some are read as constant channels
        assert sum(row.const_inputs for row in report.layers) > 0
        assert any(bias > 0 for _, _, _, bias in report.streams)


def test_kernel_pruner_masks_and_dead_inputs():
    model = _net("mini-basic", seed=2)
    masks = KernelPruner(model, criterion="spectral_norm", mode="sorted", fraction=0.5).compute_masks()
    masks["layer1.0.conv2"][:, :3] = False  # input channels dead for every filter: dropped
    masks["layer2.0.conv1"][:, 5] = False
    filters = _random_filter_masks(model, 0.3, seed=3)
    small, report = compact(model, filter_masks=filters, kernel_masks=masks, return_report=True)
    masked = apply_masks(apply_masks(_net("mini-basic", seed=2), filters), None, masks)
    _check_equal(masked, small)
    rows = {row.name: row for row in report.layers}
    assert rows["layer1.0.conv2"].in_kept <= 8 - 3 and rows["layer2.0.conv1"].in_kept <= 7
    assert report.zero_kernels > 0 and 0 < rows["layer2.1.conv2"].kernel_sparsity < 1
    assert "zero kernels" in str(report)


@pytest.mark.parametrize("arch", ["mini-bottleneck", "resnet18"])
def test_projection_shortcuts(arch):
    model = _net(arch, seed=3)
    masks = _random_filter_masks(model, 0.5, seed=4)
    apply_masks(model, masks)
    _finalize_bn(model, {k: v for k, v in masks.items() if "layer2" in k})  # mix of both semantics
    small = compact(model)
    _check_equal(model, small, size=8)
    index = 0 if arch == "mini-bottleneck" else 2  # the first block with a projection
    assert isinstance(small.blocks[index].shortcut.conv, nn.Conv2d)


def test_residual_stream_narrowed_and_option_a_alignment():
    model = _net("resnet20", seed=4)
    model.layer2[0].downsample = ShortcutA(16, 32, 2, pad_before=8)  # non-default padding placement
    dead = [1, 4, 9]  # zero in every contributor of layer1's stream: dropped from the stream
    with torch.no_grad():
        for conv, bn in [(model.conv1, model.bn1)] + [(b.conv2, b.bn2) for b in model.layer1]:
            conv.weight[dead] = 0
            bn.weight[dead] = 0
            bn.bias[dead] = 0
        model.layer2[0].conv2.weight[:10] = 0  # removed filters next to the shortcut's channels
    small, report = compact(model, return_report=True)
    ref = _check_equal(model, small)
    assert small.blocks[0].combine.width == 13 and 22 <= small.blocks[3].combine.width <= 32
    assert small.blocks[3].combine.res_mode != 0  # the option-A channels are placed by an index map
    assert any(kept < width for _, width, kept, _ in report.streams)
    pruner = SoftFilterPruner(model, "l1", 0.5)  # on top, random real masks
    pruner.step()
    _check_equal(model, compact(model))
    assert ref.shape == (2, 10)


def test_fully_removed_conv():
    model = _net("resnet20", seed=5)
    with torch.no_grad():
        model.layer1[1].conv1.weight.zero_()
        model.layer2[1].conv2.weight.zero_()  # the block's output is its shortcut + BN constants
    small = compact(model)
    _check_equal(model, small)
    assert small.blocks[1].main[0].conv.out_channels == 0 and small.blocks[4].main[1].conv.out_channels == 0
    assert small.blocks[4].combine.has_bias
    assert torch.jit.script(small) is not None


def test_original_untouched_and_float64():
    model = _net("resnet20", seed=6).double()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    masks = _random_filter_masks(model, 0.4, seed=6)
    kernels = {"layer1.0.conv1": torch.rand(16, 16, generator=torch.Generator().manual_seed(0)) > 0.5}
    small = compact(model, filter_masks=masks, kernel_masks=kernels)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # bitwise: nothing modified
    assert next(small.parameters()).dtype == torch.float64
    masked = apply_masks(_net("resnet20", seed=6).double(), masks, kernels)
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(small(x), masked(x), rtol=1e-12, atol=1e-12 * float(masked(x).abs().max()))
        assert not torch.allclose(small(x), model(x))  # the masks were applied (to a copy)


def test_save_load_torchscript(tmp_path):
    model = _net("resnet20", seed=8)
    SoftFilterPruner(model, "l2", 0.4).step()  # no finalize: constants, biases, index maps
    small = compact(model)
    path = tmp_path / "small.pt"
    save_compact(small, path)
    blob = torch.load(path, weights_only=True)
    assert set(blob) == {"format", "spec", "state_dict"} and json.loads(blob["spec"])["arch"] == "resnet20"
    assert fastprune.compact is compact and fastprune.save_compact is save_compact
    loaded = fastprune.load_compact(path)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        ref = small(x)
        assert torch.equal(loaded(x), ref)
        scripted = torch.jit.script(small)
        assert torch.allclose(scripted(x), ref, rtol=0, atol=1e-6)
        traced = torch.jit.trace(loaded, x)
        assert torch.allclose(traced(x), ref, rtol=0, atol=1e-6)
        assert scripted(torch.randn(3, 3, 24, 24)).shape == (3, 10)
    scripted.save(str(tmp_path / "small.ts"))
    assert torch.allclose(torch.jit.load(str(tmp_path / "small.ts"))(x), ref, atol=1e-6)
    with pytest.raises(TypeError, match=r"expected a network from compact\(\), got CifarResNet"):
        save_compact(model, tmp_path / "x.pt")
    torch.save({"format": "other"}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="save_compact"):
        load_compact(tmp_path / "bad.pt")


def test_onnx_export(tmp_path):
    onnx = pytest.importorskip("onnx")
    model = _net("resnet20", seed=9)
    SoftFilterPruner(model, "l2", 0.4).step()  # no finalize: constant channels and residual biases too
    small = compact(model)
    path = tmp_path / "small.onnx"
    torch.onnx.export(small, (torch.randn(1, 3, 16, 16),), str(path), dynamo=False)
    onnx.checker.check_model(onnx.load(str(path)))


def test_unsupported_and_bad_masks():
    model = _net("resnet20")
    with pytest.raises(ValueError, match=r"filter_masks\['layer9.conv1'\]: not a module"):
        compact(model, filter_masks={"layer9.conv1": torch.ones(16, dtype=torch.bool)})
    with pytest.raises(ValueError, match=r"filter_masks\['layer1.0.bn1'\]: a BatchNorm2d"):
        compact(model, filter_masks={"layer1.0.bn1": torch.ones(16, dtype=torch.bool)})
    with pytest.raises(
        ValueError, match=r"kernel_masks\['conv1'\]: expected a bool tensor of shape \(16, 3\)"
    ):
        compact(model, kernel_masks={"conv1": torch.ones(16, 4, dtype=torch.bool)})
    with pytest.raises(ValueError, match=r"shape \(16,\), got torch.float32"):
        compact(model, filter_masks={"conv1": torch.ones(16)})


def test_cli_model_pt_and_checkpoint(tmp_path, capsys):
    from fastprune.cli import main

    model = _net("resnet20", seed=10)
    pruner = SoftFilterPruner(model, "l2", 0.4)
    pruner.step()
    pruner.finalize()
    state = {"arch": "resnet20", "num_classes": 10, "model": model.state_dict(),
             "filter_masks": pruner.masks, "kernel_masks": None}  # fmt: skip
    torch.save(state, tmp_path / "model.pt")
    out = tmp_path / "small.pt"
    args = ["-o", str(out), "--batch-sizes", "1", "--repeats", "1", "--input-size", "16"]
    assert main(["compact", str(tmp_path / "model.pt"), *args]) == 0
    text = capsys.readouterr().out
    assert "parameters" in text and "latency ms, batch 1" in text and "MACs" in text
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        ref = model.eval()(x)
        assert torch.allclose(load_compact(out)(x), ref, rtol=0, atol=1e-5 * float(ref.abs().max()))
    checkpoint = {"config": {"arch": "resnet20"}, "model": model.state_dict(), "pruner": pruner.state_dict()}
    torch.save(checkpoint, tmp_path / "checkpoint.pt")
    assert (
        main(["compact", str(tmp_path / "checkpoint.pt"), "-o", str(out), "--batch-sizes", "--report"]) == 0
    )
    assert "zero kernels left" in capsys.readouterr().out
    torch.save({"arch": "resnet20", "model": {}}, tmp_path / "empty.pt")
    capsys.readouterr()
    assert main(["compact", str(tmp_path / "empty.pt"), "-o", str(out)]) == 2  # one line, no traceback
    err = capsys.readouterr().err
    assert (
        "fastprune compact: error: compact: the checkpoint gives no num_classes" in err
        and "Traceback" not in err
    )


def test_benchmark_pruning_helper():
    from fastprune.benchmarks.compaction import prune_l2, random_bn_stats

    model = prune_l2(random_bn_stats(models.create("resnet20")), 0.4).eval()
    small = compact(model)
    _check_equal(model, small)
    assert small.blocks[0].main[0].conv.out_channels == 10


# ---- for_inference: BN folded into the convs, ReLU fused, run by fastprune.ops.conv2d ------------------


def _pruned(arch, rate, finalize=True, seed=0):
    """(masked model, its compact form) for random filter masks at ``rate``."""
    model = _net(arch, seed)
    masks = _random_filter_masks(model, rate, seed=seed + int(10 * rate))
    apply_masks(model, masks)
    if finalize:
        _finalize_bn(model, masks)
    return model, compact(model)


def _rel_err(got, ref):
    assert got.shape == ref.shape
    return float((got.detach() - ref.detach()).abs().max() / ref.detach().abs().max())


def _modules_of(model, kind):
    return [m for m in model.modules() if isinstance(m, kind)]


@pytest.mark.parametrize(
    "arch, rate, finalize, size",
    [
        ("resnet20", 0.3, True, 16),
        ("resnet20", 0.5, False, 15),  # BN constants of removed filters: constant input channels
        ("resnet56", 0.5, True, 16),
        ("resnet18", 0.5, True, 8),
        ("resnet50", 0.3, False, 8),
    ],
)
def test_for_inference_matches_masked_model(arch, rate, finalize, size):
    from fastprune.compaction.inference import FoldedConvBN
    from fastprune.compaction.modules import ConvBN

    model, small = _pruned(arch, rate, finalize)
    before = {k: v.clone() for k, v in small.state_dict().items()}
    fused = small.for_inference()
    assert fused is not small and not fused.training
    assert not _modules_of(fused, nn.BatchNorm2d) and not _modules_of(fused, ConvBN)
    assert len(_modules_of(fused, FoldedConvBN)) == len(_modules_of(small, ConvBN)) > 0
    x = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref, got = model(x), fused(x)
        assert _rel_err(got, ref) <= RTOL
        assert _rel_err(fused(x[1:2]), ref[1:2]) <= RTOL  # batch 1
        small_out = small(x)
    # The compact model is unchanged: same state, still BatchNorm, same outputs as the masked model.
    after = small.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert _modules_of(small, nn.BatchNorm2d) and _modules_of(small, ConvBN)
    assert _rel_err(small_out, ref) <= RTOL


def test_for_inference_channels_last_model():
    model, small = _pruned("resnet20", 0.4, seed=2)
    fused = small.for_inference().to(memory_format=torch.channels_last)
    units = [m for m in fused.modules() if type(m).__name__ == "FoldedConvBN" and not m.empty]
    # The folded weights stay contiguous (the kernel's layout) through a channels_last conversion.
    assert units and all(m.weight.is_contiguous() for m in units)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = model(x)
        for inp in (x, x.to(memory_format=torch.channels_last)):
            assert _rel_err(fused(inp), ref) <= RTOL


def test_for_inference_with_grad_enabled_and_no_grad():
    model, small = _pruned("resnet20", 0.3, seed=4)
    fused = small.for_inference()
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 3, 16, 16, generator=gen)
    with torch.no_grad():
        ref = model(x)
        assert _rel_err(fused(x), ref) <= RTOL
        x_req = x.clone().requires_grad_()
        out = fused(x_req)  # no_grad: the fast path runs even for an input that requires grad
        assert not out.requires_grad and _rel_err(out, ref) <= RTOL
    out = fused(x)  # grad enabled, the input does not require grad (the FC's parameters do)
    assert _rel_err(out, ref) <= RTOL
    # Grad enabled and the input requires grad: the fast path declines, gradients reach the input.
    grad_out = torch.randn(ref.shape, generator=gen)
    x_fused, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = fused(x_fused)
    assert out.requires_grad and _rel_err(out, ref) <= RTOL
    out.backward(grad_out)
    model(x_ref).backward(grad_out)
    assert x_fused.grad is not None and float(x_fused.grad.abs().max()) > 0
    assert _rel_err(x_fused.grad, x_ref.grad) <= 1e-4
    assert not any(t.requires_grad for t in fused.state_dict().values())


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_for_inference_dtypes_and_fully_removed_conv(dtype, tol):
    model = _net("resnet20", seed=5).to(dtype)
    with torch.no_grad():
        model.layer1[1].conv1.weight.zero_()  # an empty unit: (N, 0, H, W)
    small = compact(model)
    assert small.blocks[1].main[0].conv.out_channels == 0
    fused = small.for_inference()
    assert fused.blocks[1].main[0].empty
    x = torch.randn(2, 3, 16, 16, dtype=dtype)
    with torch.no_grad():
        ref, got = model(x), fused(x)
    assert got.dtype == dtype
    assert _rel_err(got, ref) <= tol


def _conv_bn_spec(c_in, c_out, *, bias, affine, relu, select=None, n_const=0, track=True):
    return {
        "select": select, "n_const": n_const, "relu": relu,
        "conv": {"in": c_in, "out": c_out, "kernel": [3, 3], "stride": [2, 1], "padding": [1, 0],
                 "dilation": [1, 2], "bias": bias, "padding_mode": "zeros"},
        "bn": {"eps": 1e-3, "momentum": 0.1, "affine": affine, "track_running_stats": track},
    }  # fmt: skip


@pytest.mark.parametrize(
    "bias, affine, relu", [(True, False, True), (False, True, False), (True, True, True)]
)
def test_folded_conv_bn_unit_matches_conv_bn(bias, affine, relu):
    from fastprune.compaction.inference import FoldedConvBN
    from fastprune.compaction.modules import ConvBN

    spec = _conv_bn_spec(5, 7, bias=bias, affine=affine, relu=relu, select=[0, 2, 3, 5], n_const=1)
    unit = ConvBN(spec)
    g = torch.Generator().manual_seed(6)
    with torch.no_grad():
        unit.adapt.const.copy_(torch.randn(1, generator=g))
        unit.conv.weight.copy_(torch.randn(unit.conv.weight.shape, generator=g))
        if bias:
            unit.conv.bias.copy_(torch.randn(7, generator=g))
        if affine:
            unit.bn.weight.copy_(1 + 0.3 * torch.randn(7, generator=g))
            unit.bn.bias.copy_(0.3 * torch.randn(7, generator=g))
        unit.bn.running_mean.copy_(0.5 * torch.randn(7, generator=g))
        unit.bn.running_var.copy_(0.5 + torch.rand(7, generator=g))
    unit.eval()
    folded = FoldedConvBN(unit)
    x = torch.randn(2, 6, 9, 10, generator=g)
    with torch.no_grad():
        ref, got = unit(x.clone()), folded(x)
    assert _rel_err(got, ref) <= RTOL
    if relu:
        assert bool((got == 0).any()) and bool((got >= 0).all())
    else:
        assert bool((got < 0).any())


def test_for_inference_refuses_batch_norm_without_running_stats():
    from fastprune.compaction.inference import FoldedConvBN
    from fastprune.compaction.modules import ConvBN

    _, small = _pruned("resnet20", 0.3, seed=7)
    unit = small.blocks[0].main[0]
    unit.bn = nn.BatchNorm2d(unit.bn.num_features, track_running_stats=False)
    before = {k: v.clone() for k, v in small.state_dict().items()}
    with pytest.raises(ValueError, match="without running statistics cannot be folded"):
        small.for_inference()
    with pytest.raises(ValueError, match="without running statistics cannot be folded"):
        FoldedConvBN(unit)
    assert isinstance(small.blocks[0].main[0], ConvBN)  # the compact model is left as it was
    after = small.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    spec = _conv_bn_spec(4, 3, bias=False, affine=True, relu=True, track=False)
    with pytest.raises(ValueError, match="without running statistics"):
        FoldedConvBN(ConvBN(spec))


@pytest.mark.parametrize("mode", ["circular", "reflect", "replicate"])
def test_for_inference_keeps_padding_mode(mode):
    model = _net("resnet20")
    model.layer1[0].conv1.padding_mode = mode
    fused = compact(model).for_inference()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref, got = model(x), fused(x)
    assert float((got - ref).abs().max() / ref.abs().max()) < 1e-5


def test_benchmark_timing_helpers():
    import platform

    from fastprune.benchmarks.common import interleaved_times, median_ratio, steady_allocator

    calls = []
    times = interleaved_times([lambda: calls.append("a"), lambda: calls.append("b")], 3)
    assert calls == ["a", "b"] * 4  # one warm-up each, then round-robin
    assert [len(t) for t in times] == [3, 3]
    # Median of per-round ratios, not the ratio of medians: 2/1, 9/3, 4/2 -> 2, 3, 2 -> 2.
    assert median_ratio([2.0, 9.0, 4.0], [1.0, 3.0, 2.0]) == 2.0
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert steady_allocator() is True


@pytest.mark.parametrize("batch", [1, 4])
def test_for_inference_fuses_residual_adds(batch):
    """The benchmark's network (l2-pruned ResNet-56, BN zeroed): most residual adds run inside the convs
    (fp_conv2d_accumulate), some blocks with constant channels off the main path included."""
    from fastprune.benchmarks.compaction import prune_l2, random_bn_stats
    from fastprune.compaction.inference import FusedResidualBlock

    torch.manual_seed(0)
    masked = prune_l2(random_bn_stats(models.create("resnet56")), 0.4).eval()
    fused = compact(masked).for_inference()
    blocks = _modules_of(fused, FusedResidualBlock)
    assert len(blocks) >= 10 and any(b.others.numel() for b in blocks)
    x = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert _rel_err(fused(x), masked(x)) <= RTOL


def test_for_inference_imagenet_stem_maxpool():
    """The 7x7 stem + max-pool of the ImageNet layout: the inference form pools in channels_last."""
    from fastprune.compaction.inference import ChannelsLastMaxPool

    torch.manual_seed(3)
    model = _random_bn(models.create("resnet18", num_classes=10, small_input=False), 3).eval()
    masks = _random_filter_masks(model, 0.4, seed=4)
    apply_masks(model, masks)
    _finalize_bn(model, masks)
    fused = compact(model).for_inference()
    assert isinstance(fused.maxpool, ChannelsLastMaxPool)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert _rel_err(fused(x), model(x)) <= RTOL
