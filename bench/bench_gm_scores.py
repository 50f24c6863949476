"""Whole-network gm_scores: fastprune's CPU backend against the per-layer torch.cdist loop and
FPGM's SciPy loop, on CIFAR ResNet-56 and ImageNet ResNet-50 conv shapes (random weights)."""

import pytest
import torch

from fastprune.ops import gm_scores


@pytest.mark.benchmark(group="gm_scores")
def test_fastprune_cpu(benchmark, network):
    name, weights = network
    benchmark.extra_info["network"] = name
    benchmark(gm_scores, weights, "l2", backend="cpu")


@pytest.mark.benchmark(group="gm_scores")
def test_torch_cdist_loop(benchmark, network):
    name, weights = network
    benchmark.extra_info["network"] = name
    rows = [w.reshape(w.shape[0], -1) for w in weights]
    benchmark(lambda: [torch.cdist(x, x).sum(1) for x in rows])


@pytest.mark.benchmark(group="gm_scores")
def test_scipy_cdist_loop(benchmark, network):
    from scipy.spatial.distance import cdist

    name, weights = network
    benchmark.extra_info["network"] = name
    rows = [w.reshape(w.shape[0], -1).numpy() for w in weights]
    benchmark.pedantic(lambda: [cdist(x, x, "euclidean").sum(0) for x in rows], rounds=3, iterations=1)
