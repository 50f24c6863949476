"""The layers a compacted ResNet is built from (see :mod:`fastprune.compaction.resnet`).

Only standard layers (Conv2d, BatchNorm2d, Linear, MaxPool2d, pooling) plus three small index-map
modules, all TorchScript-able; every index map and constant is a buffer, so ``state_dict`` holds the whole
network and :func:`fastprune.compaction.network.build_compact` rebuilds it from a JSON-able spec:

* :class:`ChannelAdapter` prepares a map for a conv or the FC layer: ``index_select`` of the channels the
  layer reads (when it reads fewer than are present), then constant channels appended (the CONST channels
  of removed filters that a padded conv still reads; see :mod:`fastprune.pruning.channels`).
* :class:`ChannelScatter` places a map's channels at given positions of a wider map, adding per-channel
  constants (the stem's output into the residual stream; the stream back to full width without an FC).
* :class:`ResidualCombine` is the residual add of a block: main path and shortcut, each placed by an
  index map into the block's output channels, plus a per-channel bias holding the BN constants of removed
  filters (``beta - gamma * mu / sqrt(var + eps)``), then ReLU.
"""

from __future__ import annotations

import warnings
from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

# Placement modes of one input of ChannelScatter / ResidualCombine (literals in forward: TorchScript).
SAME, PAD, SCATTER = 0, 1, 2


def _long(values: Sequence[int]) -> torch.Tensor:
    return torch.tensor(list(values), dtype=torch.long)


def placement(keep: Sequence[int], pos: Sequence[int], n_in: int, width: int) -> tuple[int, bool, int]:
    """(mode, needs_select, pad_before) for placing the ``keep`` channels of an ``n_in``-channel map at
    positions ``pos`` of a ``width``-channel map: SAME (identical layout), PAD (one contiguous run in order:
    ``F.pad``) or SCATTER (``index_copy`` / ``index_add``)."""
    select = list(keep) != list(range(n_in))
    pos = list(pos)
    if pos and pos == list(range(pos[0], pos[0] + len(pos))):
        return (SAME if len(pos) == width else PAD), select, pos[0]
    return SCATTER, select, 0


class ChannelAdapter(nn.Module):
    """``x -> cat(x.index_select(1, index), const planes)``; either step is skipped when not needed."""

    def __init__(self, select: Optional[Sequence[int]], n_const: int) -> None:
        super().__init__()
        self.do_select = select is not None
        self.n_const = int(n_const)
        self.register_buffer("index", _long(select if select is not None else []))
        self.register_buffer("const", torch.zeros(self.n_const))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.do_select:
            x = x.index_select(1, self.index)
        if self.n_const > 0:
            planes = self.const.to(x.dtype).view(1, -1, 1, 1)
            x = torch.cat([x, planes.expand(x.shape[0], self.n_const, x.shape[2], x.shape[3])], 1)
        return x

    def extra_repr(self) -> str:
        picked = f"select {self.index.numel()}" if self.do_select else "all"
        return f"{picked}, +{self.n_const} const"


def _empty_output(x: torch.Tensor, geometry: list[int]) -> torch.Tensor:
    """The (N, 0, H_out, W_out) map of a conv whose filters were all removed; geometry = kernel, stride,
    padding, dilation (two ints each)."""
    k, s, p, d = geometry[0:2], geometry[2:4], geometry[4:6], geometry[6:8]
    h = (x.shape[2] + 2 * p[0] - d[0] * (k[0] - 1) - 1) // s[0] + 1
    w = (x.shape[3] + 2 * p[1] - d[1] * (k[1] - 1) - 1) // s[1] + 1
    return torch.zeros((x.shape[0], 0, h, w), dtype=x.dtype, device=x.device)


class ConvBN(nn.Module):
    """adapter -> Conv2d -> BatchNorm2d [-> ReLU]."""

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__()
        c, b = spec["conv"], spec["bn"]
        self.adapt = ChannelAdapter(spec["select"], spec["n_const"])
        with warnings.catch_warnings():  # zero-size layers (every filter removed) warn at init
            warnings.simplefilter("ignore")
            self.conv = nn.Conv2d(
                c["in"], c["out"], tuple(c["kernel"]), tuple(c["stride"]), tuple(c["padding"]),
                tuple(c["dilation"]), bias=c["bias"], padding_mode=c["padding_mode"],
            )  # fmt: skip
            self.bn = nn.BatchNorm2d(
                c["out"], eps=b["eps"], momentum=b["momentum"], affine=b["affine"],
                track_running_stats=b["track_running_stats"],
            )  # fmt: skip
        self.relu = bool(spec["relu"])
        self.empty = c["out"] == 0  # every filter removed: an (N, 0, H_out, W_out) map
        self.geometry = [int(v) for key in ("kernel", "stride", "padding", "dilation") for v in c[key]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.empty:
            return _empty_output(x, self.geometry)
        x = self.bn(self.conv(self.adapt(x)))
        if self.relu:
            x = F.relu(x, inplace=True)
        return x


class Subsample(nn.Module):
    """Option-A shortcut without its zero channels: ``x[:, :, ::s, ::s]`` (the padding is an index map
    in :class:`ResidualCombine`)."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = int(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, :: self.stride, :: self.stride]

    def extra_repr(self) -> str:
        return f"stride={self.stride}"


def _place(x: torch.Tensor, mode: int, pad_before: int, pos: torch.Tensor, width: int) -> torch.Tensor:
    if mode == 0:
        return x
    if mode == 1:
        return F.pad(x, (0, 0, 0, 0, pad_before, width - pad_before - x.shape[1]))
    out = torch.zeros((x.shape[0], width, x.shape[2], x.shape[3]), dtype=x.dtype, device=x.device)
    return out.index_copy_(1, pos, x)


class ChannelScatter(nn.Module):
    """``y[:, pos] = x[:, keep]``, other channels zero, ``+ bias`` per channel (constant channels)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__()
        self.width = int(spec["width"])
        self.mode, self.do_select, self.pad_before = placement(
            spec["keep"], spec["pos"], spec["n_in"], self.width
        )
        self.has_bias = bool(spec["has_bias"])
        self.register_buffer("keep", _long(spec["keep"]))
        self.register_buffer("pos", _long(spec["pos"]))
        self.register_buffer("bias", torch.zeros(self.width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.do_select:
            x = x.index_select(1, self.keep)
        y = _place(x, self.mode, self.pad_before, self.pos, self.width)
        if self.has_bias:
            y = y + self.bias.to(y.dtype).view(1, -1, 1, 1)
        return y

    def extra_repr(self) -> str:
        return f"{self.keep.numel()} -> {self.width}, mode={self.mode}, bias={self.has_bias}"


class ResidualCombine(nn.Module):
    """``relu(place(main) + place(shortcut) + bias)`` over the block's output channels."""

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__()
        self.width = int(spec["width"])
        m, r = spec["main"], spec["res"]
        self.main_mode, self.main_select, self.main_pad = placement(
            m["keep"], m["pos"], m["n_in"], self.width
        )
        self.res_mode, self.res_select, self.res_pad = placement(r["keep"], r["pos"], r["n_in"], self.width)
        self.has_bias = bool(spec["has_bias"])
        for key, part in (("main", m), ("res", r)):
            self.register_buffer(f"{key}_keep", _long(part["keep"]))
            self.register_buffer(f"{key}_pos", _long(part["pos"]))
        self.register_buffer("bias", torch.zeros(self.width))
        # Set by for_inference (inference.py): the shortcut tensor (the block's input, internal to
        # the network) may be overwritten by the add, which saves a copy of the residual stream per block.
        self.inplace = False

    def forward(self, main: torch.Tensor, res: torch.Tensor) -> torch.Tensor:
        if self.main_select:
            main = main.index_select(1, self.main_keep)
        if self.res_select:
            res = res.index_select(1, self.res_keep)
        if self.main_mode == 0 and self.res_mode == 0:
            y = main + res
        elif self.res_mode == 0 and self.inplace and not torch.is_grad_enabled():
            y = res.index_add_(1, self.main_pos, main)
        elif self.res_mode == 0:
            y = res.index_add(1, self.main_pos, main)
        elif self.main_mode == 0:
            y = main.index_add(1, self.res_pos, res)
        else:
            y = _place(res, self.res_mode, self.res_pad, self.res_pos, self.width)  # a fresh tensor
            y = y.index_add_(1, self.main_pos, main)
        if self.has_bias:
            bias = self.bias.to(y.dtype).view(1, -1, 1, 1)
            y = y.add_(bias) if self.inplace else y + bias
        return F.relu(y, inplace=True)

    def extra_repr(self) -> str:
        return (
            f"main {self.main_keep.numel()} (mode {self.main_mode}) + shortcut {self.res_keep.numel()} "
            f"(mode {self.res_mode}) -> {self.width}, bias={self.has_bias}"
        )


class CompactBlock(nn.Module):
    """``combine(main(x), shortcut(x))``; the shortcut is nn.Identity, :class:`Subsample` or a ConvBN."""

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__()
        self.main = nn.Sequential(*[ConvBN(unit) for unit in spec["main"]])
        sc = spec["shortcut"]
        if sc["kind"] == "identity":
            self.shortcut: nn.Module = nn.Identity()
        elif sc["kind"] == "subsample":
            self.shortcut = Subsample(sc["stride"])
        elif sc["kind"] == "projection":
            self.shortcut = ConvBN(sc["unit"])
        else:
            raise ValueError(f"compact spec: unknown shortcut kind {sc['kind']!r}")
        self.combine = ResidualCombine(spec["combine"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.combine(self.main(x), self.shortcut(x))


def pool_from_spec(spec: Optional[dict[str, Any]]) -> nn.Module:
    if spec is None:
        return nn.Identity()
    args = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.items() if k != "type"}
    if spec["type"] == "MaxPool2d":
        return nn.MaxPool2d(**args)
    if spec["type"] == "AdaptiveAvgPool2d":
        return nn.AdaptiveAvgPool2d(**args)
    if spec["type"] == "AvgPool2d":
        return nn.AvgPool2d(**args)
    raise ValueError(f"compact spec: unknown pooling {spec['type']!r}")


class ConstantInputConv2d(nn.Conv2d):
    """A Conv2d whose last ``constants.numel()`` input channels are constant planes appended to its input:
    ``conv(cat([x, c broadcast over N, H, W]))``. What graph compaction leaves where a removed channel
    carried a nonzero constant (a removed filter's BatchNorm shift) into this layer: with zero padding its
    contribution varies near the borders, so it is computed, as the ResNet path's constant planes are (and
    counted: ``count_flops`` counts such inputs as alive)."""

    constants: torch.Tensor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        planes = self.constants.to(x.dtype).view(1, -1, 1, 1).expand(x.shape[0], -1, x.shape[2], x.shape[3])
        return super().forward(torch.cat([x, planes], 1))


class ConstantInputLinear(nn.Linear):
    """A Linear whose last ``constants.numel()`` input features are constants appended to its input (a
    removed channel's constant, per feature of a flattened map): ``linear(cat([x, c]))``."""

    constants: torch.Tensor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        extra = self.constants.to(x.dtype).expand(*x.shape[:-1], -1)
        return super().forward(torch.cat([x, extra], -1))
