"""Channel liveness (fastprune.pruning.channels) and FLOPs counting (fastprune.pruning.flops).

The exact counter is checked against two independent references: a brute-force count that runs the
masked network and reads, at every conv, which outputs are zero and which inputs change which outputs
(no structural reasoning), and a physically smaller dense network built by hand.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import fastprune
from fastprune.models import BasicBlock, Bottleneck, ShortcutA, create
from fastprune.pruning import (
    UnsupportedModelError,
    channel_liveness,
    count_flops,
    paper_flops_reduction,
    paper_macs,
)


def _calibrate_bn(model: nn.Module, x: torch.Tensor, gen: torch.Generator, zero_bn: bool) -> nn.Module:
    """Random gamma/beta (beta > 0, so live channels stay live after ReLU; both 0 after removed filters
    if ``zero_bn``) and running statistics set to the statistics of ``x`` itself (one train-mode pass
    with momentum 1), then eval mode."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.copy_(0.5 + torch.rand(m.num_features, generator=gen))
            m.bias.data.copy_(0.2 + 0.4 * torch.rand(m.num_features, generator=gen))
            m.momentum = 1.0
    if zero_bn:
        _zero_bn_of_removed(model)
    with torch.no_grad():
        model.train()(x)
    return model.eval()


def _zero_filters(model: nn.Module, frac: float, gen: torch.Generator, kernel_frac: float = 0.0) -> None:
    """Zero a random ``frac`` of the filters of every conv, then a random ``kernel_frac`` of its kernels."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            m.weight.data[torch.randperm(m.out_channels, generator=gen)[: int(frac * m.out_channels)]] = 0
            if kernel_frac:
                m.weight.data *= (torch.rand(m.weight.shape[:2], generator=gen) >= kernel_frac)[
                    :, :, None, None
                ]


def _zero_bn_of_removed(model: nn.Module) -> None:
    """gamma = beta = 0 after every all-zero filter: its channel becomes exactly 0."""
    for m in model.modules():
        for conv_name, bn_name in (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"), ("0", "1")):
            conv, bn = getattr(m, conv_name, None), getattr(m, bn_name, None)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                dead = ~(conv.weight != 0).flatten(1).any(1)
                bn.weight.data[dead] = 0
                bn.bias.data[dead] = 0


class MiniResNet(nn.Module):
    """A small ResNet with torchvision's attribute names, built from fastprune's blocks (not a model from
    fastprune.models): the analysis must accept any module tree of this structure."""

    def __init__(self, block: type, widths: tuple[int, int] = (8, 16)) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16)
        self.relu, self.maxpool = nn.ReLU(), nn.MaxPool2d(3, 2, 1)
        inplanes = 16
        for index, planes in enumerate(widths):
            blocks = []
            for b in range(2):
                stride, out = (2 if index and not b else 1), planes * block.expansion
                proj = None
                if stride != 1 or inplanes != out:
                    proj = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride, bias=False), nn.BatchNorm2d(out))
                blocks.append(block(inplanes, planes, stride, proj))
                inplanes = out
            setattr(self, f"layer{index + 1}", nn.Sequential(*blocks))
        self.avgpool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(inplanes, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer2(self.layer1(self.maxpool(self.relu(self.bn1(self.conv1(x))))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def brute_force(
    model: nn.Module, x: torch.Tensor
) -> tuple[int, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """MACs (conv + FC) and (alive_in, alive_out) per layer, observed on a forward pass of ``x``.

    A conv output channel is alive iff it is nonzero somewhere; an input channel is alive iff it is
    nonzero somewhere and feeding a lone impulse pattern on it changes some alive output channel."""
    records: dict[str, tuple[nn.Module, torch.Tensor, torch.Tensor]] = {}
    hooks = [
        m.register_forward_hook(
            lambda mod, inp, out, n=n: records.__setitem__(n, (mod, inp[0].clone(), out.clone()))
        )
        for n, m in model.named_modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    with torch.no_grad():
        model.eval()(x)
        macs, alive = 0, {}
        for name, (mod, inp, out) in records.items():
            if isinstance(mod, nn.Conv2d):
                alive_out = out.ne(0).any(3).any(2).any(0)
                nonzero_in = inp.ne(0).any(3).any(2).any(0)
                c, (kh, kw) = mod.in_channels, mod.kernel_size
                probe = torch.zeros(c, c, kh, kw)  # a k x k input reaches every tap (padding <= k // 2)
                probe[torch.arange(c), torch.arange(c)] = 1.0 + torch.rand(c, kh, kw)
                reads = mod(probe).ne(0).any(3).any(2)  # (in, out)
                alive_in = nonzero_in & reads[:, alive_out].any(1)
                macs += int(alive_out.sum()) * int(alive_in.sum()) * kh * kw * out.shape[2] * out.shape[3]
            else:
                alive_out = torch.ones(mod.out_features, dtype=torch.bool)
                reads = (mod(torch.eye(mod.in_features)) - mod(torch.zeros(1, mod.in_features))).ne(0).any(1)
                alive_in = inp.ne(0).any(0) & reads
                macs += mod.out_features * int(alive_in.sum())
            alive[name] = (alive_in, alive_out)
    for h in hooks:
        h.remove()
    return macs, alive


@pytest.mark.parametrize(
    "arch, frac, zero_bn, kernel_frac",
    [
        ("resnet20", 0.4, False, 0.0),  # removed filters leave CONST channels (BN beta > 0)
        ("resnet20", 0.5, True, 0.3),  # ZERO channels, kernel-level zeros
        ("resnet20", 0.75, True, 0.0),  # residual channels die where every contributor does
        ("basic", 0.5, True, 0.2),  # basic blocks with projection shortcuts, max pool
        ("bottleneck", 0.5, True, 0.0),  # bottlenecks
        ("bottleneck", 0.3, False, 0.3),
    ],
)
def test_exact_count_matches_brute_force(arch, frac, zero_bn, kernel_frac):
    gen = torch.Generator().manual_seed(int(100 * frac) + 7 * zero_bn + int(10 * kernel_frac))
    torch.manual_seed(0)
    if arch.startswith("resnet"):
        model = create(arch)
    else:
        model = MiniResNet(BasicBlock if arch == "basic" else Bottleneck)
    x = torch.randn(4, 3, 16, 16, generator=gen)
    _zero_filters(model, frac, gen, kernel_frac)
    _calibrate_bn(model, x, gen, zero_bn)
    macs, alive = brute_force(model, x)
    liveness = channel_liveness(model)
    assert set(alive) == set(liveness.layers)
    for name, (alive_in, alive_out) in alive.items():
        assert torch.equal(liveness[name].alive_out, alive_out), name
        assert torch.equal(liveness[name].alive_in, alive_in), name
    report = count_flops(model, (3, 16, 16))
    assert report.macs == macs
    assert report.macs < report.dense_macs and report.params < report.dense_params
    kinds = torch.cat([layer.in_kinds for layer in liveness.convs])
    assert (kinds == 2).any() and (kinds == (0 if zero_bn else 1)).any()  # ZERO or CONST channels met


def test_exact_count_matches_a_physically_smaller_network():
    torch.manual_seed(0)
    masked = create("resnet20").eval()
    block = masked.layer1[1]
    keep = torch.tensor([i for i in range(16) if i % 3])  # 10 of 16 filters of layer1.1.conv1
    dead = torch.tensor([i for i in range(16) if i % 3 == 0])
    block.conv1.weight.data[dead] = 0  # default BN (mu 0, beta 0): the removed channels are ZERO
    small = copy.deepcopy(masked)
    sb = small.layer1[1]
    sb.conv1, sb.bn1, sb.conv2 = (
        nn.Conv2d(16, 10, 3, 1, 1, bias=False),
        nn.BatchNorm2d(10),
        nn.Conv2d(10, 16, 3, 1, 1, bias=False),
    )
    sb.conv1.weight.data = block.conv1.weight.data[keep].clone()
    sb.conv2.weight.data = block.conv2.weight.data[:, keep].clone()
    sb.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(small(x), masked(x), rtol=1e-5, atol=1e-5)
    small_report, masked_report = count_flops(small), count_flops(masked)
    assert small_report.dense_macs == small_report.macs == masked_report.macs
    assert small_report.dense_params == masked_report.params  # removed filters and their BN not counted
    assert masked_report.dense_macs - masked_report.macs == 2 * 6 * 16 * 9 * 32 * 32


def test_dense_counts():
    r56 = count_flops(create("resnet56"))
    assert r56.conv_macs == 125_485_056 == paper_macs("resnet56")  # 1.255e8, the papers' dense figure
    assert r56.macs == 125_485_056 + 64 * 10 and r56.fc_macs == 640
    assert r56.params == r56.dense_params == 853_018 and r56.macs_reduction == 0
    r50 = create("resnet50", 1000)
    report = count_flops(r50)
    assert report.macs == 4_089_184_256 and report.conv_macs == 4_087_136_256  # ~4.1e9 (v1.5)
    # The papers' 3.86e9 is conv MACs of the original v1 layout (stride on the first 1x1 conv).
    for stage in (r50.layer2, r50.layer3, r50.layer4):
        stage[0].conv1.stride, stage[0].conv2.stride = (2, 2), (1, 1)
    assert count_flops(r50).conv_macs == paper_macs("resnet50") == 3_855_925_248
    assert "conv MACs" in str(report) and "layer4.2.conv3" in str(report)


def test_const_versus_zero_bn_semantics():
    model = create("resnet20").eval()
    model.conv1.weight.data[[3, 4, 5, 6]] = 0
    bn = model.bn1
    bn.bias.data[3], bn.bias.data[4] = 0.5, -0.5  # CONST 0.5; CONST -0.5 -> ZERO after ReLU
    bn.weight.data[5], bn.running_mean[5] = 3.0, 0.0  # beta 0, mu 0: exactly 0 although gamma != 0
    bn.running_mean[6] = 0.25  # beta - gamma * mu / sqrt(var + eps) != 0
    model.conv1.weight.data[7] += 1.0  # kept filter, but gamma = beta = 0 flattens it to ZERO
    bn.weight.data[7], bn.bias.data[7] = 0, 0
    live = channel_liveness(model)
    stem, first = live["conv1"], live["layer1.0.conv1"]
    assert stem.alive_out.tolist() == [i not in (3, 4, 5, 6) for i in range(16)]  # forward rule only
    expected6 = -0.25 / (1 + 1e-5) ** 0.5
    assert first.in_state[3] == 0.5 and abs(first.in_state[6].item() - max(expected6, 0)) == 0
    assert first.in_kinds.tolist()[3:8] == [1, 0, 0, 0, 0]
    assert first.alive_in.tolist() == [i not in (4, 5, 6, 7) for i in range(16)]
    assert stem.out_kinds.tolist()[3:8] == [1, 1, 0, 1, 0]
    model.bn1.running_mean[6] = -0.25  # now CONST > 0 after ReLU: alive input, not removable there
    assert channel_liveness(model)["layer1.0.conv1"].alive_in[6]


def test_residual_channel_alive_while_any_contributor_is():
    model = create("resnet20").eval()  # default BN: a removed filter gives exactly 0
    model.conv1.weight.data[2] = 0
    for b in range(3):
        model.layer1[b].conv2.weight.data[2] = 0
    assert not channel_liveness(model)["layer2.0.conv1"].alive_in[2]
    assert not channel_liveness(model)["layer1.1.conv1"].alive_in[2]
    model.layer1[1].conv2.weight.data[2, 0, 1, 1] = 1.0  # one contributor alive again
    live = channel_liveness(model)
    assert not live["layer1.1.conv1"].alive_in[2]  # before the add of block 1: still ZERO
    assert live["layer1.2.conv1"].alive_in[2] and live["layer2.0.conv1"].alive_in[2]
    assert live["layer2.0.conv1"].in_channels == 16 and live["layer3.0.conv1"].in_channels == 32


def test_option_a_padding_channels():
    model = create("resnet20").eval()
    model.layer2[0].conv2.weight.data[[5, 20]] = 0
    live = channel_liveness(model)
    # 20 is a padded channel of the shortcut: ZERO in both contributors; 5 carries stage-1 channel 5.
    assert live["layer2.1.conv1"].alive_in.tolist() == [i != 20 for i in range(32)]
    assert live["layer2.2.conv1"].alive_in.all()  # layer2.1 writes channel 20 again
    model.layer2[0].downsample = ShortcutA(16, 32, 2, pad_before=8)
    live = channel_liveness(model)
    assert live["layer2.1.conv1"].alive_in.tolist() == [i != 5 for i in range(32)]


def test_kernel_level_zeros():
    model = create("resnet20").eval()
    conv = model.layer1[0].conv2
    conv.weight.data[:, 7] = 0
    conv.weight.data[2, 7, 0, 0] = 1.0  # only filter 2 reads channel 7
    assert channel_liveness(model)["layer1.0.conv2"].alive_in[7]
    conv.weight.data[2] = 0  # filter 2 removed: channel 7 is now read by no kept filter
    live = channel_liveness(model)["layer1.0.conv2"]
    assert not live.alive_in[7] and not live.alive_out[2] and live.alive_in.sum() == 15
    # a filter whose only nonzero kernels read ZERO channels is removed
    model.layer1[0].conv1.weight.data[9] = 0
    conv.weight.data[4] = 0
    conv.weight.data[4, 9] = 1.0
    live = channel_liveness(model)["layer1.0.conv2"]
    assert live.alive_out.tolist() == [o not in (2, 4) for o in range(16)]
    assert not live.alive_in[9] and live.zero_in[9]
    macs = count_flops(model, (3, 32, 32)).rows
    row = next(r for r in macs if r.name == "layer1.0.conv2")
    assert row.macs == 14 * 14 * 9 * 32 * 32 and row.params == 14 * 14 * 9


def test_paper_flops_reduction_reproduces_published_figures():
    published = {
        ("resnet56", 0.4): 52.6,
        ("resnet56", 0.3): 41.1,
        ("resnet110", 0.4): 52.3,
        ("ResNet50", 0.3): 42.2,
        ("resnet50", 0.4): 53.5,
        ("resnet18", 0.3): 41.8,
        ("resnet34", 0.3): 41.1,
    }
    for (arch, rate), figure in published.items():
        assert round(100 * paper_flops_reduction(arch, rate), 1) == figure, arch
    assert paper_flops_reduction("resnet20", 0.0) == 0.0
    assert paper_macs("resnet110") == 252_887_040
    assert fastprune.paper_flops_reduction is paper_flops_reduction and fastprune.count_flops is count_flops


def test_exact_count_removes_less_than_the_paper_convention():
    torch.manual_seed(0)
    model = create("resnet56").eval()
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):  # 6 of 16, 12 of 32, 25 of 64; different filters in every layer
            m.weight.data[torch.randperm(m.out_channels, generator=gen)[: int(0.4 * m.out_channels)]] = 0
    report = count_flops(model)  # the residual stream stays full width
    assert 0.45 < report.conv_macs_reduction < paper_flops_reduction("resnet56", 0.4)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):  # the same filters everywhere: stem and every conv2 kill the stream
            m.weight.data[: int(0.4 * m.out_channels)] = 0
    assert count_flops(model).conv_macs_reduction > paper_flops_reduction("resnet56", 0.4)


def test_bad_input():
    for rate in (1.0, -0.1, float("nan"), True, "0.4"):
        with pytest.raises(ValueError, match="rate"):
            paper_flops_reduction("resnet56", rate)
    with pytest.raises(ValueError, match="resnet56"):
        paper_flops_reduction("resnet57", 0.4)
    model = create("resnet20")
    with pytest.raises(ValueError, match="input_shape"):
        count_flops(model, (32, 32))
    with pytest.raises(ValueError, match="input_shape"):
        count_flops(nn.Sequential(nn.Conv2d(3, 4, 3)))
    with pytest.raises(UnsupportedModelError, match="not a supported ResNet"):
        channel_liveness(nn.Sequential(nn.Conv2d(3, 4, 3)))
    grouped = create("resnet20")
    grouped.layer1[0].conv2 = nn.Conv2d(16, 16, 3, padding=1, groups=2, bias=False)
    with pytest.raises(UnsupportedModelError, match=r"layer1\.0\.conv2.*groups=2"):
        channel_liveness(grouped)
    extra = create("resnet20")
    extra.layer2[1].se = nn.Identity()
    with pytest.raises(UnsupportedModelError, match=r"layer2\.1.*unknown children \['se'\]"):
        channel_liveness(extra)
    act = create("resnet20")
    act.layer1[0].relu = nn.GELU()
    with pytest.raises(UnsupportedModelError, match=r"layer1\.0\.relu.*GELU"):
        channel_liveness(act)
    missing = create("resnet20")
    missing.layer2[0].downsample = None
    with pytest.raises(UnsupportedModelError, match=r"layer2\.0: residual add of 32 and 16"):
        channel_liveness(missing)
    with pytest.raises(ValueError):
        count_flops(model, (3, 0, 32))


def test_kernel_macs_count_what_a_kernel_skipping_conv_computes():
    """kernel_macs: by hand, each conv's alive (o, i) pairs with a nonzero k x k kernel x k*k x output
    positions, plus FC; equal to macs when no kernel is zeroed inside live channels."""
    torch.manual_seed(0)
    model = create("resnet20").eval()
    dense = count_flops(model)
    assert dense.kernel_macs == dense.macs
    with torch.no_grad():
        conv = model.layer1[0].conv1
        conv.weight[3, 5] = 0.0  # one kernel inside live channels
        conv.weight[7, :3] = 0.0  # three more
    report = count_flops(model)
    assert report.macs == dense.macs  # structurally nothing is gone
    assert dense.macs - report.kernel_macs == 4 * 3 * 3 * 32 * 32  # four 3x3 kernels on a 32x32 map
    with torch.no_grad():
        conv.weight[9] = 0.0  # a whole filter: the structural count drops too, by the same amount
    whole = count_flops(model)
    assert whole.macs < dense.macs and whole.kernel_macs <= whole.macs
    assert "skipping all-zero kernels too" in str(whole)
