"""pairwise_distances: every layer's full N x N filter distance matrix, whole network in one call."""

from __future__ import annotations

from typing import Union

import torch

from fastprune.ops import _native_call, _reference
from fastprune.ops._library import register
from fastprune.ops._ragged import (
    Filters,
    check_finite,
    metric_id,
    pack,
    prepare_layers,
    select_float_backend,
    sizes,
    split_per_layer,
)


def _triton(rows: list[torch.Tensor], metric: int) -> torch.Tensor:
    from fastprune.triton_kernels import pairwise_distances

    check_finite(rows)
    return pairwise_distances(pack(rows), *sizes(rows), metric)


def _torch(rows: list[torch.Tensor], metric: int) -> torch.Tensor:
    check_finite(rows)
    return _reference.pairwise_distances(rows, metric)


def _native(rows: list[torch.Tensor], metric: int) -> torch.Tensor:
    return _native_call.call("pairwise_distances", rows, metric, sum(r.shape[0] ** 2 for r in rows))


_IMPLEMENTATIONS = {"cpu": _native, "cuda": _native, "triton": _triton, "torch": _torch}


def _implementation(layers: list[torch.Tensor], metric: int, backend: str) -> torch.Tensor:
    """layers: (N_l, D_l) float32 contiguous -> (sum N_l^2,) float32, each layer's N_l x N_l row-major
    matrix after the previous one. `backend` is a concrete backend name."""
    return _IMPLEMENTATIONS[backend](layers, metric)


def _fake(layers, metric, backend):
    return layers[0].new_empty(sum(r.shape[0] * r.shape[0] for r in layers))


register("pairwise_distances", "(Tensor[] layers, int metric, str backend) -> Tensor", _implementation, _fake)


def pairwise_distances(
    filters: Filters, metric: str = "l2", *, backend: str = "auto"
) -> Union[torch.Tensor, list[torch.Tensor]]:
    """Distance matrices between the filters of each layer.

    For a conv weight W of shape (N, C, k, k) (or rows (N, D)), filter F_j = W[j].flatten() and
    out[j, j'] = d(F_j, F_j') with d one of
        "l2"           ||F_j - F_j'||_2
        "l1"           ||F_j - F_j'||_1
        "cosine"       1 - <F_j, F_j'> / (|F_j| |F_j'|)   (a zero filter is at distance 1 from the others)
        "sqeuclidean"  ||F_j - F_j'||_2^2
    Each unordered pair is computed once; the matrix is exactly symmetric with a zero diagonal.

    Args:
        filters: one weight, or a list of weights of different shapes (one per layer), float32
            (float16/bfloat16 accepted, computed in float32; float64 computed and returned in float64, by
            the torch backend). A list is scored in one native call.
        metric: one of the names above.
        backend: "auto", "cpu", "cuda", "triton" or "torch" (see fastprune.backends).
    Returns:
        float32 (N, N) tensor (float64 for float64 filters), or a list of them for a list input, on the
        filters' device.
    Accuracy: relative error <= 1e-4 against float64, near-duplicate filters included. The CPU takes
    squared distances from a Gram product and recomputes from the differences every pair under 1/16
    of |a|^2 + |b|^2, where float32 cancellation could bite (csrc/include/fastprune/detail/distance.h);
    the CUDA and Triton kernels always use differences.
    Raises:
        ValueError / TypeError naming the bad argument; ValueError for NaN/Inf weights.
    """
    metric_code = metric_id(metric)
    layers = prepare_layers(filters)
    name = select_float_backend(backend, layers.rows[0], "pairwise_distances")
    out = torch.ops.fastprune.pairwise_distances(layers.rows, metric_code, name)
    num_rows = [r.shape[0] for r in layers.rows]
    matrices = [m.view(n, n) for m, n in zip(torch.split(out, [n * n for n in num_rows]), num_rows)]
    return split_per_layer(matrices, layers.single)
