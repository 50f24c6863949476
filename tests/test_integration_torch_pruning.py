"""fastprune.integrations.torch_pruning: Torch-Pruning importances on fastprune's batched kernels.

Parity with tp.importance.FPGMImportance / GroupMagnitudeImportance on ResNet-56, VGG-16 and MobileNetV2
(groups with a depthwise or grouped conv are left out there: TP skips depthwise convs and crashes on
grouped in-channels; our handling of them is checked against a float64 reference instead), identical
BasePruner decisions, the paper semantics against gm_scores, the kernel criteria against kernel_scores,
one batched native call per step, and SoftPruner.
"""

from __future__ import annotations

import pytest
import torch
import torch_pruning as tp
from torch import nn

import fastprune
import fastprune.integrations.torch_pruning as ftp
from fastprune.integrations.torch_pruning import (
    FPGMImportance,
    KernelImportance,
    NormImportance,
    SoftPruner,
    channel_rows,
)

RTOL = 1e-4  # relative, per channel score, against TP's float32 cdist / sums
_GRAPHS: dict = {}


def graph(name: str):
    """(model, groups) of a seeded fastprune model, traced once per test session (batch 1, 32x32)."""
    if name not in _GRAPHS:
        torch.manual_seed(0)
        model = fastprune.models.create(name, num_classes=10).eval()
        dg = tp.DependencyGraph().build_dependency(model, example_inputs=torch.randn(1, 3, 32, 32))
        _GRAPHS[name] = (model, list(dg.get_all_groups(root_module_types=(nn.Conv2d, nn.Linear))))
    return _GRAPHS[name]


def has_grouped_conv(group) -> bool:
    return any(isinstance(d.target.module, nn.Conv2d) and d.target.module.groups > 1 for d, _ in group)


def max_relative_error(expected: torch.Tensor, got: torch.Tensor) -> float:
    return float(((got - expected).abs() / expected.abs().clamp_min(1e-12)).max())


def compare_groups(name, reference, ours, expect_skipped: bool):
    _, groups = graph(name)
    errors, skipped = [], 0
    for group in groups:
        if has_grouped_conv(group):
            skipped += 1
            continue
        expected, got = reference(group), ours(group)
        assert (expected is None) == (got is None)
        if expected is not None:
            assert got.shape == expected.shape
            errors.append(max_relative_error(expected, got))
    assert errors and (skipped > 0) == expect_skipped
    return max(errors)


@pytest.mark.parametrize("name", ["resnet56", "vgg16", "mobilenet_v2"])
def test_tp_semantics_matches_tp_fpgm_per_group(name):
    error = compare_groups(
        name, tp.importance.FPGMImportance(), FPGMImportance(semantics="tp"), name == "mobilenet_v2"
    )
    assert error <= RTOL, f"{name}: max relative error {error:.2e}"


@pytest.mark.parametrize("name, p", [("resnet56", 2), ("vgg16", 1), ("mobilenet_v2", 2)])
def test_norm_importance_matches_group_magnitude(name, p):
    reference = tp.importance.GroupMagnitudeImportance(p=p)
    error = compare_groups(name, reference, NormImportance(p=p), name == "mobilenet_v2")
    assert error <= RTOL, f"{name}: max relative error {error:.2e}"


@pytest.mark.parametrize("name", ["resnet56", "vgg16"])
def test_base_pruner_makes_the_same_decisions(name):
    def prune(importance):
        torch.manual_seed(0)
        model = fastprune.models.create(name, num_classes=10).eval()
        classifier = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
        pruner = tp.pruner.MetaPruner(
            model, torch.randn(1, 3, 32, 32), importance, pruning_ratio=0.3, ignored_layers=[classifier]
        )
        pruner.step()
        return model, pruner.pruning_history()

    ref_model, ref_history = prune(tp.importance.FPGMImportance())
    our_model, our_history = prune(FPGMImportance(semantics="tp"))
    assert len(ref_history) > 0 and our_history == ref_history  # same roots, same pruned indices
    ref_state, our_state = ref_model.state_dict(), our_model.state_dict()
    for key, value in ref_state.items():  # same remaining channel counts and the same kept weights
        assert our_state[key].shape == value.shape and torch.equal(our_state[key], value), key
    if name == "vgg16":  # TP's own pruning of ResNet option-A (padding) shortcuts breaks the forward
        assert our_model(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def mean_over_filter_deps(group, score_of):
    """TP's 'mean' reduction by hand over the group's conv/linear out-channel deps."""
    total = torch.zeros(len(group[0].idxs), dtype=torch.float64)
    count = 0
    for i, (dep, idxs) in enumerate(group):
        if isinstance(dep.target.module, (nn.Conv2d, nn.Linear)) and dep.handler in ftp._OUT_FNS:
            total.index_add_(0, torch.tensor(group[i].root_idxs), score_of(dep.target.module, idxs).double())
            count += 1
    return total / count


@pytest.mark.parametrize("metric", ["l2", "l1", "cosine"])
def test_paper_semantics_is_gm_scores_of_each_conv(metric):
    ours = FPGMImportance(metric=metric, normalizer=None)
    _, groups = graph("vgg16")
    for group in groups:  # one conv (or linear) per group: exactly its gm_scores
        conv = group[0].dep.target.module
        assert torch.allclose(ours(group), fastprune.ops.gm_scores(conv.weight, metric), rtol=1e-6, atol=0)
    _, groups = graph("resnet56")  # residual groups: several convs, some through index mappings
    for group in groups:
        expected = mean_over_filter_deps(
            group, lambda m, idxs: fastprune.ops.gm_scores(m.weight.detach()[idxs], metric)
        )
        assert torch.allclose(ours(group).double(), expected, rtol=1e-5, atol=0)


@pytest.mark.parametrize("reduction", ["mean", "max"])
def test_kernel_importance_is_kernel_scores_reduced_per_filter(reduction):
    ours = KernelImportance("spectral_norm", reduction, normalizer=None)
    reduce = {"mean": torch.mean, "max": torch.amax}[reduction]
    _, groups = graph("resnet56")
    for group in groups:
        if isinstance(group[0].dep.target.module, nn.Linear):
            assert ours(group) is None  # linear layers have no k x k kernels
            continue
        expected = mean_over_filter_deps(
            group, lambda m, idxs: reduce(fastprune.ops.kernel_scores(m.weight, "spectral_norm"), dim=1)[idxs]
        )
        assert torch.allclose(ours(group).double(), expected, rtol=1e-6, atol=0)


def count_calls(monkeypatch, name):
    calls = []
    original = getattr(ftp, name)

    def counting(*args, **kwargs):
        calls.append(len(args[0]))
        return original(*args, **kwargs)

    monkeypatch.setattr(ftp, name, counting)
    return calls


@pytest.mark.parametrize(
    "name, importance, op",
    [
        ("vgg16", lambda: FPGMImportance(semantics="tp"), "gm_scores"),
        ("mobilenet_v2", lambda: FPGMImportance(), "gm_scores"),
        ("mobilenet_v2", lambda: NormImportance(p=1), "filter_norms"),
        ("resnet56", lambda: KernelImportance(), "kernel_scores"),
    ],
)
def test_every_group_of_a_step_is_one_native_call(name, importance, op, monkeypatch):
    model, groups = graph(name)
    calls = count_calls(monkeypatch, op)
    scorer = importance()
    first = [scorer(group) for group in groups]
    assert len(calls) == 1 and calls[0] >= len([m for m in model.modules() if isinstance(m, nn.Conv2d)])
    again = [scorer(group) for group in groups]
    assert all(a is b is None or torch.equal(a, b) for a, b in zip(first, again))
    assert len(calls) == 1  # same weight versions: every group is a cache hit
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    with torch.no_grad():
        conv.weight.mul_(1.0)  # an optimizer step bumps the version: a new step recomputes, once
    [scorer(group) for group in groups]
    assert len(calls) == 2


def test_index_mapped_subsets_join_the_batched_call(monkeypatch):
    """ResNet-56's option-A shortcuts give deps over a subset of a conv's channels: TP sums FPGM distances
    over that subset only. Learned by prepare() (or during the first step) they join the single call."""
    model, groups = graph("resnet56")
    calls = count_calls(monkeypatch, "gm_scores")
    learning = FPGMImportance(semantics="tp")
    [learning(group) for group in groups]
    assert len(calls) == 2  # the first step meets the subsets late: one extra call
    with torch.no_grad():
        model.conv1.weight.mul_(1.0)
    [learning(group) for group in groups]
    assert len(calls) == 3  # from the second step on: one call
    prepared = FPGMImportance(semantics="tp")
    prepared.prepare(groups)
    [prepared(group) for group in groups]
    assert len(calls) == 4


class GroupedNet(nn.Module):
    """conv -> grouped conv (g=4) -> depthwise conv -> depthwise x2 multiplier (TP: a grouped conv) ->
    1x1 conv -> linear."""

    def __init__(self):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.c2, self.b2 = nn.Conv2d(8, 16, 3, padding=1, groups=4, bias=False), nn.BatchNorm2d(16)
        self.c3, self.b3 = nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False), nn.BatchNorm2d(16)
        self.c4 = nn.Conv2d(16, 32, 3, padding=1, groups=16)
        self.c5, self.fc = nn.Conv2d(32, 8, 1), nn.Linear(8, 10)

    def forward(self, x):
        x = torch.relu(self.b1(self.c1(x)))
        x = torch.relu(self.b3(self.c3(torch.relu(self.b2(self.c2(x))))))
        x = self.c5(torch.relu(self.c4(x)))
        return self.fc(x.mean(dim=(2, 3)))


def reference_rows(module, kind):
    """Channel rows by explicit loops, float64: what each channel's weights are."""
    w = module.weight.detach().double()
    if isinstance(module, nn.Linear):
        return w if kind == "out" else w.t()
    if kind == "out":
        return w.flatten(1)
    per_group_out, per_group_in = w.shape[0] // module.groups, w.shape[1]
    rows = []
    for c in range(module.in_channels):
        a = c // per_group_in
        rows.append(w[a * per_group_out : (a + 1) * per_group_out, c % per_group_in].flatten())
    return torch.stack(rows)


def reference_group_scores(group, p, criterion):
    """Float64 group scores with correct grouped/depthwise rows, TP's mean reduction and normalisation:
    criterion "fpgm" (TP semantics: distance sums between |rows|^p) or "norm" (Σ|rows|^p, BN |γ|^p)."""
    total, count = torch.zeros(len(group[0].idxs), dtype=torch.float64), 0
    for i, (dep, idxs) in enumerate(group):
        module = dep.target.module
        if isinstance(module, nn.BatchNorm2d) and criterion == "norm":
            scores = module.weight.detach().double()[idxs].abs() ** p
        elif dep.handler is tp.pruner.function.prune_depthwise_conv_out_channels:
            continue  # TP's importances skip depthwise convs: parity does too
        elif isinstance(module, (nn.Conv2d, nn.Linear)):
            rows = reference_rows(module, "out" if dep.handler in ftp._OUT_FNS else "in")[idxs].abs() ** p
            if criterion == "norm":
                scores = rows.sum(1)
            else:
                scores = ((rows[:, None, :] - rows[None, :, :]) ** 2).sum(-1).sqrt().sum(1)
        else:
            continue
        total.index_add_(0, torch.tensor(group[i].root_idxs), scores)
        count += 1
    total /= count
    return total / total.mean()


def test_grouped_and_depthwise_convs_against_a_float64_reference():
    torch.manual_seed(0)
    model = GroupedNet().eval()
    dg = tp.DependencyGraph().build_dependency(model, example_inputs=torch.randn(1, 3, 8, 8))
    groups = list(dg.get_all_groups(root_module_types=(nn.Conv2d, nn.Linear)))
    handlers = [d.handler for g in groups for d, _ in g]
    assert tp.pruner.function.prune_depthwise_conv_out_channels in handlers

    def feeding(conv):
        return next(
            g for g in groups if any(d.target.module is conv and d.handler in ftp._IN_FNS for d, _ in g)
        )

    with pytest.raises(RuntimeError):  # TP: .repeat(groups) on the 2-D in-channel rows of a grouped conv
        tp.importance.FPGMImportance()(feeding(model.c2))
    with pytest.raises(IndexError):  # TP: one (1, O*k*k) row for the 16 inputs of groups == in_channels
        tp.importance.FPGMImportance()(feeding(model.c4))
    for p in (1, 2):
        for criterion, ours in [("fpgm", FPGMImportance(semantics="tp", p=p)), ("norm", NormImportance(p=p))]:
            for group in groups:
                expected = reference_group_scores(group, p, criterion)
                assert torch.allclose(ours(group).double(), expected, rtol=1e-5, atol=0), criterion


@pytest.mark.parametrize("groups", [1, 2])
def test_channel_rows_of_transposed_convs(groups):
    module = nn.ConvTranspose2d(4, 6, 3, groups=groups)
    w = module.weight.detach()  # (C_in, O/g, k, k)
    per_group_in, per_group_out = 4 // groups, 6 // groups
    out_rows = torch.stack(
        [
            w[
                (o // per_group_out) * per_group_in : (o // per_group_out + 1) * per_group_in,
                o % per_group_out,
            ].flatten()
            for o in range(6)
        ]
    )
    assert torch.equal(channel_rows(module, "out"), out_rows)
    assert torch.equal(channel_rows(module, "in"), w.flatten(1))


def test_soft_pruner_reselects_and_zeroes():
    torch.manual_seed(0)
    model = fastprune.models.create("resnet20", num_classes=10)
    x = torch.randn(1, 3, 32, 32)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    pruner = SoftPruner(model, x, FPGMImportance(), rate=0.3)
    assert model.training and all(m.all() for m in pruner.masks.values())
    pruner.step()
    first = {k: v.clone() for k, v in pruner.masks.items()}
    modules = dict(model.named_modules())
    conv_masks = {k: v for k, v in first.items() if isinstance(modules[k], nn.Conv2d)}
    assert conv_masks and any((~m).any() for m in conv_masks.values())
    for name, keep in first.items():
        module = modules[name]
        if isinstance(module, nn.Conv2d):
            assert module.weight[~keep].abs().sum() == 0 and module.weight[keep].abs().sum() > 0
        else:  # BatchNorm: shift zeroed, scale kept so the filters can recover
            assert module.bias[~keep].abs().sum() == 0 and module.weight[~keep].abs().min() > 0
    assert 0.15 < pruner.pruned_share() <= 0.3  # floor(n * rate) per group; shortcut-padded channels
    with torch.no_grad():  # "training": the zeroed filters come back strong, the others move a little
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
        for name, keep in conv_masks.items():
            modules[name].weight[~keep] = 0.5 * torch.randn_like(modules[name].weight[~keep])
    pruner.step()
    for name, keep in conv_masks.items():  # re-selected: the revived filters are far from the median
        revived_and_pruned = (~keep & ~pruner.masks[name]).sum()
        assert revived_and_pruned < (~keep).sum() or not (~keep).any(), name
        assert modules[name].weight[~pruner.masks[name]].abs().sum() == 0
    pruner.finalize()
    for name, keep in pruner.masks.items():
        if isinstance(modules[name], nn.BatchNorm2d):
            assert modules[name].weight[~keep].abs().sum() == 0
    model.eval()
    assert model(x).shape == (1, 10)
    assert {k: v.shape for k, v in model.state_dict().items()} == shapes


def test_soft_pruner_on_grouped_and_depthwise_convs():
    torch.manual_seed(0)
    model = GroupedNet()
    pruner = SoftPruner(
        model, torch.randn(1, 3, 8, 8), NormImportance(p=2), rate=0.5, ignored_layers=[model.c5]
    )
    pruner.step()
    assert (~pruner.masks["c3"]).sum() == 8 and torch.equal(pruner.masks["c3"], pruner.masks["c2"])
    assert model.c3.weight[~pruner.masks["c3"]].abs().sum() == 0
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 10)


def test_soft_pruner_zeroes_grouped_transposed_conv_channels():
    class Decoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.t, self.c2 = (
                nn.Conv2d(3, 8, 3),
                nn.ConvTranspose2d(8, 12, 3, groups=2),
                nn.Conv2d(12, 4, 1),
            )

        def forward(self, x):
            return self.c2(torch.relu(self.t(torch.relu(self.c1(x)))))

    torch.manual_seed(0)
    model, outputs = Decoder(), {}
    model.t.register_forward_hook(lambda module, inputs, output: outputs.update(t=output))
    pruner = SoftPruner(model, torch.randn(1, 3, 8, 8), FPGMImportance(semantics="tp"), 0.5, [model.c2])
    pruner.step()
    keep = pruner.masks["t"]
    assert (~keep).sum() == 6
    model(torch.randn(2, 3, 8, 8))
    assert outputs["t"][:, ~keep].abs().max() == 0 and outputs["t"][:, keep].abs().min() > 0


@pytest.mark.parametrize(
    "make, argument",
    [
        (lambda: FPGMImportance(metric="sqeuclid"), "metric"),
        (lambda: FPGMImportance(semantics="paperish"), "semantics"),
        (lambda: FPGMImportance(p=0), "p"),
        (lambda: NormImportance(p=3), "p"),
        (lambda: NormImportance(group_reduction="median"), "group_reduction"),
        (lambda: NormImportance(normalizer="l2"), "normalizer"),
        (lambda: KernelImportance(criterion="trace"), "criterion"),
        (lambda: KernelImportance(reduction="median"), "reduction"),
        (lambda: SoftPruner(nn.Conv2d(3, 4, 3), torch.randn(1, 3, 8, 8), NormImportance(), rate=1.0), "rate"),
    ],
)
def test_errors_name_the_argument(make, argument):
    with pytest.raises(ValueError, match=f"^{argument}:"):
        make()
