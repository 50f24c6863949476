"""Validation of filter lists, and packing into the ragged layout of the C ABI and the Triton kernels.

A network's conv weights W_l of shape (N_l, C_l, k, k) (or already (N_l, D_l)) are viewed as float32
rows F_lj = W_l[j].flatten(), one (N_l, D_l) matrix per layer. The CPU backend takes those by pointer;
CUDA and Triton take them packed layer after layer into one 1-D tensor. Either way the whole network
is one native call or kernel launch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch

from fastprune.backends import BackendError, select_backend

Filters = Union[torch.Tensor, Sequence[torch.Tensor]]
Mask = Union[torch.Tensor, Sequence[torch.Tensor], None]

METRICS = {"l2": 0, "l1": 1, "cosine": 2, "sqeuclidean": 3}
_ACCEPTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@dataclass
class Layers:
    rows: list[
        torch.Tensor
    ]  # per layer (N_l, D_l) float32 (float64 when any layer is), contiguous (views when possible)
    single: bool  # the caller passed one tensor, not a list

    @property
    def device(self) -> torch.device:
        return self.rows[0].device


def metric_id(metric: str) -> int:
    if not isinstance(metric, str) or metric not in METRICS:
        raise ValueError(f"metric: expected one of {', '.join(repr(m) for m in METRICS)}, got {metric!r}")
    return METRICS[metric]


def check_float_tensor(x: object, name: str, what: str, float64: bool = False) -> None:
    """The checks every op makes on its tensor input: a tensor, of a dtype fastprune computes from
    (`float64`: that op also computes in float64)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a tensor, got {type(x).__name__}")
    if float64 and x.dtype is torch.float64:
        return
    if x.dtype not in _ACCEPTED_DTYPES:
        accepted = "float32, float16, bfloat16 or float64" if float64 else "float32, float16 or bfloat16"
        computed = "computed in float32, float64 in float64" if float64 else "computed in float32"
        raise TypeError(
            f"{name}: expected {accepted} {what}, got {x.dtype} ({computed}; convert with .float())"
        )


def float_rows(x: torch.Tensor, rows: int, cols: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """x as a contiguous (rows, cols) matrix of `dtype` (float32, or float64 for a float64 computation): a
    view for contiguous input of that dtype, else one copy."""
    if x.dtype is dtype and x.is_contiguous():
        return x.detach().view(rows, cols)
    return x.detach().reshape(rows, cols).to(dtype).contiguous()


FLOAT64_BACKEND = "float64 input is computed in float64 by the torch backend"


def result_dtype(sample: torch.Tensor, kind: torch.dtype = torch.float32) -> torch.dtype:
    """An op's result dtype for input like `sample`: `kind` (float32 / complex64, what the kernels give),
    or its double form (float64 / complex128) for float64 input, computed in float64."""
    if sample.dtype is not torch.float64:
        return kind
    return torch.complex128 if kind.is_complex else torch.float64


def select_float_backend(
    requested: str, sample: torch.Tensor, op: str, matrix_n: Optional[int] = None
) -> str:
    """:func:`~fastprune.backends.select_backend` for `op` on inputs like `sample` (its rows, as prepared):
    float64 goes to the torch backend, the one that computes in float64 ('auto' picks it); a float32
    kernel asked for by name is refused with the reason."""
    float64 = sample.dtype is torch.float64
    name = select_backend(
        requested, sample.device.type, op, matrix_n=matrix_n, auto_torch=FLOAT64_BACKEND if float64 else None
    )
    if float64 and name != "torch":
        raise BackendError(f"backend {name!r} computes {op} in float32; {FLOAT64_BACKEND} ('auto' picks it)")
    return name


def prepare_layers(filters: Filters) -> Layers:
    """Checks `filters` (a tensor or a non-empty list of tensors) and views each as float32 rows
    (N_l, D_l), or float64 rows when any layer is float64 (computed in float64). Contiguous weights of
    that dtype are not copied."""
    single = isinstance(filters, torch.Tensor)
    weights = [filters] if single else filters
    if not isinstance(weights, (list, tuple)):
        raise TypeError(f"filters: expected a tensor or a list of tensors, got {type(filters).__name__}")
    if len(weights) == 0:
        raise ValueError("filters: expected at least one layer, got an empty list")
    rows = []
    device = weights[0].device if isinstance(weights[0], torch.Tensor) else None
    for index, weight in enumerate(weights):
        # This loop runs once per conv layer of every scoring call: cheap checks, no copies for
        # contiguous float32 weights (the common case), and messages built only on failure.
        name = "filters" if single else f"filters[{index}]"
        check_float_tensor(weight, name, "weights", float64=True)
        shape = weight.shape
        if len(shape) not in (2, 4):
            raise ValueError(
                f"{name}: expected a conv weight (N, C, k, k) or rows (N, D), got shape {tuple(shape)}"
            )
        if weight.numel() == 0:
            raise ValueError(
                f"{name}: expected at least one filter with at least one weight, got shape {tuple(shape)}"
            )
        if weight.device != device:
            raise ValueError(f"{name}: expected every layer on {device}, got {weight.device}")
        rows.append(weight)
    wide = any(w.dtype is torch.float64 for w in rows)
    dtype = torch.float64 if wide else torch.float32
    return Layers([float_rows(w, w.shape[0], w.numel() // w.shape[0], dtype) for w in rows], single)


def pack(rows: list[torch.Tensor]) -> torch.Tensor:
    """The packed layout of fastprune.h: every layer's rows, layer after layer, in one 1-D tensor."""
    return torch.cat([r.reshape(-1) for r in rows]) if len(rows) > 1 else rows[0].reshape(-1)


def sizes(rows: list[torch.Tensor]) -> tuple[list[int], list[int]]:
    """(N_l per layer, D_l per layer)."""
    return [r.shape[0] for r in rows], [r.shape[1] for r in rows]


def pack_mask(mask: Mask, layers: Layers) -> Optional[torch.Tensor]:
    """Checks a keep-mask (per layer, bool, True = kept) and packs it into one uint8 tensor."""
    if mask is None:
        return None
    masks = [mask] if layers.single and isinstance(mask, torch.Tensor) else mask
    if not isinstance(masks, (list, tuple)) or len(masks) != len(layers.rows):
        expected = "a bool tensor" if layers.single else f"a list of {len(layers.rows)} bool tensors"
        raise ValueError(
            f"mask: expected {expected} (one per layer of filters), got {type(mask).__name__}"
            + (f" of length {len(mask)}" if isinstance(mask, (list, tuple)) else "")
        )
    for index, (layer_mask, rows) in enumerate(zip(masks, (r.shape[0] for r in layers.rows))):
        name = "mask" if layers.single else f"mask[{index}]"
        if not isinstance(layer_mask, torch.Tensor) or layer_mask.dtype != torch.bool:
            got = layer_mask.dtype if isinstance(layer_mask, torch.Tensor) else type(layer_mask).__name__
            raise TypeError(f"{name}: expected a bool tensor (True = kept), got {got}")
        if layer_mask.dim() != 1 or layer_mask.shape[0] != rows:
            raise ValueError(
                f"{name}: expected shape ({rows},), one entry per filter, got {tuple(layer_mask.shape)}"
            )
        if layer_mask.device != layers.device:
            raise ValueError(
                f"{name}: expected a tensor on {layers.device} like the filters, got {layer_mask.device}"
            )
    return torch.cat([m.reshape(-1) for m in masks]).to(torch.uint8)


def check_finite(rows: list[torch.Tensor]) -> None:
    """Raises ValueError naming the first layer and filter with NaN/Inf (what the C ABI does too).
    One host synchronisation for the whole network; the culprit is located only on failure."""
    layer_ok = torch.stack([torch.isfinite(r).all() for r in rows])
    if bool(layer_ok.all()):
        return
    layer = int((~layer_ok).nonzero()[0])
    row = int((~torch.isfinite(rows[layer])).any(dim=1).nonzero()[0])
    raise ValueError(
        f"filters: layer {layer}, filter {row} contains NaN or Inf "
        "(scores of non-finite weights are meaningless; check for divergence)"
    )


def split_per_layer(parts: list, single: bool) -> Union[torch.Tensor, list]:
    """Per-layer outputs in the caller's shape: the tensor for one-tensor input, else the list."""
    return parts[0] if single else parts
