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
    "vgg16": (10, 14_987_722),  # = vgg16_params(10), the cfg arithmetic below
    "mobilenet_v2": (10, 2_296_922),  # = mobilenet_v2_params(10), the cfg arithmetic below
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
        "vgg16",
        "mobilenet_v2",
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
    assert model.family == ("imagenet" if name in ("resnet18", "resnet34", "resnet50") else "cifar")


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
    with pytest.raises(ValueError, match="valid names.*vgg16, mobilenet_v2"):
        create("vgg19")
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


# --- CIFAR VGG-16 and MobileNetV2: counts computed from the published layouts, not from the models ---

VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]


def vgg16_params(classes: int) -> int:
    """3x3 convs without bias, BN (weight + bias) after each; Linear 512-512, BN1d, Linear 512-classes."""
    total, cin = 0, 3
    for v in VGG16_CFG:
        if v != "M":
            total += 9 * cin * v + 2 * v
            cin = v
    return total + (512 * 512 + 512) + 2 * 512 + (512 * classes + classes)


# (expansion, out, blocks, first stride): kuangliu/pytorch-cifar mobilenetv2.py
MBV2_CFG = [
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


def mobilenet_v2_params(classes: int) -> int:
    """Stem 3x3 3->32 + BN; per block (hidden h = t * cin): 1x1 cin->h, BN, depthwise 3x3 (9h), BN,
    1x1 h->cout, BN, plus a 1x1 cin->cout + BN shortcut when stride 1 and cin != cout; 1x1 320->1280 + BN;
    FC."""
    total, cin = 27 * 32 + 2 * 32, 32
    for t, cout, n, first_stride in MBV2_CFG:
        for b in range(n):
            h = t * cin
            total += cin * h + 2 * h + 9 * h + 2 * h + h * cout + 2 * cout
            if (first_stride if b == 0 else 1) == 1 and cin != cout:
                total += cin * cout + 2 * cout
            cin = cout
    return total + 320 * 1280 + 2 * 1280 + 1280 * classes + classes


def test_vgg16_and_mobilenet_v2_counts_match_the_arithmetic():
    assert vgg16_params(10) == PARAMS["vgg16"][1]
    assert round(vgg16_params(10) / 1e7, 1) == 1.5  # Li et al. Table 2: VGG-16 on CIFAR-10, 1.5e7
    assert mobilenet_v2_params(10) == PARAMS["mobilenet_v2"][1]
    for name, expected in (("vgg16", vgg16_params), ("mobilenet_v2", mobilenet_v2_params)):
        assert n_params(cached(name, 100)) == expected(100)


@pytest.mark.parametrize("name", ["vgg16", "mobilenet_v2"])
def test_cifar_extra_models_forward_and_create(name):
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert cached(name).eval()(x).shape == (2, 10)
        assert cached(name, 100).eval()(x).shape == (2, 100)
    assert create(f" {name.upper()} ", 7).arch == name
    assert create(name, small_input=True).family == "cifar"
    with pytest.raises(ValueError, match="small_input=False.*CIFAR"):
        create(name, small_input=False)
    with pytest.raises(ValueError, match="num_classes"):
        create(name, 0)
    traced = torch.fx.symbolic_trace(cached(name).eval())  # plain module calls, traceable
    with torch.no_grad():
        assert torch.equal(traced(x), cached(name)(x))


def test_vgg16_layout():
    model = cached("vgg16")
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [v for v in VGG16_CFG if v != "M"]
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) and c.bias is None for c in convs)
    kinds = [type(m).__name__ for m in model.features]
    assert kinds.count("MaxPool2d") == 4 and kinds[-3:] == ["Conv2d", "BatchNorm2d", "ReLU"]
    for i, kind in enumerate(kinds):
        if kind == "Conv2d":
            assert kinds[i + 1 : i + 3] == ["BatchNorm2d", "ReLU"]
    assert [type(m).__name__ for m in model.classifier] == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert (model.classifier[0].in_features, model.classifier[0].out_features) == (512, 512)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feats = model.eval().features(x)
        assert feats.shape == (2, 512, 2, 2)
        # the reference code pools with nn.AvgPool2d(2) on the 2x2 map
        assert torch.allclose(model(x), model.classifier(nn.AvgPool2d(2)(feats).flatten(1)), atol=1e-6)


def test_mobilenet_v2_layout_and_shortcuts():
    model = cached("mobilenet_v2")
    blocks = list(model.layers)
    assert len(blocks) == 17 and model.conv1.stride == (1, 1) and model.conv1.out_channels == 32
    strides = [b.conv2.stride[0] for b in blocks]
    assert strides == [1, 1, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1]
    assert all(b.conv2.groups == b.conv2.in_channels == b.conv2.out_channels for b in blocks)
    projected = [(b.conv1.in_channels, b.conv3.out_channels) for b in blocks if b.shortcut is not None]
    assert projected == [(32, 16), (16, 24), (64, 96), (160, 320)]
    assert blocks[0].conv1.out_channels == 32  # expansion 1 still has the 1x1 expand conv (reference)
    shapes = {}
    hooks = [
        blocks[i].register_forward_hook(lambda _m, _i, o, i=i: shapes.__setitem__(i, o.shape))
        for i in (2, 5, 9, 16)
    ]
    with torch.no_grad():
        model.eval()(torch.randn(2, 3, 32, 32))
    for h in hooks:
        h.remove()
    assert [tuple(shapes[i][1:]) for i in (2, 5, 9, 16)] == [
        (24, 32, 32),
        (32, 16, 16),
        (64, 8, 8),
        (320, 4, 4),
    ]


def test_mobilenet_v2_residual_rule():
    # With the projecting conv3 zeroed (and default BN statistics, eval mode) a block outputs its shortcut.
    x = torch.randn(2, 24, 8, 8)
    identity, strided = models.InvertedResidual(24, 24, 6, 1), models.InvertedResidual(24, 32, 6, 2)
    projection = models.InvertedResidual(24, 32, 6, 1)
    for block in (identity, strided, projection):
        nn.init.zeros_(block.conv3.weight)
        block.eval()
    with torch.no_grad():
        assert torch.equal(identity(x), x)
        assert strided(x).shape == (2, 32, 4, 4) and not strided(x).any()
        assert torch.equal(projection(x), projection.shortcut(x)) and projection.shortcut(x).any()


def test_vgg16_and_mobilenet_v2_init():
    vgg, mbv2 = cached("vgg16"), cached("mobilenet_v2")
    w = vgg.features[-3].weight  # 512 -> 512, fan_out = 9 * 512
    assert abs(w.std().item() / math.sqrt(2 / (9 * 512)) - 1) < 0.01
    expand = mbv2.layers[-1].conv1.weight  # 1x1 160 -> 960, fan_out = 960
    assert abs(expand.std().item() / math.sqrt(2 / 960) - 1) < 0.02
    depthwise = mbv2.layers[-1].conv2.weight  # (960, 1, 3, 3), fan_out = 9 * 960
    assert abs(depthwise.std().item() / math.sqrt(2 / (9 * 960)) - 1) < 0.05
    for linear in (vgg.classifier[0], vgg.classifier[3], mbv2.linear):
        assert abs(linear.weight.std().item() / 0.01 - 1) < 0.1 and not linear.bias.any()
    bns = [
        m for model in (vgg, mbv2) for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
    ]
    assert len(bns) == 13 + 1 + 1 + 17 * 3 + 4 + 1
    assert all(torch.all(b.weight == 1) and not b.bias.any() for b in bns)
