"""Scoring inside Torch-Pruning: its FPGMImportance against fastprune's adapter, per network.

    python -m fastprune bench ecosystem [--out bench/results]

For ResNet-56, VGG-16 and MobileNetV2 (CIFAR, 32x32) and ResNet-50 (ImageNet, 224x224), with random
He-initialised weights: Torch-Pruning's DependencyGraph is built once, its groups listed (conv roots), and
three ways of scoring every group are timed interleaved (5 rounds, medians; ratios are medians over rounds):

* ``tp``: ``torch_pruning.importance.FPGMImportance()`` called on every group;
* ``adapter``: ``fastprune.integrations.torch_pruning.FPGMImportance(semantics="tp")`` on every group, its
  cache cleared first (a new pruning step: the batched call included);
* ``gm_scores``: one raw ``fastprune.ops.gm_scores`` call on every conv weight (the paper's FPGM, no
  Torch-Pruning around it).

``identical`` says whether both importances rank every group's channels alike (the channels a 30% step
prunes, ties by index). ``step`` times one ``MetaPruner.step()`` at pruning ratio 0.3 on a fresh copy
with each importance, and the share of it spent scoring. Rows go to OUT/ecosystem.csv.
"""

from __future__ import annotations

import copy
import datetime
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn

from fastprune.benchmarks.common import append_csv, commit, interleaved_times, machine_name, median_ratio

FIELDS = [
    "date", "commit", "machine", "network", "groups", "tp_ms", "adapter_ms", "gm_scores_ms", "speedup",
    "target", "identical", "tp_step_ms", "tp_scoring_share", "adapter_step_ms", "adapter_scoring_share",
]  # fmt: skip
CASES = [  # network, classes, input size, target speed-up of the adapter over Torch-Pruning
    ("resnet56", 10, 32, 5.0),
    ("mobilenet_v2", 10, 32, 5.0),
    ("vgg16", 10, 32, 2.0),
    ("resnet50", 1000, 224, 2.0),
]


def _groups(model: nn.Module, example: torch.Tensor) -> tuple[Any, list]:
    import torch_pruning as tp

    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
    return graph, list(graph.get_all_groups(root_module_types=(nn.Conv2d,)))


def _pruned_channels(scores: torch.Tensor, rate: float = 0.3) -> list[int]:
    count = int(scores.numel() * rate)
    return sorted(torch.sort(scores.double(), stable=True).indices[:count].tolist())


def _timed_step(model: nn.Module, example: torch.Tensor, importance: Callable) -> tuple[float, float]:
    """(step seconds, share spent in the importance) of one MetaPruner step at ratio 0.3 on a copy."""
    import torch_pruning as tp

    spent = [0.0]

    def timed(group: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return importance(group, **kwargs)
        finally:
            spent[0] += time.perf_counter() - start

    copy_ = copy.deepcopy(model)
    heads = [m for m in copy_.modules() if isinstance(m, nn.Linear)][-1:]
    pruner = tp.pruner.MetaPruner(copy_, example, importance=timed, pruning_ratio=0.3, ignored_layers=heads)
    start = time.perf_counter()
    pruner.step()
    total = time.perf_counter() - start
    return total, spent[0] / total


def _score_times(
    network: str, classes: int, size: int, repeats: int
) -> tuple[list, bool, int, nn.Module, Any]:
    """Interleaved times of TP's importance, the adapter and one gm_scores call over every group, whether
    both importances prune the same channels, the group count, the model and its example input."""
    import torch_pruning as tp

    from fastprune import models
    from fastprune.integrations.torch_pruning import FPGMImportance
    from fastprune.ops import gm_scores

    torch.manual_seed(0)
    model = models.create(network, num_classes=classes).eval()
    example = torch.zeros(1, 3, size, size)
    _, groups = _groups(model, example)
    theirs, ours = tp.importance.FPGMImportance(), FPGMImportance(semantics="tp")
    weights = [m.weight.detach() for m in model.modules() if isinstance(m, nn.Conv2d)]

    def score_all(importance: Callable) -> list:
        if importance is ours:
            ours.clear_cache()  # a new pruning step: the batched call is part of the time
        return [importance(group) for group in groups]

    with torch.no_grad():
        identical = all(
            _pruned_channels(a) == _pruned_channels(b)
            for a, b in zip(score_all(theirs), score_all(ours))
            if a is not None  # TP skips depthwise-only groups; the adapter scores them too
        )
        fns = [lambda: score_all(theirs), lambda: score_all(ours), lambda: gm_scores(weights)]
        times = interleaved_times(fns, repeats)
    return times, identical, len(groups), model, example


def run(out_dir: Optional[Path] = None, networks: Optional[list[str]] = None, repeats: int = 5) -> list[dict]:
    import torch_pruning as tp

    from fastprune.integrations.torch_pruning import FPGMImportance

    rows = []
    print(f"{machine_name()}, commit {commit()}, torch threads {torch.get_num_threads()}")
    head = (
        f"{'network':<14}{'groups':>7}{'TP ms':>10}{'adapter ms':>12}{'gm_scores':>11}{'speed-up':>10}"
        f"{'target':>8}{'identical':>11}{'TP step':>10}{'scoring':>9}{'ad. step':>10}{'scoring':>9}"
    )
    print(head + "\n" + "-" * len(head))
    for network, classes, size, target in CASES:
        if networks and network not in networks:
            continue
        times, identical, groups, model, example = _score_times(network, classes, size, repeats)
        tp_ms, ours_ms, raw_ms = (1e3 * statistics.median(t) for t in times)
        speedup = median_ratio(times[0], times[1])
        tp_step, tp_share = _timed_step(model, example, tp.importance.FPGMImportance())
        our_step, our_share = _timed_step(model, example, FPGMImportance(semantics="tp"))
        print(
            f"{network:<14}{groups:>7}{tp_ms:>10.2f}{ours_ms:>12.2f}{raw_ms:>11.2f}{speedup:>9.2f}x"
            f"{target:>7.1f}x{str(identical):>11}{1e3 * tp_step:>10.1f}{100 * tp_share:>8.0f}%"
            f"{1e3 * our_step:>10.1f}{100 * our_share:>8.0f}%"
        )
        rows.append({
            "date": datetime.datetime.now().isoformat(timespec="seconds"), "commit": commit(),
            "machine": machine_name(), "network": network, "groups": groups, "tp_ms": tp_ms,
            "adapter_ms": ours_ms, "gm_scores_ms": raw_ms, "speedup": speedup, "target": target,
            "identical": identical, "tp_step_ms": 1e3 * tp_step, "tp_scoring_share": tp_share,
            "adapter_step_ms": 1e3 * our_step, "adapter_scoring_share": our_share,
        })  # fmt: skip
    if out_dir is not None:
        append_csv(Path(out_dir) / "ecosystem.csv", FIELDS, rows)
    return rows
