"""CUDA entry points run on PyTorch's current stream and device (issue 19). GPU-only (cuda-marked, skipped
without a GPU): work queued ahead on a side stream must be waited for, which a kernel launched on the
default stream would not do."""

from __future__ import annotations

import pytest
import torch
from conftest import requires_cuda

from fastprune.ops import gm_scores, masked_conv2d


def _behind_a_long_kernel(make):
    """make() run on a side stream right after a ~50 ms GPU sleep and an op producing its input."""
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        torch.cuda._sleep(50_000_000)
        out = make()
    side.synchronize()
    return out


@requires_cuda
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_masked_conv2d_waits_for_work_on_the_current_stream(backend: str) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, 16, 16, generator=gen).cuda()
    w = torch.randn(6, 8, 3, 3, generator=gen).cuda()
    mask = (torch.rand(6, 8, generator=gen) < 0.5).cuda()
    ref = masked_conv2d(x, w, mask, padding=1, backend="torch")
    got = _behind_a_long_kernel(lambda: masked_conv2d(x * 1.0, w, mask, padding=1, backend=backend))
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


@requires_cuda
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_gm_scores_waits_for_work_on_the_current_stream(backend: str) -> None:
    w = torch.randn(64, 288, generator=torch.Generator().manual_seed(1)).cuda()
    ref = gm_scores(w.double(), backend="torch")
    got = _behind_a_long_kernel(lambda: gm_scores(w * 1.0, backend=backend))
    torch.testing.assert_close(got.double(), ref, rtol=1e-4, atol=0.0)
