"""Compressed lists of a masked convolution's kept kernels, derived once per mask and cached.

A bool kernel mask (O, C) (True = kept; a filter mask (O,) counts as its broadcast) becomes row-major
compressed rows (row_ptr, col: the kept channels of each filter, ascending), the packed kernels in that
order, and for filter-uniform masks (each filter keeps all its channels or none) the kept and pruned
filter indices. Used by the cpu, cuda and triton backends of fastprune.ops.masked_conv2d.

Grouped convolutions (groups g > 1: weight (O, C/g, kh, kw), mask (O,) or (O, C/g)) are the ungrouped
convolution whose (O, C) kernel mask is block diagonal: filter o (group G = o // (O/g)) keeps at most the
channels G C/g .. (G + 1) C/g - 1, its mask row placed there (block_diagonal). The lists are those of that
mask, so the kernels (which know only groups = 1) compute the grouped convolution with work proportional
to the kept kernels; col holds input channels of x (0..C-1), `channels` the weight's (0..C/g - 1).
"""

from __future__ import annotations

import collections
from typing import NamedTuple, Optional

import torch


def kept_lists(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(O, C) bool -> compressed rows: row_ptr (O + 1,) int32, col (nnz,) int32 (ascending per filter)
    and the filter of each kept kernel (nnz,) int64."""
    filters, col = mask.nonzero(as_tuple=True)  # row-major order: filters ascending, channels ascending
    row_ptr = torch.zeros(mask.shape[0] + 1, dtype=torch.int32, device=mask.device)
    row_ptr[1:] = mask.sum(1).cumsum(0)
    return row_ptr, col.to(torch.int32).contiguous(), filters


class MaskLists(NamedTuple):
    """What the cpu and cuda backends derive from an (O, C) mask, once per mask (see mask_lists)."""

    row_ptr: torch.Tensor  # (O + 1,) int32 on the host: the C ABI reads the lists there on either device
    col: torch.Tensor  # (nnz,) int32 on the host: kept input channels of x (0..C-1), ascending per filter
    channels: torch.Tensor  # (nnz,) int64 on the mask's device: their index in the weight's dim 1, for
    # gathering kernels (col itself when groups = 1, col - G C/g in group G otherwise)
    filters: torch.Tensor  # (nnz,) int64 on the mask's device: the filter of each kept kernel
    kept: Optional[torch.Tensor]  # filter-uniform masks (each filter keeps all or none): kept filters
    pruned: Optional[torch.Tensor]  # ... and pruned filters (int64); None for other masks and groups > 1


# Lists of recent masks: a training loop or a MaskedConv2d calls the op with the same mask every step, and
# deriving them (nonzero, cumsum, copies, the uniformity test) costs ~100 us a call, ~5% of a masked
# ResNet-56 layer at batch 64 fwd+bwd. A hit needs the same storage, shape and strides and equal contents
# (a copy is kept and compared, ~2 us), so a new or modified mask is never served stale lists.
_LIST_CACHE: collections.OrderedDict = collections.OrderedDict()
_LIST_CACHE_SIZE = 128


def kernel_mask(mask: torch.Tensor, in_channels: int) -> torch.Tensor:
    """A mask as a kernel mask (O, in_channels): a filter mask (O,) broadcast, without a copy."""
    return mask[:, None].expand(-1, in_channels) if mask.dim() == 1 else mask


def block_diagonal(mask: torch.Tensor, groups: int) -> torch.Tensor:
    """A kernel mask (O, C/g) of a grouped convolution as the (O, C) kernel mask of the same convolution
    ungrouped: row o placed at the channels of its group o // (O/g), False elsewhere."""
    if groups == 1:
        return mask
    out_channels, per_group = mask.shape
    filters = torch.arange(out_channels, device=mask.device)
    full = mask.new_zeros(out_channels, groups, per_group)
    full[filters, filters // (out_channels // groups)] = mask
    return full.view(out_channels, groups * per_group)


def weight_channels(
    col: torch.Tensor, filters: torch.Tensor, out_channels: int, in_per_group: int, groups: int
):
    """The weight's dim-1 index (int64) of kept kernels given by their input channel col and filter: col
    minus the first channel of the filter's group."""
    if groups == 1:
        return col.long()
    return col.long() - filters // (out_channels // groups) * in_per_group


def mask_lists(mask: torch.Tensor, in_channels: int, groups: int = 1) -> MaskLists:
    """The lists of a filter mask (O,) or a kernel mask (O, in_channels), in_channels = C / groups (see
    the module docstring for groups > 1)."""
    key = (mask.device, mask.data_ptr(), tuple(mask.shape), mask.stride(), in_channels, groups)
    hit = _LIST_CACHE.get(key)
    if hit is not None and torch.equal(hit[0], mask):
        _LIST_CACHE.move_to_end(key)
        return hit[1]
    kernels = kernel_mask(mask, in_channels)
    row_ptr, col, filters = kept_lists(block_diagonal(kernels, groups))
    kept = kernels.all(dim=1)
    # Filter-uniform lists take the whole filters (all C channels, the dense route): never for groups > 1.
    uniform = groups == 1 and bool((kept | ~kernels.any(dim=1)).all())
    lists = MaskLists(
        row_ptr.cpu(),
        col.cpu(),
        weight_channels(col, filters, mask.shape[0], in_channels, groups),
        filters,
        kept.nonzero().squeeze(1) if uniform else None,
        (~kept).nonzero().squeeze(1) if uniform else None,
    )
    _LIST_CACHE[key] = (mask.clone(), lists)
    if len(_LIST_CACHE) > _LIST_CACHE_SIZE:
        _LIST_CACHE.popitem(last=False)
    return lists


def packed_kernels(weight: torch.Tensor, lists: MaskLists) -> torch.Tensor:
    """The kept kernels, contiguous in list order: (kept filters, C, kh, kw) for a filter-uniform mask (a
    row gather, and the weight of the kept filters as it is), else (nnz, kh, kw)."""
    if lists.kept is not None:
        return weight.index_select(0, lists.kept)
    return weight[lists.filters, lists.channels].contiguous()


def unpacked_kernels(grad_kernels: torch.Tensor, weight: torch.Tensor, lists: MaskLists) -> torch.Tensor:
    """The weight-shaped tensor (O, C / groups, kh, kw) holding grad_kernels (shaped as packed_kernels
    gives) at the kept kernels, 0 elsewhere."""
    out = weight.new_zeros(weight.shape)
    if lists.kept is not None:
        return out.index_copy_(0, lists.kept, grad_kernels)
    out[lists.filters, lists.channels] = grad_kernels
    return out


def transposed_lists(col: torch.Tensor, filters: torch.Tensor, in_channels: int):
    """The kept kernels grouped by input channel (CSC): col_ptr (C + 1,) int32, and per entry the index
    of the kernel in the packed (row-major) list and its filter, int32, filters ascending per channel."""
    order = torch.sort(col.long(), stable=True).indices
    col_ptr = torch.zeros(in_channels + 1, dtype=torch.int32, device=col.device)
    col_ptr[1:] = torch.bincount(col.long(), minlength=in_channels).cumsum(0)
    return col_ptr, order.to(torch.int32), filters[order].to(torch.int32)
