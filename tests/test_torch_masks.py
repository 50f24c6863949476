"""fastprune masks <-> torch.nn.utils.prune: export, import (and remove), materialized copies."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

import fastprune
from fastprune.pruning import KernelPruner, SoftFilterPruner
from fastprune.pruning.layers import following_batchnorm
from fastprune.pruning.torch_masks import export_masks, import_masks, materialized


def _resnet20() -> nn.Module:
    torch.manual_seed(0)
    model = fastprune.models.create("resnet20")
    with torch.no_grad():  # non-trivial BN statistics, so outputs depend on every channel
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    return model.eval()


def _input() -> torch.Tensor:
    return torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def _convs(model: nn.Module) -> dict[str, nn.Conv2d]:
    return {name: m for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}


@pytest.mark.parametrize("given", [True, False], ids=["masks", "from-zeros"])
def test_soft_filter_masks_round_trip(given: bool) -> None:
    model = _resnet20()
    pruner = SoftFilterPruner(model, criterion="l2", rate=0.4)
    pruner.step()
    keys = set(model.state_dict())
    with torch.no_grad():
        expected = model(_input())
    assert export_masks(model, pruner.masks if given else None) is model
    state = model.state_dict()
    for name in pruner.masks:
        assert f"{name}.weight_orig" in state and f"{name}.weight_mask" in state
        assert f"{name}.weight" not in state
        assert state[f"{name}.weight_mask"].shape == state[f"{name}.weight_orig"].shape
    with torch.no_grad():
        assert torch.equal(model(_input()), expected)

    masks = import_masks(model)
    assert set(pruner.masks) <= set(masks)
    for name, mask in pruner.masks.items():
        assert masks[name].dtype == torch.bool and torch.equal(masks[name], mask), name
    if not given:  # derived from zeros: every conv and the FC layer, nothing pruned in the FC
        assert masks["fc"].shape == (10,) and masks["fc"].all()

    again = import_masks(model, remove=True)
    assert set(again) == set(masks) and all(torch.equal(again[n], masks[n]) for n in masks)
    assert set(model.state_dict()) == keys
    assert not any(m._forward_pre_hooks for m in model.modules())
    assert all(isinstance(c.weight, nn.Parameter) for c in _convs(model).values())
    with torch.no_grad():
        assert torch.equal(model(_input()), expected)
    assert import_masks(model) == {}


def test_ln_structured_comes_back_as_filter_masks() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3)
    norms = conv.weight.detach().flatten(1).norm(dim=1)
    expected = torch.zeros(6, dtype=torch.bool)
    expected[norms.topk(3).indices] = True
    model = nn.Sequential(conv)
    prune.ln_structured(conv, "weight", amount=0.5, n=2, dim=0)
    masks = import_masks(model)
    assert masks["0"].shape == (6,) and torch.equal(masks["0"], expected)
    # on a whole ResNet: every conv's filters
    net = _resnet20()
    for conv in _convs(net).values():
        prune.ln_structured(conv, "weight", amount=0.5, n=2, dim=0)
    for name, mask in import_masks(net).items():
        assert mask.shape == (_convs(net)[name].out_channels,) and int(mask.sum()) * 2 in (
            mask.numel(),
            mask.numel() + 1,
        )


def test_input_channel_pruning_comes_back_as_kernel_masks() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3)
    prune.random_structured(conv, "weight", amount=0.5, dim=1)
    mask = import_masks(nn.Sequential(conv))["0"]
    assert mask.shape == (6, 4)
    assert torch.equal(mask, conv.weight_mask[:, :, 0, 0].bool()) and int(mask.any(dim=0).sum()) == 2


def test_kernel_masks_round_trip() -> None:
    model = _resnet20()
    masks = KernelPruner(model, criterion="spectral_norm", mode="sorted", fraction=0.5).compute_masks()
    reference = copy.deepcopy(model)
    KernelPruner(reference).apply(masks=masks)
    export_masks(model, masks)
    with torch.no_grad():
        assert torch.equal(model(_input()), reference(_input()))
    back = import_masks(model)
    assert set(back) == set(masks)
    for name, mask in masks.items():
        assert back[name].shape == mask.shape and torch.equal(back[name], mask), name
    # the zeros KernelPruner.apply left say the same masks
    export_masks(reference)
    back = import_masks(reference, remove=True)
    assert all(torch.equal(back[name], mask) for name, mask in masks.items())


def test_unstructured_masks_keep_the_full_shape() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(4, 6, 3), nn.Flatten(), nn.Linear(6, 5))
    prune.l1_unstructured(model[0], "weight", amount=0.3)
    prune.l1_unstructured(model[2], "weight", amount=0.3)
    prune.l1_unstructured(model[2], "bias", amount=0.4)  # a pruned bias: not returned, but removed
    masks = import_masks(model)
    assert masks["0"].shape == (6, 4, 3, 3) and torch.equal(masks["0"], model[0].weight_mask.bool())
    assert masks["2"].shape == (5, 6) and torch.equal(masks["2"], model[2].weight_mask.bool())
    # a full-shape mask exports as it is
    fresh = nn.Sequential(nn.Conv2d(4, 6, 3))
    export_masks(fresh, {"0": masks["0"]})
    assert torch.equal(fresh[0].weight_mask, model[0].weight_mask)
    import_masks(model, remove=True)
    assert set(model.state_dict()) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    assert int((model[2].bias == 0).sum()) == 2


@pytest.mark.parametrize("groups", [8, 2])
def test_grouped_and_depthwise_convs(groups: int) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(8, 8, 3, groups=groups, padding=1), nn.ReLU())
    x = torch.randn(2, 8, 6, 6)
    per_group = 8 // groups
    filters = torch.tensor([True, False] * 4)
    kernels = torch.rand(8, per_group, generator=torch.Generator().manual_seed(2)) > 0.4
    kernels[0] = True  # filter 0 whole, filter 1 partial: kernel-structured unless depthwise
    kernels[1, 0] = False
    for mask in (filters, kernels):
        net = copy.deepcopy(model)
        reference = copy.deepcopy(model)
        with torch.no_grad():
            reference[0].weight.mul_(mask.view(8, -1, 1, 1).float())
        export_masks(net, {"0": mask})
        assert net[0].weight_mask.shape == (8, per_group, 3, 3)
        assert torch.equal(net(x), reference(x))
        back = import_masks(net)["0"]
        # depthwise: a kernel is a whole filter, so kernel masks come back as (O,) filter masks
        expected = mask.reshape(8) if per_group == 1 else mask
        assert torch.equal(back, expected)
        export_masks(reference)  # from the zeros
        assert torch.equal(import_masks(reference)["0"], expected)
    with pytest.raises(ValueError, match=r"masks\['0'\].*shape"):
        export_masks(copy.deepcopy(model), {"0": torch.ones(8, 8, dtype=torch.bool)})


def test_export_onto_a_torch_pruned_layer_combines_the_masks() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(4, 6, 3))
    prune.ln_structured(model[0], "weight", amount=0.5, n=1, dim=0)
    filters = import_masks(model)["0"]
    kernels = torch.ones(6, 4, dtype=torch.bool)
    kernels[:, 0] = False
    export_masks(model, {"0": kernels})
    assert torch.equal(import_masks(model)["0"], filters[:, None] & kernels)


def test_materialized_copy_and_flops_match_pruning_by_zeroing() -> None:
    base = _resnet20()
    torch_pruned = copy.deepcopy(base)
    for conv in _convs(torch_pruned).values():
        prune.ln_structured(conv, "weight", amount=0.4, n=1, dim=0)
    masks = import_masks(torch_pruned)
    zeroed = copy.deepcopy(base)
    with torch.no_grad():
        for net in (zeroed, torch_pruned):  # the pruned channels' BN zeroed too (a final pruning)
            modules = dict(net.named_modules())
            for name, keep in masks.items():
                if net is zeroed:
                    modules[name].weight.mul_(keep.float().view(-1, 1, 1, 1))
                bn = following_batchnorm(net, name)
                bn.weight.mul_(keep.float())
                bn.bias.mul_(keep.float())
    plain = materialized(torch_pruned)
    assert set(plain.state_dict()) == set(base.state_dict())
    assert not any(m._forward_pre_hooks for m in plain.modules())
    assert all(isinstance(c.weight, nn.Parameter) for c in _convs(plain).values())
    assert "conv1.weight_orig" in torch_pruned.state_dict()  # the original is untouched
    assert torch.equal(torch_pruned.conv1.weight_orig, base.conv1.weight)
    with torch.no_grad():
        assert torch.equal(plain(_input()), zeroed(_input()))
        assert torch.equal(plain(_input()), torch_pruned(_input()))
    for name, conv in _convs(plain).items():
        assert torch.equal(conv.weight, _convs(zeroed)[name].weight)
    expected, got = fastprune.count_flops(zeroed), fastprune.count_flops(plain)
    assert got.macs == expected.macs and got.params == expected.params
    assert got.macs < got.dense_macs
    assert materialized(base) is not base and set(materialized(base).state_dict()) == set(base.state_dict())


def test_errors_name_the_argument_and_module() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="format"):
        export_masks(model, format="onnx")
    with pytest.raises(ValueError, match=r"masks: 'nope' is not a module"):
        export_masks(model, {"nope": torch.ones(4, dtype=torch.bool)})
    with pytest.raises(ValueError, match=r"masks: '1' is a BatchNorm2d"):
        export_masks(model, {"1": torch.ones(4, dtype=torch.bool)})
    with pytest.raises(
        ValueError, match=r"masks\['0'\]: expected shape \(4,\) or \(4, 3\) or \(4, 3, 3, 3\)"
    ):
        export_masks(model, {"0": torch.ones(3, dtype=torch.bool)})
    with pytest.raises(ValueError, match=r"masks\['3'\].*dtype torch.float32"):
        export_masks(model, {"3": torch.ones(2)})
    with pytest.raises(ValueError, match=r"masks\['3'\]: expected a bool tensor, got list"):
        export_masks(model, {"3": [True, False]})
    with pytest.raises(ValueError, match="masks: empty"):
        export_masks(model, {})
    with pytest.raises(TypeError, match="masks"):
        export_masks(model, [torch.ones(4, dtype=torch.bool)])
    with pytest.raises(ValueError, match="model: Sequential has no Conv2d or Linear"):
        export_masks(nn.Sequential(nn.ReLU()))
    for fn in (export_masks, import_masks, materialized):
        with pytest.raises(TypeError, match="model"):
            fn("resnet20")
    # validation comes first: a bad mask leaves the model unpruned
    with pytest.raises(ValueError, match=r"masks\['3'\]"):
        export_masks(model, {"0": torch.ones(4, dtype=torch.bool), "3": torch.ones(3, dtype=torch.bool)})
    assert not any(m._forward_pre_hooks for m in model.modules())


def test_exported_names() -> None:
    assert fastprune.export_masks is export_masks and fastprune.import_masks is import_masks
    assert fastprune.pruning.export_masks is export_masks
    assert {"export_masks", "import_masks"} <= set(fastprune.__all__) & set(fastprune.pruning.__all__)


def test_count_flops_and_compact_take_models_pruned_by_torch():
    from torch.nn.utils import prune

    from fastprune import compact, count_flops, models
    from fastprune.pruning.torch_masks import materialized

    torch.manual_seed(7)
    model = models.create("vgg16").eval()
    for module in model.features:
        if isinstance(module, nn.Conv2d):
            prune.ln_structured(module, "weight", amount=0.5, n=2, dim=0)
    plain = materialized(model)
    report = count_flops(model)
    assert report.macs == count_flops(plain).macs and report.params == count_flops(plain).params
    assert report.macs < report.dense_macs  # BN left as is: constants, but filters go
    small = compact(model)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        assert torch.allclose(small(x), expected, rtol=0, atol=1e-5 * float(expected.abs().max()))
    assert hasattr(model.features[0], "weight_orig")  # the model itself is untouched
