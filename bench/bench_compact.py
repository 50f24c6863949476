"""Compaction: masked (zeroed filters) against compacted CIFAR ResNet-56 at 40% filter pruning, batch 64
and 1. The side-by-side table with ratios and the stored CSV is `python -m fastprune bench compact`."""

import pytest
import torch

from fastprune import models
from fastprune.benchmarks.compaction import prune_l2, random_bn_stats
from fastprune.compaction import compact


@pytest.fixture(scope="module")
def resnet56_pair():
    torch.manual_seed(0)
    masked = prune_l2(random_bn_stats(models.create("resnet56")), 0.4).eval()
    return {"masked": masked, "compact": compact(masked)}


@pytest.mark.parametrize("batch", [64, 1])
@pytest.mark.parametrize("which", ["masked", "compact"])
@pytest.mark.benchmark(group="compaction")
def test_resnet56_forward(benchmark, resnet56_pair, which, batch):
    model, x = resnet56_pair[which], torch.randn(batch, 3, 32, 32)
    benchmark.extra_info.update(network="resnet56", rate=0.4, batch=batch)
    with torch.no_grad():
        benchmark(model, x)
