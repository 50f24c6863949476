"""fastprune.models: architectures, parameter counts, create()/names(), init."""

from __future__ import annotations

import functools
import math
from typing import Optional

import pytest
import torch
from torch import nn

from fastprune import models
from fastprune.models import ShortcutA, create, names


@functools.cache
def cached(name: str, classes: int = 10, small_input: Optional[bool] = None) -> nn.Module:
    """One instance per configuration, for the tests that only read a model."""
    return create(name, classes, small_input=small_input)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# Known counts: He et al. / akamaster's option-A CIFAR table (10 classes); torchvision (1000 classes).
PARAMS = {
    "resnet20": (10, 269_722),
    "resnet32": (10, 464_154),
    "resnet44": (10, 658_586),
    "resnet56": (10, 853_018),
    "resnet110": (10, 1_727_962),
    "resnet18": (1000, 11_689_512),
    "resnet34": (1000, 21_797_672),
    "resnet50": (1000, 25_557_032),
}


def test_names_and_families():
    assert names() == [
        "resnet20",
        "resnet32",
        "resnet44",
        "resnet56",
        "resnet110",
        "resnet18",
        "resnet34",
        "resnet50",
    ]
    assert set(names()) == set(PARAMS)


@pytest.mark.parametrize("name", list(PARAMS))
def test_parameter_counts_and_attributes(name):
    classes, expected = PARAMS[name]
    model = cached(name, classes)
    assert n_params(model) == expected
    assert model.arch == name
    assert model.family == (
        "cifar" if name in ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110") else "imagenet"
    )


def test_resnet20_option_b_count_differs_by_the_projections():
    # The 272,474 often quoted for ResNet-20 is option B: 1x1 projections 16->32, 32->64 with BN.
    projections = (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
    assert n_params(cached("resnet20")) + projections == 272_474
    assert not any(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) for m in cached("resnet20").modules())


def test_create_is_case_insensitive_and_validates():
    assert create("ResNet56").arch == "resnet56"
    assert create(" RESNET20 ", 100).fc.out_features == 100
    with pytest.raises(ValueError, match="resnet20.*resnet50"):
        create("resnet21")
    with pytest.raises(ValueError, match="valid names"):
        create("vgg16")
    with pytest.raises(ValueError, match="num_classes"):
        create("resnet20", 0)
    with pytest.raises(ValueError, match="CIFAR"):
        create("resnet20", small_input=False)
    assert create("resnet20", small_input=True).arch == "resnet20"


def _stage_shapes(model: nn.Module, x: torch.Tensor) -> dict[str, tuple[int, ...]]:
    shapes = {}
    hooks = [
        getattr(model, n).register_forward_hook(lambda _m, _i, o, n=n: shapes.__setitem__(n, tuple(o.shape)))
        for n in ("layer1", "layer2", "layer3", "layer4")
        if hasattr(model, n)
    ]
    with torch.no_grad():
        shapes["out"] = tuple(model.eval()(x).shape)
    for h in hooks:
        h.remove()
    return shapes


def test_cifar_forward_shapes():
    shapes = _stage_shapes(cached("resnet20"), torch.randn(2, 3, 32, 32))
    assert shapes == {
        "layer1": (2, 16, 32, 32),
        "layer2": (2, 32, 16, 16),
        "layer3": (2, 64, 8, 8),
        "out": (2, 10),
    }


def test_imagenet_forward_shapes_both_stems():
    x = torch.randn(1, 3, 64, 64)
    standard = _stage_shapes(cached("resnet18", 1000), x)
    assert standard["layer1"] == (1, 64, 16, 16) and standard["layer4"] == (1, 512, 2, 2)
    assert standard["out"] == (1, 1000)
    tiny = cached("resnet18", 200, small_input=True)
    shapes = _stage_shapes(tiny, x)
    assert shapes["layer1"] == (1, 64, 64, 64) and shapes["layer4"] == (1, 512, 8, 8)
    assert shapes["out"] == (1, 200)
    assert tiny.conv1.kernel_size == (3, 3) and tiny.conv1.stride == (1, 1)
    assert isinstance(tiny.maxpool, nn.Identity) and tiny.small_input
    assert n_params(cached("resnet18", 200)) - n_params(tiny) == 64 * 3 * (49 - 9)
    assert _stage_shapes(cached("resnet50", 1000), torch.randn(1, 3, 32, 32))["layer4"] == (1, 2048, 1, 1)


def test_torchvision_layout():
    model = cached("resnet50", 1000)
    keys = set(model.state_dict())
    for key in (
        "conv1.weight",
        "bn1.running_var",
        "layer1.0.downsample.0.weight",
        "layer2.0.downsample.1.bias",
        "layer4.2.conv3.weight",
        "layer4.2.bn3.num_batches_tracked",
        "fc.bias",
    ):
        assert key in keys
    assert len(keys) == 320  # torchvision resnet50().state_dict() has 320 entries
    assert model.layer2[0].conv2.stride == (2, 2) and model.layer2[0].conv1.stride == (1, 1)  # v1.5
    assert model.layer2[0].downsample[0].stride == (2, 2)
    assert isinstance(model.maxpool, nn.MaxPool2d) and model.conv1.kernel_size == (7, 7)
    r18 = cached("resnet18", 1000)
    assert r18.layer1[0].downsample is None and isinstance(r18.layer2[0].downsample, nn.Sequential)


def test_option_a_shortcut():
    block = cached("resnet20").layer2[0]
    assert isinstance(block.downsample, ShortcutA) and n_params(block.downsample) == 0
    x = torch.randn(2, 16, 8, 8)
    y = block.downsample(x)
    assert y.shape == (2, 32, 4, 4)
    assert torch.equal(y[:, :16], x[:, :, ::2, ::2]) and not y[:, 16:].any()
    centred = ShortcutA(16, 32, stride=2, pad_before=8)(x)
    assert (
        torch.equal(centred[:, 8:24], x[:, :, ::2, ::2])
        and not centred[:, :8].any()
        and not centred[:, 24:].any()
    )
    with pytest.raises(ValueError):
        ShortcutA(16, 32, pad_before=17)


def test_kaiming_init():
    model = cached("resnet50", 1000)
    w = model.layer4[0].conv2.weight  # fan_out = 9 * 512
    assert abs(w.std().item() / math.sqrt(2 / (9 * 512)) - 1) < 0.01
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(torch.all(b.weight == 1) and not b.bias.any() for b in bns)
    cifar = cached("resnet56")
    assert abs(cifar.layer3[5].conv1.weight.std().item() / math.sqrt(2 / (9 * 64)) - 1) < 0.05
    assert not cifar.fc.bias.any()


def test_models_module_reachable_lazily():
    import fastprune

    assert fastprune.models is models
