"""Validation and packing of filter lists into the ragged layout every backend takes.

A network's conv weights W_l of shape (N_l, C_l, k, k) (or already (N_l, D_l)) become one 1-D float32
tensor holding the rows F_lj = W_l[j].flatten(), layer after layer, plus the sizes N_l and D_l. One pack,
then one native call or kernel launch for the whole network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch

Filters = Union[torch.Tensor, Sequence[torch.Tensor]]
Mask = Union[torch.Tensor, Sequence[torch.Tensor], None]

METRICS = {"l2": 0, "l1": 1, "cosine": 2, "sqeuclidean": 3}
_ACCEPTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@dataclass
class RaggedFilters:
    data: torch.Tensor  # (sum_l N_l * D_l,) float32, contiguous
    num_rows: list[int]  # N_l
    row_dims: list[int]  # D_l
    single: bool  # the caller passed one tensor, not a list

    @property
    def device(self) -> torch.device:
        return self.data.device


def metric_id(metric: str) -> int:
    if not isinstance(metric, str) or metric not in METRICS:
        raise ValueError(f"metric: expected one of {', '.join(repr(m) for m in METRICS)}, got {metric!r}")
    return METRICS[metric]


def pack_filters(filters: Filters) -> RaggedFilters:
    """Checks `filters` (a tensor or a non-empty list of tensors) and packs them into float32 rows."""
    single = isinstance(filters, torch.Tensor)
    layers = [filters] if single else filters
    if not isinstance(layers, (list, tuple)):
        raise TypeError(f"filters: expected a tensor or a list of tensors, got {type(filters).__name__}")
    if len(layers) == 0:
        raise ValueError("filters: expected at least one layer, got an empty list")
    rows, dims, flat = [], [], []
    for index, weight in enumerate(layers):
        name = "filters" if single else f"filters[{index}]"
        if not isinstance(weight, torch.Tensor):
            raise TypeError(f"{name}: expected a tensor, got {type(weight).__name__}")
        if weight.dtype not in _ACCEPTED_DTYPES:
            raise TypeError(
                f"{name}: expected float32, float16 or bfloat16 weights, got {weight.dtype} "
                "(scores are computed in float32; convert with .float())"
            )
        if weight.dim() not in (2, 4):
            raise ValueError(
                f"{name}: expected a conv weight (N, C, k, k) or rows (N, D), got shape {tuple(weight.shape)}"
            )
        if weight.numel() == 0:
            raise ValueError(f"{name}: expected at least one filter with at least one weight, got shape "
                             f"{tuple(weight.shape)}")
        if weight.device != layers[0].device:
            raise ValueError(f"{name}: expected every layer on {layers[0].device}, got {weight.device}")
        rows.append(int(weight.shape[0]))
        dims.append(int(weight.numel() // weight.shape[0]))
        flat.append(weight.detach().reshape(-1))
    if len(flat) == 1:
        data = flat[0].to(torch.float32).contiguous()
    else:
        data = torch.cat([f.to(torch.float32) for f in flat])
    return RaggedFilters(data, rows, dims, single)


def pack_mask(mask: Mask, packed: RaggedFilters) -> Optional[torch.Tensor]:
    """Checks a keep-mask (per layer, bool, True = kept) and packs it into one uint8 tensor."""
    if mask is None:
        return None
    masks = [mask] if packed.single and isinstance(mask, torch.Tensor) else mask
    if not isinstance(masks, (list, tuple)) or len(masks) != len(packed.num_rows):
        raise ValueError(
            f"mask: expected {'a bool tensor' if packed.single else f'a list of {len(packed.num_rows)} bool tensors'}"
            f" (one per layer of filters), got {type(mask).__name__}"
            + (f" of length {len(mask)}" if isinstance(mask, (list, tuple)) else "")
        )
    for index, (layer_mask, rows) in enumerate(zip(masks, packed.num_rows)):
        name = "mask" if packed.single else f"mask[{index}]"
        if not isinstance(layer_mask, torch.Tensor) or layer_mask.dtype != torch.bool:
            got = layer_mask.dtype if isinstance(layer_mask, torch.Tensor) else type(layer_mask).__name__
            raise TypeError(f"{name}: expected a bool tensor (True = kept), got {got}")
        if layer_mask.dim() != 1 or layer_mask.shape[0] != rows:
            raise ValueError(f"{name}: expected shape ({rows},), one entry per filter, got {tuple(layer_mask.shape)}")
        if layer_mask.device != packed.device:
            raise ValueError(f"{name}: expected a tensor on {packed.device} like the filters, got {layer_mask.device}")
    return torch.cat([m.reshape(-1) for m in masks]).to(torch.uint8)


def check_finite(data: torch.Tensor, num_rows: list[int], row_dims: list[int]) -> None:
    """Raises ValueError naming the first layer and filter with NaN/Inf (what the C ABI does too)."""
    finite = torch.isfinite(data)
    if bool(finite.all()):
        return
    offset = 0
    for layer, (rows, dims) in enumerate(zip(num_rows, row_dims)):
        bad = (~finite[offset : offset + rows * dims]).view(rows, dims).any(dim=1).nonzero()
        if bad.numel():
            raise ValueError(
                f"filters: layer {layer}, filter {int(bad[0])} contains NaN or Inf "
                "(scores of non-finite weights are meaningless; check for divergence)"
            )
        offset += rows * dims


def split_per_layer(values: torch.Tensor, sizes: list[int], single: bool) -> Union[torch.Tensor, list]:
    """Cuts a packed per-layer output back into the caller's shape (a tensor or a list)."""
    parts = list(torch.split(values, sizes))
    return parts[0] if single else parts
