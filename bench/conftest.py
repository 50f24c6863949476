"""pytest-benchmark suites, one file per op: `make bench-pytest` (or
`python -m pytest bench -o python_files='bench_*.py' --benchmark-only`). The side-by-side table with
ratios, rates and stored CSV is `python -m fastprune bench scoring`."""

import pytest
import torch

from fastprune.benchmarks.networks import NETWORKS


@pytest.fixture(scope="session", params=sorted(NETWORKS))
def network(request):
    generator = torch.Generator().manual_seed(0)
    return request.param, [torch.randn(shape, generator=generator) for shape in NETWORKS[request.param]]
