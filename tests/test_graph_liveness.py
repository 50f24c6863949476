"""Channel liveness and FLOPs of any CNN (the traced graph, fastprune.pruning.graph_liveness): the same
answers as the ResNet analysis on ResNets, exact counts on VGG-16 and on a model with depthwise, grouped
and 1x1 convs, adds and a concatenation, and every channel it calls dead is zero in a real forward."""

import pytest
import torch
from torch import nn

import fastprune.pruning.flops as flops_module
from fastprune import models
from fastprune.benchmarks.compaction import prune_l2, random_bn_stats
from fastprune.pruning import SoftFilterPruner, UnsupportedModelError, channel_liveness, count_flops
from fastprune.pruning.graph_liveness import graph_liveness


def _generic_count(model, shape, monkeypatch):
    """count_flops through the traced graph, even for a ResNet."""

    def refuse(_model):
        raise UnsupportedModelError("forced")

    with monkeypatch.context() as patch:
        patch.setattr(flops_module, "channel_liveness", refuse)
        return count_flops(model, shape)


@pytest.mark.parametrize("arch, shape", [("resnet56", (3, 32, 32)), ("resnet18", (3, 64, 64))])
def test_resnets_give_the_resnet_analysis_answers(arch, shape, monkeypatch):
    torch.manual_seed(0)
    model = prune_l2(random_bn_stats(models.create(arch)), 0.4).eval()
    with torch.no_grad():  # some BN constants nonzero (CONST channels), some kernels zero
        for conv in [m for m in model.modules() if isinstance(m, nn.Conv2d)][2::3]:
            conv.weight[:, :2] = 0
    resnet = channel_liveness(model)
    graph = graph_liveness(model, torch.zeros(1, *shape))
    assert set(graph.layers) == set(resnet.layers)  # data-flow order: a projection may come first
    for name, expected in resnet.layers.items():
        got = graph[name]
        assert torch.equal(got.alive_in, expected.alive_in), name
        assert torch.equal(got.alive_out, expected.alive_out), name
        assert torch.equal(torch.isnan(got.in_state), torch.isnan(expected.in_state)), name
        assert torch.equal(torch.nan_to_num(got.in_state), torch.nan_to_num(expected.in_state)), name
        assert got.bn == expected.bn, name
    assert sum(not layer.alive_out.all() for layer in resnet.convs) > 10  # the case is not trivial
    native, generic = count_flops(model, shape), _generic_count(model, shape, monkeypatch)
    assert generic.macs == native.macs < native.dense_macs
    assert generic.params == native.params < native.dense_params
    rows = {r.name: (r.macs, r.params) for r in generic.rows}
    assert rows == {r.name: (r.macs, r.params) for r in native.rows}


def test_vgg16_counts_follow_the_kept_filters():
    torch.manual_seed(0)
    model = models.create("vgg16").eval()
    pruner = SoftFilterPruner(model, "l2", 0.4)
    pruner.step()
    pruner.finalize()  # filters and their BN zeroed: the channels are ZERO downstream
    report = count_flops(model)
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    kept = [int(pruner.masks[name].sum()) for name, _ in pruner.convs]
    size, macs, in_kept = 32, 0, 3
    pools_after = {1, 3, 6, 9}  # VGG-16: a max-pool after conv 2, 4, 7, 10 (0-based 1, 3, 6, 9)
    assert len(convs) == len(kept) == 13
    for index, out_kept in enumerate(kept):
        macs += out_kept * in_kept * 9 * size * size
        in_kept = out_kept
        size //= 2 if index in pools_after else 1
    first, last = model.classifier[0], model.classifier[-1]
    macs += first.out_features * in_kept + last.out_features * first.out_features
    assert report.macs == macs
    assert 0.55 < report.macs_reduction < 0.7  # ~1 - 0.6^2 on the convs


class Mixed(nn.Module):
    """Depthwise, grouped and 1x1 convs, a residual add, a concatenation, ReLU6, a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.dw_bn = nn.BatchNorm2d(8)
        self.pw = nn.Conv2d(8, 8, 1, bias=False)
        self.pw_bn = nn.BatchNorm2d(8)
        self.grouped = nn.Conv2d(16, 6, 3, stride=2, padding=1, groups=2, bias=False)
        self.grouped_bn = nn.BatchNorm2d(6)
        self.head = nn.Linear(6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.stem_bn(self.stem(x)))
        b = nn.functional.relu6(self.dw_bn(self.dw(a)))
        c = self.pw_bn(self.pw(b)) + a
        d = torch.relu(self.grouped_bn(self.grouped(torch.cat([c, a], 1))))
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(d, 1), 1))


def _zero_filters(conv: nn.Conv2d, bn: nn.BatchNorm2d, filters: list[int]) -> None:
    with torch.no_grad():
        conv.weight[filters] = 0
        bn.weight[filters] = 0
        bn.bias[filters] = 0


def test_depthwise_grouped_concat_counts_by_hand():
    torch.manual_seed(0)
    model = Mixed().eval()
    _zero_filters(model.stem, model.stem_bn, [1, 5])  # stem channels 1, 5: ZERO in a, so in c too...
    _zero_filters(model.pw, model.pw_bn, [1, 2])  # ...once pw's 1 is gone too: c = pw + a
    report = count_flops(model, (3, 8, 8))
    rows = {row.name: row for row in report.rows}
    assert rows["stem"].macs == 6 * 3 * 9 * 64
    assert rows["dw"].macs == 6 * 1 * 9 * 64  # depthwise: channels 1 and 5 read ZERO inputs
    assert rows["pw"].macs == 6 * 6 * 64  # filters 0, 3..7 kept; inputs: dw's 6 live channels
    # cat([c, a]): c is ZERO at 1 (a 1 + pw 1), a at 1 and 5 -> 16 channels, 3 ZERO. groups of 8:
    # group 0 (c) has 7 live, group 1 (a) 6; three filters a group, all kept.
    assert rows["grouped"].macs == (3 * 7 + 3 * 6) * 9 * 16
    assert rows["grouped"].params == (3 * 7 + 3 * 6) * 9
    assert rows["head"].macs == 5 * 6
    assert report.dense_macs == (8 * 3 * 9 + 8 * 9 + 8 * 8) * 64 + 6 * 8 * 9 * 16 + 30


def test_every_channel_called_zero_is_zero_in_a_forward():
    torch.manual_seed(1)
    model = random_bn_stats(models.create("mobilenet_v2")).eval()
    pruner = SoftFilterPruner(model, "l1", 0.5)
    pruner.step()
    pruner.finalize()
    liveness = graph_liveness(model, torch.zeros(1, 3, 32, 32))
    inputs: dict[str, torch.Tensor] = {}
    outputs: dict[str, torch.Tensor] = {}

    def record(module, args, output, name):
        inputs[name], outputs[name] = args[0], output

    for name, module in model.named_modules():
        if name in liveness.layers:
            module.register_forward_hook(lambda m, i, o, name=name: record(m, i, o, name))
    with torch.no_grad():
        model(torch.randn(4, 3, 32, 32))
    dead_inputs = 0
    for layer in liveness:
        x, y = inputs[layer.name], outputs[layer.name]
        zero = layer.in_state == 0
        assert torch.all(x[:, zero] == 0), layer.name
        assert torch.all(y[:, ~layer.alive_out] == 0), layer.name
        dead_inputs += int(zero.sum())
    assert dead_inputs > 100  # pruning removed channels that the analysis found


class NoFamily(nn.Module):
    """One conv, no `family` attribute: nothing says what input size traces it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Broken(NoFamily):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x[:, :2])  # reads 2 channels: the forward itself fails


def test_untraceable_model_names_the_problem():
    with pytest.raises(UnsupportedModelError, match="Broken: Torch-Pruning's DependencyGraph cannot trace"):
        count_flops(Broken(), (3, 8, 8))
