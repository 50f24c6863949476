"""SoftFilterPruner: selection, soft vs hard semantics, finalize, MFP switching, checkpoints, DDP, errors.

References are float64 NumPy/SciPy from the definitions in PRUNING.md §2 (never fastprune itself).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from scipy.spatial.distance import cdist
from torch import nn

from fastprune.pruning import SoftFilterPruner, StepRecord

# ---- helpers -------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: intra-op threads only add contention (seconds per test on a loaded 2-core box)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def rows64(w: torch.Tensor) -> np.ndarray:
    return w.detach().reshape(w.shape[0], -1).double().numpy()


def ref_scores(x: np.ndarray, criterion: str) -> np.ndarray:
    if criterion == "l1":
        return np.abs(x).sum(axis=1)
    if criterion == "l2":
        return np.sqrt((x**2).sum(axis=1))
    if criterion == "fpgm":
        return cdist(x, x, "euclidean").sum(axis=1)
    raise AssertionError(criterion)


def ref_pruned(x: np.ndarray, criterion: str, count: int) -> set[int]:
    """The `count` lowest reference scores, ties by index."""
    return set(int(i) for i in np.argsort(ref_scores(x, criterion), kind="stable")[:count])


def pruned_set(mask: torch.Tensor) -> set[int]:
    return set(int(i) for i in torch.nonzero(~mask).flatten())


def _pruner(*args, **kwargs) -> SoftFilterPruner:
    """These tests are about each conv's own filters (SFP's mechanics): no coupled groups (those are
    tested in test_compact_graph.py)."""
    kwargs.setdefault("coupling", "none")
    return SoftFilterPruner(*args, **kwargs)


class Net(nn.Module):
    """Convs of 10, 7 and 5 filters (with bias), BN after the first, a projection shortcut."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(10)
        self.conv2 = nn.Conv2d(10, 7, 3, padding=1)
        self.conv3 = nn.Conv2d(7, 5, 1)
        self.downsample = nn.Sequential(nn.Conv2d(3, 5, 1, bias=False), nn.BatchNorm2d(5))
        self.head = nn.Linear(5, 3)

    def forward(self, x):
        # tanh, not ReLU: a zeroed filter (bias 0) behind ReLU(0) gets no gradient at all, which would
        # make "hard mode keeps it at zero" hold trivially.
        y = torch.tanh(self.bn1(self.conv1(x)))
        y = torch.tanh(self.conv2(y))
        y = self.conv3(y) + self.downsample(x)
        return self.head(y.mean(dim=(2, 3)))


def make_net(seed: int = 0) -> Net:
    torch.manual_seed(seed)
    return Net()


def batch(seed: int = 0, n: int = 8):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 6, 6, generator=gen), torch.randint(0, 3, (n,), generator=gen)


def train(model, optimizer, steps: int, seed: int = 100) -> None:
    model.train()
    for i in range(steps):
        x, y = batch(seed + i)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()


SELECTED = ["conv1", "conv2", "conv3"]


# ---- step(): counts, choice, zeroing --------------------------------------------------------------------


@pytest.mark.parametrize("criterion", ["l1", "l2", "fpgm"])
def test_step_prunes_floor_rate_lowest_reference_filters(criterion):
    model = make_net(1)
    before = {n: rows64(getattr(model, n).weight).copy() for n in SELECTED}
    pruner = _pruner(model, criterion=criterion, rate=0.4, layer_rates={"conv3": 0.5})
    assert [n for n, _ in pruner.convs] == SELECTED
    record = pruner.step()
    expected_counts = {"conv1": 4, "conv2": math.floor(7 * 0.4), "conv3": 2}  # 10 * 0.4 = 3.99999...
    for name in SELECTED:
        conv, mask = getattr(model, name), pruner.masks[name]
        pruned = pruned_set(mask)
        assert len(pruned) == expected_counts[name], name
        assert pruned == ref_pruned(before[name], criterion, expected_counts[name]), name
        idx = sorted(pruned)
        assert torch.all(conv.weight[idx] == 0) and torch.all(conv.bias[idx] == 0)
        kept = sorted(set(range(conv.out_channels)) - pruned)
        np.testing.assert_array_equal(rows64(conv.weight)[kept], before[name][kept])  # untouched
        assert torch.all(conv.bias[kept] != 0)
    assert record.pruned == sum(expected_counts.values()) and record.filters == 22
    assert record.criterion == criterion and record.step == 0
    assert pruner.kept_filters() == {
        n: getattr(model, n).out_channels - c for n, c in expected_counts.items()
    }
    assert pruner.pruned_share() == pytest.approx(8 / 22)
    assert pruner.history == [record] and pruner.steps == 1


@pytest.mark.parametrize("norm_share", [0.0, 0.5, 1.0])
def test_fpgm_mix_gets_the_pruned_count(norm_share):
    model = make_net(13)
    x = rows64(model.conv1.weight).copy()
    pruner = _pruner(
        model, "fpgm_mix", rate=0.4, layers=["conv1"], criterion_options={"norm_share": norm_share}
    )
    pruner.step()
    by_norm = round(norm_share * 4)  # 4 = floor(10 * 0.4) pruned: this many by smallest l2 norm
    first = list(np.argsort(np.sqrt((x**2).sum(axis=1)), kind="stable")[:by_norm])
    rest = np.array(sorted(set(range(10)) - set(first)))
    sums = cdist(x[rest], x[rest], "euclidean").sum(axis=1)
    expected = set(first) | set(rest[np.argsort(sums, kind="stable")[: 4 - by_norm]].tolist())
    assert pruned_set(pruner.masks["conv1"]) == expected
    assert pruner.history[-1].criterion == f"fpgm_mix(norm_share={norm_share})"


def test_count_is_floor_of_exact_product():
    # 50 * 0.58 = 29 exactly, but 28.999999999999996 in floating point: 29 filters must go.
    model = nn.Sequential(nn.Conv2d(2, 50, 1), nn.Conv2d(50, 10, 1))
    pruner = _pruner(model, "l2", rate=0.58, layer_rates={"1": 0.35})
    assert pruner.num_pruned() == [29, 3]
    pruner.step()
    assert [int((~m).sum()) for m in pruner.masks.values()] == [29, 3]


def test_rate_zero_and_layer_rate_zero_prune_nothing():
    model = make_net(2)
    pruner = _pruner(model, "l2", rate=0.3, layer_rates={"conv2": 0.0})
    pruner.step()
    assert pruner.masks["conv2"].all() and torch.all(model.conv2.weight.flatten(1).abs().sum(1) > 0)
    assert int((~pruner.masks["conv1"]).sum()) == 3
    model = make_net(2)
    pruner = _pruner(model, "l2", rate=0)
    assert pruner.step().pruned == 0 and all(m.all() for m in pruner.masks.values())


def test_ties_broken_by_index():
    model = make_net(3)
    with torch.no_grad():
        w = model.conv1.weight
        w[:] = 1.0 + torch.arange(10.0).view(-1, 1, 1, 1)  # distinct l1 norms, ascending
        w[6] = 0.5  # four equal lowest filters: 2, 4, 6, 8 (equal l1); only three go
        w[2] = w[4] = w[8] = w[6]
        w[9] = 0.25  # the single lowest
    fresh = copy.deepcopy(model)
    pruner = _pruner(model, "l1", rate=0.4, layers=["conv1"])
    pruner.step()
    assert pruned_set(pruner.masks["conv1"]) == {9, 2, 4, 6}
    pruner = _pruner(fresh, "l1", rate=0.2, layers=["conv1"])
    assert pruned_set(pruner.compute_masks()["conv1"]) == {9, 2}
    assert torch.all(fresh.conv1.weight != 0)  # compute_masks does not apply them


def test_default_selection_skips_projection_shortcuts():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.shortcut = nn.Sequential(nn.Conv2d(3, 4, 1))
            self.downsample = nn.Conv2d(3, 4, 1)
            self.downsampler = nn.Conv2d(3, 4, 1)  # not a shortcut by name

    model = nn.Sequential(nn.Conv2d(3, 3, 3), Block())
    pruner = _pruner(model, "l2", rate=0.5)
    assert [n for n, _ in pruner.convs] == ["0", "1.conv", "1.downsampler"]
    assert [n for n, _ in _pruner(make_net(), "l2").convs] == SELECTED


def test_explicit_layer_list_and_predicate():
    model = make_net(4)
    pruner = _pruner(model, "l2", rate=0.5, layers=["conv3", "downsample.0"])
    assert [n for n, _ in pruner.convs] == ["conv3", "downsample.0"]  # module order
    before = model.conv1.weight.detach().clone()
    pruner.step()
    assert torch.equal(model.conv1.weight, before)  # not selected: untouched
    assert int((~pruner.masks["downsample.0"]).sum()) == 2
    assert torch.all(model.downsample[0].weight[~pruner.masks["downsample.0"]] == 0)

    pruner = _pruner(model, "l2", rate=0.5, layers=lambda name, conv: conv.kernel_size == (1, 1))
    assert [n for n, _ in pruner.convs] == ["conv3", "downsample.0"]


def test_resnet20_default_selection_is_every_conv():
    from fastprune import models

    model = models.create("resnet20")
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    pruner = _pruner(model, "fpgm", rate=0.3)
    assert [n for n, _ in pruner.convs] == convs and len(convs) == 19
    pruner.step()
    for name, conv in pruner.convs:
        assert int((~pruner.masks[name]).sum()) == int(conv.out_channels * 0.3)


# ---- soft vs hard ----------------------------------------------------------------------------------------


def _pruned_rows_norm(model, pruner):
    return {n: getattr(model, n).weight[~pruner.masks[n]].abs().sum().item() for n in SELECTED}


def test_soft_mode_pruned_filters_recover():
    model = make_net(5)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    train(model, opt, 2)
    pruner = _pruner(model, "l2", rate=0.4, optimizer=opt)
    pruner.step()
    assert all(v == 0 for v in _pruned_rows_norm(model, pruner).values())
    train(model, opt, 3)
    assert all(v > 0 for v in _pruned_rows_norm(model, pruner).values())


@pytest.mark.parametrize("optim", ["sgd", "adam"])
def test_hard_mode_pruned_filters_stay_exactly_zero(optim):
    model = make_net(6)
    if optim == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        keys = ["momentum_buffer"]
    else:
        opt = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=5e-4)
        keys = ["exp_avg", "exp_avg_sq"]
    train(model, opt, 2)  # optimizer state exists and is nonzero before pruning
    pruner = _pruner(model, "fpgm", rate=0.4, mode="hard", optimizer=opt)
    pruner.step()
    for n in SELECTED:
        conv = getattr(model, n)
        assert opt.state[conv.weight][keys[0]][~pruner.masks[n]].abs().sum() == 0
    train(model, opt, 3)
    for n in SELECTED:
        conv, drop = getattr(model, n), ~pruner.masks[n]
        assert conv.weight.grad[drop].abs().sum() == 0  # masked by the hooks
        assert torch.all(conv.weight[drop] == 0) and torch.all(conv.bias[drop] == 0), n
        assert torch.all(conv.weight[~drop].flatten(1).abs().sum(1) > 0)
        for param in (conv.weight, conv.bias):
            for key in keys:
                state = opt.state[param][key]
                assert torch.all(state[drop] == 0), (n, key)
                assert state[~drop].abs().sum() > 0, (n, key)  # the kept filters do train

    pruner.remove_hooks()
    train(model, opt, 2)
    for n in SELECTED:  # without the hooks the same filters get gradients and move
        assert getattr(model, n).weight.grad[~pruner.masks[n]].abs().sum() > 0
    assert all(v > 0 for v in _pruned_rows_norm(model, pruner).values())


def test_finalize_zeroes_following_batchnorm():
    model = make_net(7)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    train(model, opt, 2)  # BN running stats and affine parameters move off their init
    with torch.no_grad():
        model.bn1.bias.add_(0.3)
    pruner = _pruner(model, "l1", rate=0.4)
    pruner.step()
    drop = ~pruner.masks["conv1"]
    train(model, opt, 1)  # soft mode: the pruned filters revive
    assert model.conv1.weight[drop].abs().sum() > 0
    ds_bn = model.downsample[1].weight.detach().clone()
    pruner.finalize()
    assert torch.all(model.conv1.weight[drop] == 0) and torch.all(model.conv1.bias[drop] == 0)
    assert torch.all(model.bn1.weight[drop] == 0) and torch.all(model.bn1.bias[drop] == 0)
    assert torch.all(model.bn1.weight[~drop] != 0) and torch.all(model.bn1.bias[~drop] != 0)
    assert torch.equal(model.downsample[1].weight, ds_bn)  # its conv is not selected
    model.eval()
    x, _ = batch(9)
    out = model.bn1(model.conv1(x))
    assert torch.all(out[:, drop] == 0)
    assert torch.all(out[:, ~drop].abs().amax(dim=(0, 2, 3)) > 0)


# ---- MFP switching -------------------------------------------------------------------------------------

A, B = 1, 2  # A: smallest l1 (3.0) but l2 3.0; B: smallest l2 (1.5) but l1 4.5


def switch_net(head_channel: int) -> nn.Sequential:
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)
    )
    with torch.no_grad():
        w = torch.zeros(4, 1, 3, 3)
        w[0] = 2.0  # l1 18, l2 6
        w[A, 0, 1, 1] = 3.0
        w[B] = 0.5
        w[3] = -2.5  # l1 22.5, l2 7.5
        model[0].weight.copy_(w)
        model[0].bias.copy_(torch.tensor([0.1, 0.2, 0.3, 0.4]))
        model[3].weight.zero_()
        model[3].weight[0, head_channel] = 2.0
        model[3].weight[1, head_channel] = -2.0
        model[3].bias.zero_()
    return model


def switch_data():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(6, 1, 5, 5, generator=gen) + 0.5  # positive: both A and B channels respond > 0
    return x, torch.zeros(6, dtype=torch.long)  # class 0 wins when the head's channel is large


def ref_neighbour_loss(model: nn.Module, filt: int, data) -> float:
    neighbour = copy.deepcopy(model).eval()
    with torch.no_grad():
        neighbour[0].weight[filt] = 0
        neighbour[0].bias[filt] = 0
        return float(nn.functional.cross_entropy(neighbour(data[0]), data[1]))


@pytest.mark.parametrize("head_channel,choice,kept_filter", [(B, "l1", B), (A, "l2", A)])
def test_switching_by_held_out_loss_picks_the_harmless_neighbour(head_channel, choice, kept_filter):
    model = switch_net(head_channel)
    original = copy.deepcopy(model)
    data = switch_data()
    expected = {"l1": ref_neighbour_loss(original, A, data), "l2": ref_neighbour_loss(original, B, data)}
    assert expected[choice] < expected["l2" if choice == "l1" else "l1"]

    pruner = _pruner(model, "fpgm", rate=0.25, candidates=["l1", "l2"], attribute="loss")
    model.train()
    record = pruner.step(held_out=data)
    assert model.training  # restored after the eval-mode rating
    assert record.criterion == choice and pruner.criterion.label == choice
    assert set(record.attributes) == {"l1", "l2"}
    for label, value in expected.items():
        assert record.attributes[label] == pytest.approx(value, rel=1e-5)
    pruned = A if choice == "l1" else B
    assert pruned_set(pruner.masks["0"]) == {pruned}
    conv, conv0 = model[0], original[0]
    assert torch.all(conv.weight[pruned] == 0) and conv.bias[pruned] == 0
    # the unchosen candidate's filter was restored, weight and bias
    assert torch.equal(conv.weight[kept_filter], conv0.weight[kept_filter])
    assert torch.equal(conv.bias[kept_filter], conv0.bias[kept_filter])
    others = [i for i in range(4) if i != pruned]
    assert torch.equal(conv.weight[others], conv0.weight[others]) and torch.equal(
        conv.bias[others], conv0.bias[others]
    )
    assert pruner.history[-1] is record and record.scoring_seconds >= 0


def test_switching_with_diversity_attribute():
    model = switch_net(B)
    original = rows64(model[0].weight).copy()
    pruner = _pruner(model, "l2", rate=0.25, candidates=["l1", "l2"], attribute="diversity")
    record = pruner.step()  # needs no data
    expected = {}
    for label, filt in (("l1", A), ("l2", B)):
        keep = np.ones(4, dtype=bool)
        keep[filt] = False
        x = original.copy()
        x[filt] = 0
        kept = x[keep]
        d = cdist(kept, kept, "euclidean")
        n = len(kept)
        expected[label] = -(d.sum() / (n * (n - 1))) / np.linalg.norm(kept, axis=1).mean()
    for label, value in expected.items():
        assert record.attributes[label] == pytest.approx(value, rel=1e-5)
    best = min(expected, key=expected.get)
    assert record.criterion == best
    assert pruned_set(pruner.masks["0"]) == {A if best == "l1" else B}


def test_switching_with_custom_attribute():
    model = switch_net(B)
    seen = []

    def a_filter_mass(m: nn.Module) -> float:  # lower = better: prefers the neighbour without A
        seen.append(m[0].weight.detach().clone())
        return float(m[0].weight[A].abs().sum())

    pruner = _pruner(model, "l2", rate=0.25, candidates=["l1", "l2"], attribute=a_filter_mass)
    record = pruner.step()
    assert record.attributes == {"l1": 0.0, "l2": 3.0}
    assert record.criterion == "l1" and pruned_set(pruner.masks["0"]) == {A}
    assert len(seen) == 2 and torch.all(seen[0][A] == 0) and torch.all(seen[1][B] == 0)
    assert model[0].weight[B].abs().sum().item() == pytest.approx(4.5)


def test_switching_loss_without_held_out_is_an_error():
    pruner = _pruner(switch_net(A), "l2", rate=0.25, candidates=["l1", "l2"])
    before = copy.deepcopy(pruner.model[0].weight)
    with pytest.raises(ValueError, match="held_out"):
        pruner.step()
    assert torch.equal(pruner.model[0].weight, before) and pruner.steps == 0


# ---- checkpoints -------------------------------------------------------------------------------------


def test_state_dict_round_trip():
    model = make_net(8)
    pruner = _pruner(model, "fpgm", rate=0.4, criterion_options={"metric": "l1"})
    pruner.step()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    train(model, opt, 1)
    pruner.step()
    state = pruner.state_dict()

    fresh = _pruner(make_net(9), "l2", rate=0.4)
    fresh.load_state_dict(state)
    assert fresh.steps == 2
    assert fresh.criterion.label == "fpgm(metric=l1)" and fresh.criterion.options == {"metric": "l1"}
    assert set(fresh.masks) == set(pruner.masks)
    for name in pruner.masks:
        assert torch.equal(fresh.masks[name], pruner.masks[name])
        assert fresh.masks[name].dtype == torch.bool
    assert fresh.history == pruner.history and all(isinstance(r, StepRecord) for r in fresh.history)
    # the loaded masks are independent copies
    state["masks"]["conv1"][:] = False
    assert fresh.masks["conv1"].sum() == 6

    other = _pruner(make_net(9), "l2", rate=0.4, layers=["conv1", "conv2"])
    with pytest.raises(ValueError, match="state"):
        other.load_state_dict(pruner.state_dict())
    for bad in (torch.ones(3, dtype=torch.bool), torch.ones(pruner.masks["conv1"].shape)):
        state = pruner.state_dict()
        state["masks"]["conv1"] = bad
        with pytest.raises(ValueError, match=r"state\['masks'\]\['conv1'\]: expected a bool tensor"):
            fresh.load_state_dict(state)


# ---- DDP -----------------------------------------------------------------------------------------------


def _ddp_worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        torch.manual_seed(1000 + rank)  # different weights on every rank
        model = nn.Sequential(nn.Conv2d(3, 10, 3), nn.ReLU(), nn.Conv2d(10, 6, 3))
        pruner = _pruner(model, "fpgm", rate=0.5)
        local = pruner.compute_masks()
        record = pruner.step()
        flat = torch.cat([pruner.masks[n] for n in ("0", "2")]).to(torch.uint8)
        gathered = [torch.empty_like(flat) for _ in range(world_size)]
        dist.all_gather(gathered, flat)
        for g in gathered:
            assert torch.equal(g, gathered[0]), "ranks disagree on the masks"
        for name, conv in (("0", model[0]), ("2", model[2])):
            assert torch.all(conv.weight[~pruner.masks[name]] == 0)

        # Switching: the attribute rates the first-tried candidate best, and the ranks try them in opposite
        # orders (rank 0 would pick l1, rank 1 l2); every rank must follow rank 0.
        torch.manual_seed(2000 + rank)
        model2 = nn.Sequential(nn.Conv2d(3, 10, 3), nn.ReLU(), nn.Conv2d(10, 6, 3))
        calls: list[int] = []

        def first_is_best(m: nn.Module) -> float:
            calls.append(0)
            return float(len(calls))

        order = ["l1", "l2"] if rank == 0 else ["l2", "l1"]
        switcher = _pruner(model2, "fpgm", rate=0.5, candidates=order, attribute=first_is_best)
        local_l1 = switcher.compute_masks(switcher.candidates[order.index("l1")])
        switched = switcher.step()
        torch.save(
            {
                "local": local,
                "final": dict(pruner.masks),
                "label": record.criterion,
                "switch_label": switched.criterion,
                "switch_criterion": switcher.criterion.label,
                "switch_local_l1": local_l1,
                "switch_final": dict(switcher.masks),
                "switch_attributes": switched.attributes,
            },
            f"{out_dir}/rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


def test_ddp_ranks_adopt_rank0_masks(tmp_path):
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert any(
        not torch.equal(r0["local"][n], r1["local"][n]) for n in ("0", "2")
    )  # the test means something
    for n in ("0", "2"):
        assert torch.equal(r0["final"][n], r0["local"][n])
        assert torch.equal(r1["final"][n], r0["local"][n])
        assert int((~r1["final"][n]).sum()) == {"0": 5, "2": 3}[n]
    assert r0["label"] == r1["label"] == "fpgm"
    assert any(not torch.equal(r0["switch_local_l1"][n], r1["switch_local_l1"][n]) for n in ("0", "2"))
    assert r1["switch_attributes"] == {"l2": 1.0, "l1": 2.0}  # rank 1 alone would have picked l2
    for r in (r0, r1):
        assert r["switch_label"] == "l1" and r["switch_criterion"] == "l1"
        for n in ("0", "2"):
            assert torch.equal(r["switch_final"][n], r0["switch_local_l1"][n])


# ---- errors --------------------------------------------------------------------------------------------


def test_argument_errors_name_the_argument():
    model = make_net(10)
    with pytest.raises(ValueError, match="criterion"):
        _pruner(model, "l3")
    for bad in (-0.1, 1.0, True, "0.4", None):
        with pytest.raises(ValueError, match="rate"):
            _pruner(model, "l2", rate=bad)
    with pytest.raises(ValueError, match="layer_rates"):
        _pruner(model, "l2", layer_rates={"conv1": 1.5})
    with pytest.raises(ValueError, match="layer_rates"):
        _pruner(model, "l2", layer_rates={"downsample.0": 0.2})
    with pytest.raises(ValueError, match="layer_rates"):
        _pruner(model, "l2", layers=["conv1"], layer_rates={"conv2": 0.2})
    with pytest.raises(ValueError, match="layers"):
        _pruner(model, "l2", layers=["conv9"])
    with pytest.raises(ValueError, match="layers"):
        _pruner(model, "l2", layers=["bn1"])
    with pytest.raises(TypeError, match="layers"):
        _pruner(model, "l2", layers="conv1")
    with pytest.raises(ValueError, match="layers"):
        _pruner(model, "l2", layers=lambda name, conv: False)
    with pytest.raises(ValueError, match="model"):
        _pruner(nn.Sequential(), "l2")
    with pytest.raises(ValueError, match="model"):
        _pruner(nn.Sequential(nn.Linear(2, 2)), "l2")
    with pytest.raises(TypeError, match="model"):
        _pruner("not a model", "l2")
    with pytest.raises(ValueError, match="mode"):
        _pruner(model, "l2", mode="medium")
    with pytest.raises(ValueError, match="optimizer"):
        _pruner(model, "l2", mode="hard")
    with pytest.raises(ValueError, match="attribute"):
        _pruner(model, "l2", candidates=["l1", "l2"], attribute="accuracy")
    with pytest.raises(ValueError, match="metric"):
        _pruner(model, "fpgm", criterion_options={"metric": "hamming"}).step()


def test_set_masks_errors_name_the_argument():
    model = make_net(11)
    pruner = _pruner(model, "l2", rate=0.4)
    good = {n: torch.ones(getattr(model, n).out_channels, dtype=torch.bool) for n in SELECTED}
    before = model.conv1.weight.detach().clone()
    with pytest.raises(ValueError, match=r"masks\['conv1'\]"):
        pruner.set_masks({**good, "conv1": torch.ones(9, dtype=torch.bool)})
    with pytest.raises(ValueError, match=r"masks\['conv1'\]"):
        pruner.set_masks({**good, "conv1": torch.ones(10)})
    with pytest.raises(ValueError, match="masks"):
        pruner.set_masks({n: m for n, m in good.items() if n != "conv2"})
    assert torch.equal(model.conv1.weight, before)
    drop = {**good, "conv2": torch.tensor([True, False, True, True, False, True, True])}
    pruner.set_masks(drop)
    assert pruned_set(pruner.masks["conv2"]) == {1, 4}
    assert torch.all(model.conv2.weight[[1, 4]] == 0) and torch.all(model.conv2.weight[[0, 2, 3, 5, 6]] != 0)


def test_nan_scores_are_an_error():
    def nan_scores(weights, *, num_pruned, masks):
        return [torch.full((w.shape[0],), float("nan")) for w in weights]

    pruner = _pruner(make_net(12), nan_scores, rate=0.4)
    with pytest.raises(ValueError, match="NaN"):
        pruner.step()
