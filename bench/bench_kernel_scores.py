"""Whole-network kernel_scores per criterion on ResNet-56 / ResNet-50 conv shapes (random weights)."""

import pytest

from fastprune.ops import CRITERIA, kernel_scores


@pytest.mark.benchmark(group="kernel_scores")
@pytest.mark.parametrize("criterion", list(CRITERIA))
def test_fastprune_cpu(benchmark, network, criterion):
    name, weights = network
    benchmark.extra_info["network"] = name
    benchmark(kernel_scores, weights, criterion, backend="cpu")
