"""Whole-network pairwise_distances: fastprune's CPU backend against a per-layer torch.cdist loop."""

import pytest
import torch

from fastprune.ops import pairwise_distances


@pytest.mark.benchmark(group="pairwise_distances")
@pytest.mark.parametrize("metric", ["l2", "l1", "cosine"])
def test_fastprune_cpu(benchmark, network, metric):
    name, weights = network
    benchmark.extra_info["network"] = name
    benchmark(pairwise_distances, weights, metric, backend="cpu")


@pytest.mark.benchmark(group="pairwise_distances")
@pytest.mark.parametrize("p", [2.0, 1.0])
def test_torch_cdist_loop(benchmark, network, p):
    name, weights = network
    benchmark.extra_info["network"] = name
    rows = [w.reshape(w.shape[0], -1) for w in weights]
    benchmark(lambda: [torch.cdist(x, x, p=p) for x in rows])
