"""Structural channel liveness of a (masked) ResNet: which conv filters are removed, which input channels
are zero for certain. Shared by the FLOPs counter and by model compaction.

Supported: the ResNets of :mod:`fastprune.models` and any module tree with the same structure and
attribute names (torchvision's resnet18..152 included): ``conv1, bn1, [relu], [maxpool], layer1..layerN,
[avgpool], [fc]`` at the top; blocks with ``conv1, bn1, conv2, bn2[, conv3, bn3], [relu], [downsample]``
where ``downsample`` is ``None``, ``Sequential(Conv2d, BatchNorm2d)`` or :class:`ShortcutA`. The analysis
reads weights only (no forward pass) and assumes eval-mode BatchNorm (running statistics).

Channel state, one float per channel in the model's dtype: ``NaN`` = varies with the input (LIVE);
otherwise the exact value the channel holds at every position for every input: ``0`` = ZERO, anything
else = CONST (a known nonzero constant). Rules, for a conv ``W`` of shape (O, I, kh, kw) reading a map
of state ``s`` (length I):

* filter ``o`` is removed iff every nonzero kernel ``W[o, i]`` reads a ZERO channel (``s[i] == 0``) and
  its bias is absent or zero; its output is then exactly 0 everywhere (``alive_out[o] = False``), the
  output of a kept filter is LIVE;
* after BN (eval): ``y = (x - mu) * gamma / sqrt(var + eps) + beta``; a known input ``x`` gives the known
  ``y`` (computed by ``F.batch_norm`` itself, in the model's dtype, so ``ZERO`` means bitwise 0 as in the
  real network), e.g. a removed filter gives ``beta - gamma * mu / sqrt(var + eps)``, ZERO iff that is
  exactly 0; a LIVE input stays LIVE unless ``gamma == 0``, which makes it the constant ``beta``. Without
  running statistics a constant input gives ``beta``;
* ReLU maps ``c`` to ``max(c, 0)`` (ZERO stays ZERO, CONST ``c <= 0`` becomes ZERO), LIVE stays LIVE;
  max/average pooling keeps every state (all constants here are uniform over space);
* residual add: states add (LIVE + anything = LIVE), so a channel is ZERO iff it is ZERO in every
  contributor, and the stream stays full width otherwise; option-A shortcut: subsampled identity, the
  padded channels are ZERO; projection shortcut: conv + BN like any conv;
* input channel ``i`` costs MACs (``alive_in[i]``) iff ``s[i]`` is not ZERO and some kept filter has a
  nonzero kernel on it. CONST channels count as alive inputs (they cannot be dropped before a conv with
  zero padding; this analysis does not fold them into biases of padding-free consumers either).
* FC layer: input feature ``j`` is alive iff its pooled channel is not ZERO and column ``W[:, j]`` is
  nonzero; its outputs (the logits) are all alive.

Filters whose output is never read (e.g. every consumer kernel on them is zero) are not marked removed:
the rules propagate forward only. Anything else (groups != 1, an unknown child module, a non-ReLU
activation, mismatched widths) raises :class:`UnsupportedModelError` naming the module and the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional

import torch
import torch.nn.functional as F
from torch import nn

from fastprune.models._blocks import ShortcutA

ZERO, CONST, LIVE = 0, 1, 2  # codes returned by LayerLiveness.in_kinds / out_kinds

_TOP_CHILDREN = {"conv1", "bn1", "relu", "maxpool", "avgpool", "fc"}
_BLOCK_CHILDREN = {"conv1", "bn1", "conv2", "bn2", "conv3", "bn3", "relu", "downsample"}


class UnsupportedModelError(ValueError):
    """The model (or one of its modules) is outside what the channel analysis understands."""


def state_kinds(state: torch.Tensor) -> torch.Tensor:
    """int8 codes of a state vector: ZERO (0) where ``== 0``, LIVE (2) where NaN, else CONST (1)."""
    kinds = torch.full(state.shape, CONST, dtype=torch.int8)
    kinds[state == 0] = ZERO
    kinds[torch.isnan(state)] = LIVE
    return kinds


@dataclass
class LayerLiveness:
    """Liveness of one conv (or the FC layer, ``kind == "linear"``).

    ``alive_in`` (bool, [in_channels]) and ``alive_out`` (bool, [out_channels]); ``in_state`` is the
    state of the map the layer reads; ``out_state`` that of its output after the following BN (before
    any ReLU); for the FC layer every output is LIVE. ``bn`` names the BN that follows a conv.
    """

    name: str
    kind: str
    in_channels: int
    out_channels: int
    alive_in: torch.Tensor
    alive_out: torch.Tensor
    in_state: torch.Tensor
    out_state: torch.Tensor
    bn: Optional[str] = None
    groups: int = 1  # a conv's groups: filter o reads the channels of group o // (out / groups)

    def alive_pairs(self) -> int:
        """Sum over groups of alive filters x alive input channels: the (filter, channel) kernels a
        compacted layer computes (alive_out * alive_in without groups)."""
        g = self.groups
        outs = self.alive_out.view(g, -1).sum(1)
        ins = self.alive_in.view(g, -1).sum(1)
        return int((outs * ins).sum())

    @property
    def removed_out(self) -> torch.Tensor:
        """bool [out_channels]: filters whose output is exactly zero (before BN)."""
        return ~self.alive_out

    @property
    def zero_in(self) -> torch.Tensor:
        """bool [in_channels]: input channels that are zero for certain."""
        return self.in_state == 0

    @property
    def in_kinds(self) -> torch.Tensor:
        return state_kinds(self.in_state)

    @property
    def out_kinds(self) -> torch.Tensor:
        return state_kinds(self.out_state)

    @property
    def n_alive_in(self) -> int:
        return int(self.alive_in.sum())

    @property
    def n_alive_out(self) -> int:
        return int(self.alive_out.sum())


@dataclass
class ChannelLiveness:
    """Per-layer liveness in forward order, keyed by module name (``model.named_modules()`` names)."""

    layers: dict[str, LayerLiveness]
    output_state: torch.Tensor  # state of the map the (optional) FC layer reads, after pooling

    def __getitem__(self, name: str) -> LayerLiveness:
        return self.layers[name]

    def __iter__(self) -> Iterator[LayerLiveness]:
        return iter(self.layers.values())

    def __len__(self) -> int:
        return len(self.layers)

    @property
    def convs(self) -> list[LayerLiveness]:
        return [layer for layer in self.layers.values() if layer.kind == "conv"]


def kernel_liveness(
    kernel_nonzero: torch.Tensor, bias: Optional[torch.Tensor], state: torch.Tensor, groups: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """(alive_in [C], alive_out [O]) of a conv (or linear: 1x1 kernels) with ``kernel_nonzero`` (O, C/g)
    reading channel states ``state`` [C]: filter o (group o // (O/g)) is alive iff its bias is nonzero or a
    nonzero kernel reads a channel that is not ZERO; channel c is alive iff it is not ZERO and a kept
    filter of its group has a nonzero kernel on it."""
    out_channels, per_group = kernel_nonzero.shape
    zero_in = (state == 0).view(groups, 1, per_group)
    nonzero = kernel_nonzero.view(groups, out_channels // groups, per_group)
    alive_out = (nonzero & ~zero_in).any(2).reshape(out_channels)
    if bias is not None:
        alive_out |= bias != 0
    used = (nonzero & alive_out.view(groups, -1, 1)).any(1)  # (groups, C/g)
    alive_in = (~zero_in.view(groups, per_group) & used).reshape(-1)
    return alive_in, alive_out


def batchnorm_state(bn: nn.Module, state: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Channel states after an eval-mode BatchNorm (see the module docstring), in `dtype`."""
    live = torch.isnan(state)
    gamma = bn.weight.detach().cpu() if bn.weight is not None else None
    beta = bn.bias.detach().cpu() if bn.bias is not None else torch.zeros(state.numel())
    if bn.running_mean is not None and bn.running_var is not None:
        x = torch.where(live, 0.0, state).to(bn.running_mean.dtype).view(1, -1, 1, 1)
        out = F.batch_norm(
            x,
            bn.running_mean.detach().cpu(),
            bn.running_var.detach().cpu(),
            gamma,
            beta,
            False,
            0.0,
            bn.eps,
        )
        out = out.view(-1).to(dtype)
    else:  # batch statistics of a constant channel: x - mean = 0
        out = beta.to(dtype).clone()
    out[live] = float("nan")
    if gamma is not None:
        flat = live & (gamma == 0)
        out[flat] = beta.to(dtype)[flat]
    return out


def _relu(state: torch.Tensor) -> torch.Tensor:
    return torch.where(torch.isnan(state), state, state.clamp(min=0))


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


class _Analyzer:
    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype
        self.layers: dict[str, LayerLiveness] = {}

    def conv(self, name: str, conv: nn.Module, state: torch.Tensor) -> tuple[LayerLiveness, torch.Tensor]:
        if not isinstance(conv, nn.Conv2d):
            raise UnsupportedModelError(f"{name}: expected nn.Conv2d, got {type(conv).__name__}")
        if conv.groups != 1:
            raise UnsupportedModelError(f"{name}: grouped/depthwise conv (groups={conv.groups}) unsupported")
        if conv.in_channels != state.numel():
            raise UnsupportedModelError(
                f"{name}: reads {state.numel()} channels but has in_channels={conv.in_channels}"
            )
        weight = conv.weight.detach()
        if weight.shape[2:].numel() == 1:
            kernel_nonzero = weight.reshape(weight.shape[:2]).ne(0).cpu()  # (O, I)
        else:
            kernel_nonzero = weight.ne(0).flatten(2).any(-1).cpu()
        bias = conv.bias.detach().cpu() if conv.bias is not None else None
        alive_in, alive_out = kernel_liveness(kernel_nonzero, bias, state)
        raw = torch.where(alive_out, float("nan"), 0.0).to(self.dtype)
        layer = LayerLiveness(
            name, "conv", conv.in_channels, conv.out_channels, alive_in, alive_out, state, raw
        )
        self.layers[name] = layer
        return layer, raw

    def bn(self, name: str, bn: nn.Module, state: torch.Tensor) -> torch.Tensor:
        if not isinstance(bn, nn.BatchNorm2d):
            raise UnsupportedModelError(f"{name}: expected nn.BatchNorm2d, got {type(bn).__name__}")
        if bn.num_features != state.numel():
            raise UnsupportedModelError(
                f"{name}: {bn.num_features} features for a {state.numel()}-channel map"
            )
        return batchnorm_state(bn, state, self.dtype)

    def relu_of(self, module: nn.Module, name: str, state: torch.Tensor) -> torch.Tensor:
        relu = getattr(module, "relu", None)
        if relu is not None and not isinstance(relu, nn.ReLU):
            raise UnsupportedModelError(
                f"{_join(name, 'relu')}: activation {type(relu).__name__} unsupported"
            )
        return _relu(state)

    def shortcut(self, name: str, module: Optional[nn.Module], state: torch.Tensor) -> torch.Tensor:
        if module is None or isinstance(module, nn.Identity):
            return state
        if isinstance(module, ShortcutA):
            if module.in_channels != state.numel():
                raise UnsupportedModelError(
                    f"{name}: ShortcutA for {module.in_channels} channels got {state.numel()}"
                )
            out = torch.zeros(module.out_channels, dtype=self.dtype)
            out[module.pad_before : module.pad_before + module.in_channels] = state
            return out
        parts = list(module.children()) if isinstance(module, nn.Sequential) else []
        if len(parts) != 2 or not isinstance(parts[0], nn.Conv2d) or not isinstance(parts[1], nn.BatchNorm2d):
            raise UnsupportedModelError(
                f"{name}: unsupported shortcut {type(module).__name__}; expected None, ShortcutA or "
                "Sequential(Conv2d, BatchNorm2d)"
            )
        keys = [key for key, _ in module.named_children()]
        layer, raw = self.conv(_join(name, keys[0]), parts[0], state)
        layer.bn = _join(name, keys[1])
        layer.out_state = self.bn(layer.bn, parts[1], raw)
        return layer.out_state

    def block(self, name: str, block: nn.Module, state: torch.Tensor) -> torch.Tensor:
        children = {key for key, _ in block.named_children()}
        required = {"conv1", "bn1", "conv2", "bn2"}
        unknown = children - _BLOCK_CHILDREN
        if not required <= children or unknown or (("conv3" in children) != ("bn3" in children)):
            detail = f"unknown children {sorted(unknown)}" if unknown else f"children {sorted(children)}"
            raise UnsupportedModelError(
                f"{name}: unsupported block type {type(block).__name__} ({detail}); expected a BasicBlock "
                "(conv1, bn1, conv2, bn2) or Bottleneck (+ conv3, bn3) with optional relu, downsample"
            )
        stages = 3 if "conv3" in children else 2
        out = state
        for k in range(1, stages + 1):
            layer, raw = self.conv(_join(name, f"conv{k}"), getattr(block, f"conv{k}"), out)
            layer.bn = _join(name, f"bn{k}")
            out = layer.out_state = self.bn(layer.bn, getattr(block, f"bn{k}"), raw)
            if k < stages:
                out = self.relu_of(block, name, out)
        residual = self.shortcut(_join(name, "downsample"), getattr(block, "downsample", None), state)
        if residual.numel() != out.numel():
            raise UnsupportedModelError(
                f"{name}: residual add of {out.numel()} and {residual.numel()} channels (missing downsample?)"
            )
        return self.relu_of(block, name, out + residual)


def _stage_names(model: nn.Module) -> list[str]:
    names, k = [], 1
    while hasattr(model, f"layer{k}"):
        names.append(f"layer{k}")
        k += 1
    return names


def channel_liveness(model: nn.Module) -> ChannelLiveness:
    """Channel liveness of every conv and of the FC layer of a ResNet, from its weights (eval-mode BN).

    Returns a :class:`ChannelLiveness` whose layers (forward order, keyed by module name) carry
    ``alive_in``/``alive_out`` bool masks and channel states; see the module docstring for the rules.
    Raises :class:`UnsupportedModelError` (a ``ValueError``) for modules or topologies it cannot prove
    anything about, naming the module and the reason.
    """
    if not isinstance(model, nn.Module):
        raise UnsupportedModelError(f"expected an nn.Module, got {type(model).__name__}")
    stages = _stage_names(model)
    children = {key for key, _ in model.named_children()}
    unknown = children - _TOP_CHILDREN - set(stages)
    kind = type(model).__name__
    if not stages or not {"conv1", "bn1"} <= children:
        raise UnsupportedModelError(
            f"{kind}: not a supported ResNet (needs conv1, bn1, layer1.. with ResNet blocks); children: "
            f"{sorted(children)}"
        )
    if unknown:
        raise UnsupportedModelError(f"{kind}: unsupported top-level modules {sorted(unknown)}")
    dtype = model.conv1.weight.dtype if isinstance(model.conv1, nn.Conv2d) else torch.float32
    if not dtype.is_floating_point:
        raise UnsupportedModelError(f"conv1: weights of dtype {dtype} unsupported")
    analyzer = _Analyzer(dtype)
    with torch.no_grad():
        in_ch = getattr(model.conv1, "in_channels", 0)
        layer, raw = analyzer.conv("conv1", model.conv1, torch.full((in_ch,), float("nan"), dtype=dtype))
        layer.bn = "bn1"
        layer.out_state = analyzer.bn("bn1", model.bn1, raw)
        state = analyzer.relu_of(model, "", layer.out_state)
        pool = getattr(model, "maxpool", None)
        if pool is not None and not isinstance(pool, (nn.MaxPool2d, nn.Identity)):
            raise UnsupportedModelError(f"maxpool: {type(pool).__name__} unsupported (MaxPool2d or Identity)")
        for stage in stages:
            blocks = getattr(model, stage)
            if not isinstance(blocks, nn.Sequential):
                raise UnsupportedModelError(
                    f"{stage}: expected nn.Sequential of blocks, got {type(blocks).__name__}"
                )
            for key, block in blocks.named_children():
                state = analyzer.block(f"{stage}.{key}", block, state)
        avgpool = getattr(model, "avgpool", None)
        if avgpool is not None and not isinstance(avgpool, (nn.AdaptiveAvgPool2d, nn.AvgPool2d, nn.Identity)):
            raise UnsupportedModelError(f"avgpool: {type(avgpool).__name__} unsupported")
        fc = getattr(model, "fc", None)
        if isinstance(fc, nn.Linear):
            if fc.in_features != state.numel():
                raise UnsupportedModelError(f"fc: in_features={fc.in_features} for {state.numel()} channels")
            alive_in = (state != 0) & (fc.weight.detach() != 0).any(0).cpu()
            alive_out = torch.ones(fc.out_features, dtype=torch.bool)
            live = torch.full((fc.out_features,), float("nan"), dtype=dtype)
            analyzer.layers["fc"] = LayerLiveness(
                "fc", "linear", fc.in_features, fc.out_features, alive_in, alive_out, state, live
            )
        elif fc is not None and not isinstance(fc, nn.Identity):
            raise UnsupportedModelError(f"fc: {type(fc).__name__} unsupported (Linear or Identity)")
    return ChannelLiveness(analyzer.layers, state)
