"""KernelPruner: the three masking modes, layer selection, in-place application and the report."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import fastprune
from fastprune.ops import criterion_power, kernel_scores
from fastprune.pruning import KernelPruner, compression_score, l1_kernel_penalty


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 7, bias=False),  # ImageNet-style stem: left alone by default
        nn.Conv2d(8, 16, 3, bias=False),
        nn.Conv2d(16, 16, 1, bias=False),
        nn.Flatten(),
        nn.Linear(16, 10),  # never pruned
    )


def test_threshold_mode_matches_scores_and_zeroes_kernels() -> None:
    model = _model()
    conv = model[1]
    with torch.no_grad():
        conv.weight[:, :4] *= 1e-6  # weak kernels
    pruner = KernelPruner(model, criterion="spectral_norm", mode="threshold", threshold=1e-4)
    masks = pruner.compute_masks()
    assert set(masks) == {"1", "2"}, "stem and linear layer are not selected"
    expected = kernel_scores(conv.weight, "spectral_norm").double() >= 1e-4
    assert torch.equal(masks["1"], expected) and not masks["1"][:, :4].any()
    report = pruner.apply(masks=masks)
    assert torch.all(conv.weight[:, :4] == 0) and torch.all(conv.weight[:, 4:].abs().sum((2, 3)) > 0)
    layer = report.layers[0]
    assert layer.kernels == 128 and layer.kernels_removed == 64 and layer.parameters_removed == 64 * 9
    assert report.model_parameters == sum(p.numel() for p in model.parameters())
    assert "total: 64/384 kernels" in str(report)


def test_det_threshold_scales_with_kernel_size() -> None:
    assert criterion_power("det", 3) == 3 and criterion_power("det_gram", 3) == 6
    model = nn.Sequential(nn.Conv2d(2, 2, 3, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(
            torch.eye(3).expand(2, 2, 3, 3) * 0.05
        )  # det = 1.25e-4 >= t^3 = 1e-6 at t = 1e-2
    masks = KernelPruner(model, criterion="det", threshold=1e-2).compute_masks()
    assert masks["0"].all()
    assert not KernelPruner(model, criterion="det", threshold=0.06).compute_masks()["0"].any()


def test_contrib_mode_uses_share_of_alive_kernels() -> None:
    model = nn.Sequential(nn.Conv2d(4, 1, 1, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([1.0, 0.5, 0.001, 0.0]).view(1, 4, 1, 1))
    masks = KernelPruner(model, criterion="weight", mode="contrib", contrib=0.01).compute_masks()
    # shares over alive kernels: 1/1.501, 0.5/1.501, 0.001/1.501 (< 0.01); the zero kernel is dead.
    assert masks["0"].tolist() == [[True, True, False, False]]


def test_sorted_mode_drops_lowest_fraction_per_filter() -> None:
    model = nn.Sequential(nn.Conv2d(4, 2, 1, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[4.0, 1.0, 3.0, 2.0], [0.0, 5.0, 6.0, 7.0]]).view(2, 4, 1, 1))
    masks = KernelPruner(model, criterion="weight", mode="sorted", fraction=0.5).compute_masks()
    # filter 0: drop 2 of 4 alive (1.0, 2.0); filter 1: 3 alive, floor(1.5) = 1 dropped (5.0); dead stays.
    assert masks["0"].tolist() == [[True, False, True, False], [False, False, True, True]]


def test_dead_filters_are_reported() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False))
    with torch.no_grad():
        model[0].weight[1] = 0.0
    report = KernelPruner(model, criterion="spectral_norm").apply()
    assert report.layers[0].filters_dead == 1 and report.layers[0].kernels_removed == 3


def test_compression_score_and_l1_penalty() -> None:
    assert compression_score(0.9, 0.95, 0.8) == pytest.approx(0.9 / 0.95 * 0.8)
    with pytest.raises(ValueError, match="accuracy_unpruned"):
        compression_score(0.9, 0.0, 0.5)
    model = _model()
    penalty = l1_kernel_penalty(model)
    assert torch.isclose(penalty, model[1].weight.abs().sum() + model[2].weight.abs().sum())
    penalty.backward()
    assert model[1].weight.grad is not None and model[0].weight.grad is None


def test_bad_arguments() -> None:
    for kwargs, message in [
        ({"criterion": "trace"}, "criterion: expected one of"),
        ({"mode": "global"}, "mode: expected one of 'threshold', 'contrib', 'sorted'"),
        ({"threshold": 0.0}, r"threshold: expected a finite number > 0, got 0.0"),
        ({"threshold": -1e-4}, r"threshold: expected a finite number > 0"),
        ({"contrib": float("nan")}, r"contrib: expected a finite number > 0"),
        ({"fraction": 1.5}, r"fraction: expected a number in \[0, 1\]"),
    ]:
        with pytest.raises(ValueError, match=message):
            KernelPruner(**kwargs)
    with pytest.raises(ValueError, match="model: no conv layer matches"):
        KernelPruner(nn.Linear(3, 3)).compute_masks()
    with pytest.raises(ValueError, match=r"masks\['1'\]: expected shape \(16, 8\)"):
        KernelPruner(_model()).apply(
            masks={"1": torch.ones(2, 2, dtype=torch.bool), "2": torch.ones(16, 16, dtype=torch.bool)}
        )
    with pytest.raises(ValueError, match="model: none given"):
        KernelPruner(criterion="det").compute_masks()
    with pytest.raises(TypeError, match="model: expected a torch.nn.Module, got list"):
        KernelPruner([1, 2])
    with pytest.raises(TypeError, match="the model comes first"):
        KernelPruner("det", criterion="weight")


def test_old_form_criterion_first_still_works_and_warns() -> None:
    model = _model()
    with pytest.warns(DeprecationWarning, match=r"KernelPruner\(model, criterion=\.\.\.\)"):
        old = KernelPruner("min_eig", mode="sorted", fraction=0.5)
    assert old.criterion == "min_eig" and old.model is None
    new = KernelPruner(model, criterion="min_eig", mode="sorted", fraction=0.5).compute_masks()
    got = old.compute_masks(model)
    assert got.keys() == new.keys() and all(torch.equal(got[k], new[k]) for k in new)
    # the new form, like SoftFilterPruner(model, criterion=...), no longer collides on `criterion`
    assert KernelPruner(model, criterion="min_eig").criterion == "min_eig"


def test_exported_at_top_level() -> None:
    assert fastprune.KernelPruner is KernelPruner


def test_depthwise_kernel_masks_are_held_through_training() -> None:
    """Kernel masks of a depthwise conv are (O, C/groups) = (O, 1), as its weight: KeepMasks holds them."""
    from fastprune.pruning import KeepMasks

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.Flatten()
    )
    masks = KernelPruner(model, criterion="weight", mode="sorted", fraction=0.5).compute_masks()
    assert masks["1"].shape == (8, 1)
    masks["1"][:3] = False
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    keeper = KeepMasks(model, masks, optimizer)
    for _ in range(2):
        optimizer.zero_grad()
        model(torch.randn(2, 3, 6, 6)).square().sum().backward()
        optimizer.step()
    assert torch.all(model[1].weight[:3] == 0) and torch.all(model[1].weight[3:].abs().sum((1, 2, 3)) > 0)
    keeper.remove()
