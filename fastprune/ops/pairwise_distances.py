"""pairwise_distances: every layer's full N x N filter distance matrix, whole network in one call."""

from __future__ import annotations

from typing import Union

import torch

from fastprune.backends import select_backend
from fastprune.ops import _native_call, _reference
from fastprune.ops._ragged import Filters, check_finite, metric_id, pack_filters, split_per_layer


def _triton(data, num_rows, row_dims, metric):
    check_finite(data, num_rows, row_dims)
    from fastprune.triton_kernels import pairwise_distances

    return pairwise_distances(data, num_rows, row_dims, metric)


def _torch(data, num_rows, row_dims, metric):
    check_finite(data, num_rows, row_dims)
    return _reference.pairwise_distances(data, num_rows, row_dims, metric)


def _native(data, num_rows, row_dims, metric):
    return _native_call.call("pairwise_distances", data, num_rows, row_dims, metric, sum(n * n for n in num_rows))


_IMPLEMENTATIONS = {"cpu": _native, "cuda": _native, "triton": _triton, "torch": _torch}


@torch.library.custom_op("fastprune::pairwise_distances", mutates_args=())
def pairwise_distances_packed(
    data: torch.Tensor, num_rows: list[int], row_dims: list[int], metric: int, backend: str
) -> torch.Tensor:
    """Packed form: data (sum N_l D_l,) float32 -> (sum N_l^2,) float32, each layer's N_l x N_l
    row-major matrix after the previous one. `backend` is a concrete backend name."""
    return _IMPLEMENTATIONS[backend](data, num_rows, row_dims, metric)


@pairwise_distances_packed.register_fake
def _(data, num_rows, row_dims, metric, backend):
    return data.new_empty(sum(n * n for n in num_rows))


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
            (float16/bfloat16 accepted, computed in float32). A list is scored in one native call.
        metric: one of the names above.
        backend: "auto", "cpu", "cuda", "triton" or "torch" (see fastprune.backends).
    Returns:
        float32 (N, N) tensor, or a list of them for a list input, on the filters' device.
    Accuracy: relative error <= 1e-4 against float64, near-duplicate filters included: the CPU's
    Gram form recomputes pairs under 1/16 of |a|^2 + |b|^2 from the differences (see
    csrc/include/fastprune/detail/distance.h); the CUDA and Triton kernels always use differences.
    Raises:
        ValueError / TypeError naming the bad argument; ValueError for NaN/Inf weights.
    """
    metric_code = metric_id(metric)
    packed = pack_filters(filters)
    name = select_backend(backend, packed.device.type, "pairwise_distances")
    out = torch.ops.fastprune.pairwise_distances(packed.data, packed.num_rows, packed.row_dims, metric_code, name)
    matrices = split_per_layer(out, [n * n for n in packed.num_rows], single=False)
    matrices = [m.view(n, n) for m, n in zip(matrices, packed.num_rows)]
    return matrices[0] if packed.single else matrices
