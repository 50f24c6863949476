"""Compaction of any CNN (fastprune.compaction.graph): VGG-16, MobileNetV2 and a model with depthwise,
grouped and 1x1 convs, an add and a concatenation become smaller copies of themselves with the masked
model's outputs (1e-5 relative) and count_flops' MACs and parameters; constants of removed channels are
folded; what cannot be removed stays."""

import pytest
import torch
import torch_pruning as tp
from test_graph_liveness import Broken, Mixed, NoFamily
from torch import nn

from fastprune import models
from fastprune.benchmarks.compaction import random_bn_stats
from fastprune.compaction import CompactResNet, compact, count_compact_flops, load_compact, save_compact
from fastprune.compaction.modules import ConstantInputConv2d, ConstantInputLinear
from fastprune.pruning import SoftFilterPruner, UnsupportedModelError, count_flops

RTOL = 1e-5


def _assert_same(masked: nn.Module, small: nn.Module, shape, seed: int = 0) -> None:
    x = torch.randn(3, *shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        expected, got = masked.eval()(x), small(x)
    assert got.shape == expected.shape
    scale = expected.abs().max()
    assert float((got - expected).abs().max()) <= RTOL * float(scale), float(
        (got - expected).abs().max() / scale
    )


def _prune_groups(model: nn.Module, shape, rate: float, seed: int = 0) -> int:
    """Zero `rate` of the channels of every coupled group (Torch-Pruning's), as a group-aware pruner
    would: every conv filter and BN channel producing them. Returns the channels zeroed."""
    gen = torch.Generator().manual_seed(seed)
    graph = tp.DependencyGraph().build_dependency(model.eval(), example_inputs=torch.zeros(1, *shape))
    zeroed = 0
    for group in graph.get_all_groups(root_module_types=(nn.Conv2d,)):
        count = int(len(group[0].idxs) * rate)
        if count == 0:
            continue
        roots = set(torch.randperm(len(group[0].idxs), generator=gen)[:count].tolist())
        for item in group:
            module = item.dep.target.module
            if not graph.is_out_channel_pruning_fn(item.dep.handler):
                continue
            chosen = [i for i, r in zip(item.idxs, item.root_idxs) if r in roots]
            with torch.no_grad():
                if isinstance(module, (nn.Conv2d, nn.BatchNorm2d)):
                    module.weight[chosen] = 0
                    if module.bias is not None:
                        module.bias[chosen] = 0
        zeroed += count
    return zeroed


def test_vgg16_filter_pruned_compacts_exactly():
    torch.manual_seed(0)
    model = random_bn_stats(models.create("vgg16")).eval()
    pruner = SoftFilterPruner(model, "l2", 0.4)
    pruner.step()
    pruner.finalize()
    small, report = compact(model, return_report=True)
    assert not isinstance(small, CompactResNet) and type(small) is type(model)
    _assert_same(model, small, (3, 32, 32))
    masked = count_flops(model)
    dense = count_compact_flops(small, (3, 32, 32))
    assert dense.macs == masked.macs == report.macs_after < report.macs_before
    assert dense.params == masked.params
    convs = [m for m in small.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [int(pruner.masks[n].sum()) for n, _ in pruner.convs]
    assert count_flops(small).macs == dense.macs  # a compacted model is counted dense
    assert report.layers[0].filters_kept == convs[0].out_channels


def test_soft_pruned_constants_become_constant_inputs():
    """Pruning without zeroing BN: removed filters leave BN constants that the next layers read. Those
    channels go; each reader gets them back as constant input planes (the ResNet path's way): the same
    outputs, exact at zero-padded borders too, and count_flops' MACs (which counts such inputs as alive)."""
    torch.manual_seed(1)
    model = random_bn_stats(models.create("mobilenet_v2")).eval()
    _prune_groups(model, (3, 32, 32), 0.3)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.bias[module.weight == 0] = 0.5  # a removed channel's constant, positive after ReLU
    small, report = compact(model, return_report=True)
    _assert_same(model, small, (3, 32, 32))
    readers = [m for m in small.modules() if isinstance(m, (ConstantInputConv2d, ConstantInputLinear))]
    assert readers and sum(layer.const_inputs for layer in report.layers) > 0
    masked, dense = count_flops(model), count_compact_flops(small, (3, 32, 32))
    assert dense.macs == masked.macs < masked.dense_macs


def test_constants_read_by_padded_convs(tmp_path):
    """VGG-16 soft-pruned (no finalize): removed filters leave BN constants that padded 3x3 convs read;
    near the borders their contribution varies: computed from constant planes, not folded into a bias.
    Saved and loaded back with them."""
    torch.manual_seed(5)
    model = random_bn_stats(models.create("vgg16")).eval()
    SoftFilterPruner(model, "l2", 0.4).step()
    with torch.no_grad():
        for module in model.features:
            if isinstance(module, nn.BatchNorm2d):
                module.bias.add_(1.0)  # positive constants survive the ReLU
    small = compact(model)
    _assert_same(model, small, (3, 32, 32))
    convs = [m for m in small.features if isinstance(m, nn.Conv2d)]
    assert convs[0].out_channels < 64 and isinstance(convs[1], ConstantInputConv2d)
    assert count_compact_flops(small, (3, 32, 32)).macs == count_flops(model).macs
    save_compact(small, tmp_path / "vgg_constants.pt")
    _assert_same(model, load_compact(tmp_path / "vgg_constants.pt"), (3, 32, 32))


def test_mobilenet_v2_group_pruned_matches_count_flops():
    torch.manual_seed(2)
    model = random_bn_stats(models.create("mobilenet_v2")).eval()
    assert _prune_groups(model, (3, 32, 32), 0.4) > 1000
    small = compact(model)
    _assert_same(model, small, (3, 32, 32))
    masked, dense = count_flops(model), count_compact_flops(small, (3, 32, 32))
    assert dense.macs == masked.macs < 0.7 * masked.dense_macs
    assert dense.params == masked.params
    depthwise = [m for m in small.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert all(m.groups == m.in_channels == m.out_channels for m in depthwise)  # still depthwise


def test_mixed_model_with_concat_and_kept_grouped_conv():
    torch.manual_seed(3)
    model = random_bn_stats(Mixed()).eval()
    with torch.no_grad():  # stem channel 1 and pw channel 1: ZERO in c and a -> gone from the concat
        for conv, bn in ((model.stem, model.stem_bn), (model.pw, model.pw_bn)):
            conv.weight[1] = 0
            bn.weight[1] = 0
            bn.bias[1] = 0
    small = compact(model, input_shape=(3, 8, 8))
    _assert_same(model, small, (3, 8, 8))
    # the grouped conv (groups=2 of 16 channels) keeps its inputs whole: the channels it reads stay
    assert small.grouped.in_channels == 16 and small.grouped.groups == 2
    assert count_flops(small, (3, 8, 8)).macs <= count_flops(model, (3, 8, 8)).dense_macs


def test_resnet_variants_take_the_graph_path():
    torch.manual_seed(4)
    variants = []
    grouped = random_bn_stats(models.create("resnet20"))
    grouped.layer1[0].conv2 = nn.Conv2d(16, 16, 3, padding=1, groups=2, bias=False)
    variants.append(grouped)
    act = random_bn_stats(models.create("resnet20"))
    act.layer2[0].relu = nn.GELU()
    variants.append(act)
    for model in variants:
        pruner = SoftFilterPruner(model.eval(), "l2", 0.4)
        pruner.step()
        pruner.finalize()
        small = compact(model)
        assert not isinstance(small, CompactResNet)
        _assert_same(model, small, (3, 32, 32))
        assert count_compact_flops(small, (3, 32, 32)).macs < count_flops(model).dense_macs


def test_graph_compaction_errors():
    with pytest.raises(ValueError, match="compact: input_shape is required to trace NoFamily"):
        compact(NoFamily())
    with pytest.raises(UnsupportedModelError, match="Broken: Torch-Pruning's DependencyGraph cannot trace"):
        compact(Broken(), input_shape=(3, 8, 8))


@pytest.mark.parametrize("arch", ["vgg16", "mobilenet_v2"])
def test_train_prune_count_compact_save_load_end_to_end(arch, tmp_path, capsys):
    """`fastprune train --arch vgg16|mobilenet_v2` (two batches), then `fastprune compact` on its run
    folder: the compact network saved, loaded back by load_compact, equal to the masked model."""
    from fastprune.cli import main
    from fastprune.compaction import load_compact
    from fastprune.compaction.cli import _load, masked_model_from_checkpoint

    run = tmp_path / "run"
    args = ["train", "--arch", arch, "--epochs", "1", "--max-batches", "2", "--batch-size", "16"]
    assert main([*args, "--rate", "0.4", "--out", str(run), "--no-progress"]) == 0
    out = tmp_path / "small.pt"
    assert main(["compact", str(run), "-o", str(out), "--batch-sizes", "1", "--repeats", "1"]) == 0
    printed = capsys.readouterr().out
    assert f"{arch}, input (3, 32, 32)" in printed and "wrote" in printed
    masked = masked_model_from_checkpoint(_load(run / "model.pt"))
    small = load_compact(out)
    _assert_same(masked, small, (3, 32, 32))
    masked_count, small_count = count_flops(masked), count_compact_flops(small, (3, 32, 32))
    assert small_count.macs == masked_count.macs < masked_count.dense_macs


def test_soft_filter_pruner_prunes_coupled_channels_together():
    torch.manual_seed(6)
    model = random_bn_stats(models.create("mobilenet_v2")).eval()
    pruner = SoftFilterPruner(model, "fpgm", 0.3)
    assert pruner.groups is not None and len(pruner.groups) > 10
    pruner.step()
    for index in range(len(model.layers)):  # the depthwise conv's channels are its expansion's
        name = f"layers.{index}"
        assert torch.equal(pruner.masks[f"{name}.conv1"], pruner.masks[f"{name}.conv2"]), name
    pruner.finalize()
    small = compact(model)
    _assert_same(model, small, (3, 32, 32))
    masked = count_flops(model)
    assert count_compact_flops(small, (3, 32, 32)).macs == masked.macs < 0.8 * masked.dense_macs
    # ResNets keep pruning every conv on its own (compaction handles their residual streams)
    assert SoftFilterPruner(models.create("resnet20"), "l2", 0.4).groups is None
    with pytest.raises(ValueError, match="coupling: expected one of"):
        SoftFilterPruner(model, "l2", 0.4, coupling="tight")


def test_group_score_is_the_mean_of_normalised_member_scores():
    from fastprune.pruning.coupling import CoupledGroup, group_masks

    gen = torch.Generator().manual_seed(0)
    a, b = torch.rand(8, generator=gen) * 100, torch.rand(6, generator=gen)
    index_a, index_b = [7, 6, 5, 4, 3, 2], [0, 1, 2, 3, 4, 5]  # group channel k: filter 7 - k of a, k of b
    masks = group_masks(
        [CoupledGroup(6, [("a", index_a), ("b", index_b)])], {"a": a, "b": b}, {"a": 0.5, "b": 0.3}
    )
    sa, sb = a.double()[index_a], b.double()[index_b]
    expected_score = sa / sa.mean() + sb / sb.mean()
    dropped = set(torch.argsort(expected_score)[:3].tolist())  # floor(6 * max(0.5, 0.3)) = 3
    assert {k for k in range(6) if not masks["b"][index_b[k]]} == dropped
    assert {k for k in range(6) if not masks["a"][index_a[k]]} == dropped
    assert masks["a"][0] and masks["a"][1]  # filters outside the group stay


def test_untraceable_auto_coupling_warns_and_prunes_each_conv():
    class FixedSize(nn.Module):  # traces only at 8x8 (the flatten feeds a fixed-size linear layer)
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.shortcut = nn.Conv2d(3, 8, 1)
            self.fc = nn.Linear(8 * 8 * 8, 2)

        def forward(self, x):
            return self.fc(torch.flatten(self.conv(x) + self.shortcut(x), 1))

    with pytest.warns(UserWarning, match="coupled channels not traced.*input_shape"):
        pruner = SoftFilterPruner(FixedSize(), "l2", 0.5)
    assert pruner.groups is None and [n for n, _ in pruner.convs] == ["conv"]  # the papers' default
    traced = SoftFilterPruner(FixedSize(), "l2", 0.5, input_shape=(3, 8, 8))
    assert [n for n, _ in traced.convs] == ["conv", "shortcut"] and len(traced.groups) == 1
    traced.step()
    assert (
        torch.equal(traced.masks["conv"], traced.masks["shortcut"]) and int(traced.masks["conv"].sum()) == 4
    )
    with pytest.raises(UnsupportedModelError):
        SoftFilterPruner(FixedSize(), "l2", 0.5, coupling="groups", input_shape=(3, 16, 16))
