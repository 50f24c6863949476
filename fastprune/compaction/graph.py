"""Compaction of any CNN that Torch-Pruning's DependencyGraph traces (VGG, MobileNet, concatenations, your
own model): a deep copy physically shrunk by Torch-Pruning's coupled-channel pruning, removing exactly the
channels :func:`fastprune.pruning.graph_liveness.graph_liveness` (and so ``count_flops``) calls removed.

Torch-Pruning groups the channels that must go together (a conv's filters with its BN, the consumers'
input channels, both sides of a residual add, a concatenation's slice, a depthwise conv's channel). A
channel of a group is removed iff it is dead in every member:

* a conv / linear producing it has the filter removed (``alive_out`` False: its output is exactly zero);
* a conv / linear reading it reads a ZERO channel or a constant one. A nonzero constant ``v`` (a removed
  filter's BatchNorm shift ``beta - gamma * mu / sqrt(var + eps)``, after the activation) is appended to
  the reader's input as a constant plane with the reader's weights for it
  (:class:`~fastprune.compaction.modules.ConstantInputConv2d` / ``ConstantInputLinear``), as the ResNet
  path does: exact near zero-padded borders too, and the MACs ``count_flops`` counts (it counts such
  inputs as alive); a grouped reader (1 < groups) keeps the channel;
* a depthwise conv's channel goes with its filter; BN, activations, adds, concatenations and pooling
  follow; any other layer Torch-Pruning would shrink (LayerNorm, PReLU, a grouped conv with 1 < groups <
  channels, a bare parameter) keeps the group whole.

A layer whose every filter is removed keeps one (zero) filter: PyTorch has no empty convolution. Layers
reaching the network's output keep their channels. The result is an ordinary ``nn.Module`` (the model's
own classes, smaller), in eval mode, with ``compacted = True`` so ``count_flops`` counts it dense; its
outputs equal the masked model's (eval mode, to float32 rounding) and its MACs equal ``count_flops`` of
the masked model when each coupled group is pruned together (as fastprune's pruners do).
"""

from __future__ import annotations

import copy
from typing import Any, Optional

import torch
from torch import nn

from fastprune.compaction.modules import ConstantInputConv2d, ConstantInputLinear
from fastprune.compaction.report import CompactionReport, LayerCompaction
from fastprune.pruning.channels import ChannelLiveness
from fastprune.pruning.graph_liveness import graph_liveness, trace_graph

_LAYERS = (nn.Conv2d, nn.Linear)


def _is_depthwise(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) and module.groups > 1 and module.groups == module.in_channels


def _unsupported_grouped(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) and module.groups > 1 and not _is_depthwise(module)


class _Compactor:
    def __init__(self, model: nn.Module, example: torch.Tensor) -> None:
        self.model = model
        self.liveness: ChannelLiveness = graph_liveness(model, example)
        self.graph, _ = trace_graph(model, example)
        self.names = {module: name for name, module in model.named_modules()}
        # current index -> original index, per (module, "in" | "out"), as channels go
        self.index: dict[tuple[nn.Module, str], list[int]] = {}
        # removed constant inputs per reading layer: (value, the layer's weight column for it)
        self.constants: dict[nn.Module, list[tuple[float, torch.Tensor]]] = {}
        self.kept_one: list[str] = []

    def original(self, module: nn.Module, side: str, idx: int) -> int:
        if (module, side) not in self.index:
            size = _channels(module, side)
            self.index[(module, side)] = list(range(size))
        return self.index[(module, side)][idx]

    def removable(self, group: Any) -> list[int]:
        """Root indices of the group whose channel is dead in every member (see the module docstring)."""
        root_count = len(group[0].idxs)
        dead = [True] * root_count
        for item in group:
            dep, idxs, roots = item.dep, item.idxs, item.root_idxs
            for idx, root in zip(idxs, roots):
                if dead[root] and not self.dead(dep, idx):
                    dead[root] = False
        return [root for root in range(root_count) if dead[root]]

    def dead(self, dep: Any, idx: int) -> bool:
        module = dep.target.module
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            return True
        if not isinstance(module, _LAYERS):
            return type(module).__module__.startswith("torch_pruning")  # its index-mapping ops follow
        if _unsupported_grouped(module):
            return False
        layer = self.liveness[self.names[module]]
        if self.graph.is_out_channel_pruning_fn(dep.handler):
            return not bool(layer.alive_out[self.original(module, "out", idx)])
        if _is_depthwise(module):
            return True  # its input channel goes with its filter (the out-channel member decides)
        value = float(layer.in_state[self.original(module, "in", idx)])
        return value == value  # ZERO, or a constant appended as a plane (LIVE: NaN)

    def keep_constants(self, group: Any) -> None:
        """Record the nonzero constants the group's channels carry into the layers reading them, with
        those layers' weights for them (appended after all pruning, see :meth:`append_constants`)."""
        for item in group:
            module = item.dep.target.module
            if not isinstance(module, _LAYERS) or _is_depthwise(module):
                continue
            if not self.graph.is_in_channel_pruning_fn(item.dep.handler):
                continue
            layer = self.liveness[self.names[module]]
            self.original(module, "out", 0)  # the reader's filters kept so far, by original index
            rows = torch.as_tensor(self.index[(module, "out")], device=module.weight.device)
            for idx in item.idxs:
                value = float(layer.in_state[self.original(module, "in", idx)])
                if value != 0:  # the column in the reader's original filter order (it may lose filters later)
                    column = module.weight.detach()[:, idx]
                    full = column.new_zeros((layer.out_channels, *column.shape[1:])).index_copy_(
                        0, rows, column
                    )
                    self.constants.setdefault(module, []).append((value, full))

    def append_constants(self) -> None:
        """Turn every layer that read removed constant channels into its Constant-input form."""
        for module, entries in self.constants.items():
            values = torch.tensor(
                [v for v, _ in entries], dtype=module.weight.dtype, device=module.weight.device
            )
            kept = torch.as_tensor(self.index.get((module, "out"), range(module.weight.shape[0])))
            columns = torch.stack([c for _, c in entries], 1)[
                kept.to(module.weight.device)
            ]  # (O, n[, kh, kw])
            module.weight = nn.Parameter(torch.cat([module.weight.detach(), columns], 1))
            if isinstance(module, nn.Conv2d):
                module.__class__ = ConstantInputConv2d
                module.in_channels += len(entries)
            else:
                module.__class__ = ConstantInputLinear
                module.in_features += len(entries)
            module.register_buffer("constants", values)

    def prune(self, group: Any, roots: list[int]) -> None:
        root = group[0].dep
        pruning = self.graph.get_pruning_group(root.target.module, root.handler, roots)
        self.keep_constants(pruning)
        for item in pruning:
            module = item.dep.target.module
            if not isinstance(module, _LAYERS):
                continue
            side = "out" if self.graph.is_out_channel_pruning_fn(item.dep.handler) else "in"
            self.original(module, side, 0)  # make sure the map exists
            gone = set(item.idxs)
            current = self.index[(module, side)]
            self.index[(module, side)] = [c for i, c in enumerate(current) if i not in gone]
            if _is_depthwise(module):  # one map for both sides of a depthwise conv
                other = "in" if side == "out" else "out"
                self.original(module, other, 0)
                self.index[(module, other)] = list(self.index[(module, side)])
        pruning.prune()

    def run(self) -> None:
        for group in self.graph.get_all_groups(root_module_types=_LAYERS):
            roots = self.removable(group)
            if not roots:
                continue
            if len(roots) == len(group[0].idxs):  # no empty layers: keep one (dead) channel
                self.kept_one.append(self.names.get(group[0].dep.target.module, "?"))
                roots = roots[1:]
                if not roots:
                    continue
            self.prune(group, roots)
        self.append_constants()

    def report(self) -> CompactionReport:
        report = CompactionReport()
        modules = dict(self.model.named_modules())
        for layer in self.liveness:
            module = modules[layer.name]
            weight = module.weight.detach()
            kernels = weight.flatten(2).ne(0).any(-1) if weight.dim() > 2 else weight.ne(0)
            report.layers.append(
                LayerCompaction(
                    layer.name, layer.kind, layer.out_channels, weight.shape[0], layer.in_channels,
                    _channels(module, "in"), len(self.constants.get(module, [])), int((~kernels).sum()),
                )
            )  # fmt: skip
        return report


def _channels(module: nn.Module, side: str) -> int:
    if isinstance(module, nn.Conv2d):
        return module.out_channels if side == "out" else module.in_channels
    if isinstance(module, nn.Linear):
        return module.out_features if side == "out" else module.in_features
    raise TypeError(type(module).__name__)


def compact_graph(model: nn.Module, shape: tuple[int, int, int]) -> tuple[nn.Module, CompactionReport]:
    """The compact copy of `model` (see the module docstring) for inputs of shape (C, H, W), and what went.
    `model` is not modified."""
    small = copy.deepcopy(model).eval()
    param = next(small.parameters(), None)
    example = torch.zeros(
        (1, *shape),
        device=param.device if param is not None else "cpu",
        dtype=param.dtype if param is not None else torch.float32,
    )
    compactor = _Compactor(small, example)
    with torch.no_grad():
        compactor.run()
    small.compacted = True
    report = compactor.report()
    report.kept_one = compactor.kept_one
    return small.eval(), report


def default_shape(model: nn.Module, input_shape: Optional[tuple]) -> tuple[int, int, int]:
    """(C, H, W) from `input_shape` or the model's ``family``."""
    from fastprune.pruning.flops import resolve_input_shape

    try:
        return resolve_input_shape(model, input_shape)
    except ValueError as error:
        raise ValueError(
            f"compact: input_shape is required to trace {type(model).__name__} ({error})"
        ) from error
