"""Compaction of a pruned (masked) ResNet into a genuinely smaller dense network with the same outputs.

    small = fastprune.compact(model)                  # model: zeroed filters/kernels, eval-mode BN
    small, report = fastprune.compact(model, return_report=True); print(report)
    fastprune.save_compact(small, "small.pt"); small = fastprune.load_compact("small.pt")

What goes is exactly what :func:`fastprune.pruning.channels.channel_liveness` (and so ``count_flops``)
calls removed: every conv keeps its ``alive_out`` filters and reads its ``alive_in`` input channels, the FC
layer its ``alive_in`` features; BN keeps the features of the kept filters. So ``count_compact_flops`` of
the compact network (dense) equals ``count_flops`` of the masked one, MACs and parameters
(``count_flops`` itself reads the ResNet layout only, not a :class:`CompactResNet`).

Each map between layers holds only some of its channels ("physical" channels, in index order):

* inside a block, the filters the previous conv kept. A removed filter leaves BN's constant
  ``c = beta - gamma * mu / sqrt(var + eps)`` (ReLU'd): when the next conv still reads that CONST channel
  (``alive_in``; it must, since zero padding makes a constant input's contribution position-dependent),
  :class:`~fastprune.compaction.modules.ChannelAdapter` appends it as a constant plane (a buffer,
  no parameters, as count_flops counts it: input MACs yes, BN parameters no);
* the residual stream: every channel that is not ZERO for certain (LIVE or CONST); a channel is dropped
  only when it is zero in every contributor (after the ReLU). The residual add
  (:class:`~fastprune.compaction.modules.ResidualCombine`) places the main path's kept filters and
  the shortcut's channels into the block's output channels by index maps (the option-A shortcut is a
  subsample whose zero padding is just such an index map; projection shortcuts are pruned convs like
  any other) and adds, as a per-channel bias before the final ReLU, the BN constants of every removed
  filter of the main path or the projection; a layer that reads fewer stream channels than are present
  gets an ``index_select``.

Kernel-level (O, I) zeros: an input channel dead for every kept filter is dropped; the zero kernels left
inside the kept block are reported (:class:`CompactionReport`) as what masked convolution could skip.
The original model is never modified. The compact network is a :class:`CompactResNet` built from a
JSON-able spec (widths, index maps) plus a ``state_dict`` (constants and index maps are buffers):
:func:`save_compact` / :func:`load_compact` store exactly those two; TorchScript scripting works.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import torch
from torch import nn

from fastprune.compaction.network import FORMAT, CompactResNet, build_compact
from fastprune.compaction.report import CompactionReport, LayerCompaction
from fastprune.models._blocks import ShortcutA
from fastprune.pruning.channels import UnsupportedModelError, _relu, channel_liveness
from fastprune.pruning.flops import family_input_shape

__all__ = ["compact_resnet"]


class _Map:
    """A feature map of the compact network: ``phys`` = original channel indices present, in order;
    ``state`` = channel states of the full-width map (NaN LIVE, else the constant)."""

    def __init__(self, phys: Sequence[int], state: torch.Tensor) -> None:
        self.phys = [int(c) for c in phys]
        self.where = {c: p for p, c in enumerate(self.phys)}
        self.state = state


def _same_state(a: torch.Tensor, b: torch.Tensor) -> bool:
    return (
        a.shape == b.shape
        and bool(torch.equal(torch.isnan(a), torch.isnan(b)))
        and bool(torch.equal(torch.nan_to_num(a), torch.nan_to_num(b)))
    )


class _Builder:
    def __init__(self, model: nn.Module) -> None:
        self.live = channel_liveness(model)
        self.modules = dict(model.named_modules())
        self.tensors: dict[str, torch.Tensor] = {}
        self.report = CompactionReport()

    def unit(self, key: str, name: str, inp: _Map, relu: bool) -> tuple[dict[str, Any], _Map]:
        layer, conv = self.live[name], self.modules[name]
        bn = self.modules[layer.bn]
        if isinstance(conv.padding, str):
            raise UnsupportedModelError(f"{name}: string padding {conv.padding!r} unsupported")
        if not _same_state(inp.state, layer.in_state):
            raise UnsupportedModelError(
                f"{name}: forward order differs from the ResNet layout compact expects"
            )
        alive_in, state = layer.alive_in.tolist(), inp.state.tolist()
        sel = [p for p, c in enumerate(inp.phys) if alive_in[c]]
        missing = [c for c in range(layer.in_channels) if alive_in[c] and c not in inp.where]
        if any(math.isnan(state[c]) for c in missing):  # a LIVE channel must be present
            raise RuntimeError(f"compact: internal error: {name} reads absent live channels {missing}")
        order = [inp.phys[p] for p in sel] + missing
        if not order and bool(layer.alive_out.any()):
            raise UnsupportedModelError(f"{name}: reads no live input yet keeps filters (a nonzero bias)")
        select = None if sel == list(range(len(inp.phys))) else sel
        kept = torch.nonzero(layer.alive_out).flatten()
        weight = conv.weight.detach()[kept][:, order].clone()
        t = self.tensors
        t[f"{key}.adapt.index"] = torch.tensor(select or [], dtype=torch.long)
        t[f"{key}.adapt.const"] = inp.state[missing].clone()
        t[f"{key}.conv.weight"] = weight
        if conv.bias is not None:
            t[f"{key}.conv.bias"] = conv.bias.detach()[kept].clone()
        for attr in ("weight", "bias", "running_mean", "running_var"):
            value = getattr(bn, attr)
            if value is not None:
                t[f"{key}.bn.{attr}"] = value.detach()[kept].clone()
        if bn.num_batches_tracked is not None:
            t[f"{key}.bn.num_batches_tracked"] = bn.num_batches_tracked.detach().clone()
        self.report.layers.append(
            LayerCompaction(
                name, "conv", layer.out_channels, len(kept), layer.in_channels, len(order), len(missing),
                int((weight.flatten(2) == 0).all(-1).sum()) if weight.numel() else 0,
            )
        )  # fmt: skip
        spec = {
            "name": name,
            "select": select,
            "n_const": len(missing),
            "conv": {
                "in": len(order), "out": len(kept), "kernel": list(conv.kernel_size),
                "stride": list(conv.stride), "padding": list(conv.padding), "dilation": list(conv.dilation),
                "bias": conv.bias is not None, "padding_mode": conv.padding_mode,
            },
            "bn": {
                "eps": bn.eps, "momentum": bn.momentum, "affine": bn.affine,
                "track_running_stats": bn.track_running_stats,
            },
            "relu": relu,
        }  # fmt: skip
        state = _relu(layer.out_state) if relu else layer.out_state
        return spec, _Map(kept.tolist(), state)

    def place(self, part: _Map, out: _Map) -> tuple[dict[str, Any], torch.Tensor]:
        """Index map of ``part`` into ``out``, and the constants of the channels ``part`` lacks."""
        keep = [p for p, c in enumerate(part.phys) if c in out.where]
        absent = [j for j, c in enumerate(out.phys) if c not in part.where]
        const = torch.zeros(len(out.phys), dtype=part.state.dtype)
        const[absent] = part.state[[out.phys[j] for j in absent]]
        if bool(torch.isnan(const).any()):
            raise RuntimeError("compact: internal error: a live channel is absent from a residual input")
        return {"keep": keep, "pos": [out.where[part.phys[p]] for p in keep], "n_in": len(part.phys)}, const

    def stream(self, state: torch.Tensor) -> _Map:
        return _Map(torch.nonzero(state != 0).flatten().tolist(), state)  # NaN != 0: LIVE stays

    def block(self, index: int, name: str, block: nn.Module, inp: _Map) -> tuple[dict[str, Any], _Map]:
        key = f"blocks.{index}"
        n = 3 if hasattr(block, "conv3") else 2
        units, m = [], inp
        for k in range(n):
            spec, m = self.unit(f"{key}.main.{k}", f"{name}.conv{k + 1}", m, relu=k < n - 1)
            units.append(spec)
        ds = getattr(block, "downsample", None)
        if ds is None or isinstance(ds, nn.Identity):
            shortcut, res = {"kind": "identity"}, inp
        elif isinstance(ds, ShortcutA):
            state = torch.zeros(ds.out_channels, dtype=inp.state.dtype)
            state[ds.pad_before : ds.pad_before + ds.in_channels] = inp.state
            shortcut = {"kind": "subsample", "stride": int(ds.stride)}
            res = _Map([ds.pad_before + c for c in inp.phys], state)
        else:
            conv_key = next(k for k, _ in ds.named_children())
            spec, res = self.unit(f"{key}.shortcut", f"{name}.downsample.{conv_key}", inp, relu=False)
            shortcut = {"kind": "projection", "unit": spec}
        out = self.stream(_relu(m.state + res.state))
        main_place, main_const = self.place(m, out)
        res_place, res_const = self.place(res, out)
        bias = main_const + res_const
        self.tensors[f"{key}.combine.bias"] = bias
        for part, placed in (("main", main_place), ("res", res_place)):
            self.tensors[f"{key}.combine.{part}_keep"] = torch.tensor(placed["keep"], dtype=torch.long)
            self.tensors[f"{key}.combine.{part}_pos"] = torch.tensor(placed["pos"], dtype=torch.long)
        has_bias = bool((bias != 0).any())
        combine = {"width": len(out.phys), "main": main_place, "res": res_place, "has_bias": has_bias}
        self.report.streams.append((name, out.state.numel(), len(out.phys), int((bias != 0).sum())))
        return {"name": name, "main": units, "shortcut": shortcut, "combine": combine}, out

    def scatter(self, key: str, part: _Map, out: _Map) -> dict[str, Any]:
        placed, const = self.place(part, out)
        self.tensors[f"{key}.keep"] = torch.tensor(placed["keep"], dtype=torch.long)
        self.tensors[f"{key}.pos"] = torch.tensor(placed["pos"], dtype=torch.long)
        self.tensors[f"{key}.bias"] = const
        return {**placed, "width": len(out.phys), "has_bias": bool((const != 0).any())}


def _pool_spec(module: Optional[nn.Module], name: str) -> Optional[dict[str, Any]]:
    if module is None or isinstance(module, nn.Identity):
        return None
    if isinstance(module, nn.MaxPool2d) and not module.return_indices:
        return {"type": "MaxPool2d", "kernel_size": module.kernel_size, "stride": module.stride,
                "padding": module.padding, "dilation": module.dilation,
                "ceil_mode": module.ceil_mode}  # fmt: skip
    if isinstance(module, nn.AdaptiveAvgPool2d):
        size = module.output_size
        return {
            "type": "AdaptiveAvgPool2d",
            "output_size": list(size) if isinstance(size, tuple) else [size] * 2,
        }
    if isinstance(module, nn.AvgPool2d) and module.divisor_override is None:
        return {"type": "AvgPool2d", "kernel_size": module.kernel_size, "stride": module.stride,
                "padding": module.padding, "ceil_mode": module.ceil_mode,
                "count_include_pad": module.count_include_pad}  # fmt: skip
    raise UnsupportedModelError(f"{name}: {type(module).__name__} unsupported")


def _build_spec(model: nn.Module) -> tuple[dict[str, Any], dict[str, torch.Tensor], CompactionReport]:
    b = _Builder(model)
    dtype = b.live["conv1"].in_state.dtype
    stem, m = b.unit("stem", "conv1", _Map(range(model.conv1.in_channels), b.live["conv1"].in_state), True)
    spec: dict[str, Any] = {
        "format": FORMAT, "arch": str(getattr(model, "arch", type(model).__name__)),
        "family": str(getattr(model, "family", "")),
        "small_input": bool(getattr(model, "small_input", False)),
        "dtype": str(dtype).replace("torch.", ""), "in_channels": model.conv1.in_channels, "stem": stem,
        "maxpool": _pool_spec(getattr(model, "maxpool", None), "maxpool"),
    }  # fmt: skip
    stream = b.stream(m.state)
    spec["stem_scatter"] = b.scatter("stem_scatter", m, stream)
    blocks, k = [], 1
    while hasattr(model, f"layer{k}"):
        for key, block in getattr(model, f"layer{k}").named_children():
            block_spec, stream = b.block(len(blocks), f"layer{k}.{key}", block, stream)
            blocks.append(block_spec)
        k += 1
    spec["blocks"] = blocks
    if not _same_state(stream.state, b.live.output_state):
        raise UnsupportedModelError("compact: the residual stream disagrees with the channel analysis")
    spec["avgpool"] = _pool_spec(getattr(model, "avgpool", None), "avgpool")
    fc = getattr(model, "fc", None)
    spec["fc"] = spec["out_scatter"] = None
    if isinstance(fc, nn.Linear):
        layer = b.live["fc"]
        sel = [p for p, c in enumerate(stream.phys) if layer.alive_in[c]]
        order = [stream.phys[p] for p in sel]
        weight = fc.weight.detach()[:, order].clone()
        select = None if sel == list(range(len(stream.phys))) else sel
        b.tensors["fc_adapt.index"] = torch.tensor(select or [], dtype=torch.long)
        b.tensors["fc_adapt.const"] = torch.zeros(0, dtype=dtype)
        b.tensors["fc.weight"] = weight
        if fc.bias is not None:
            b.tensors["fc.bias"] = fc.bias.detach().clone()
        spec["fc"] = {"name": "fc", "select": select, "in": len(order), "out": fc.out_features,
                      "bias": fc.bias is not None}  # fmt: skip
        b.report.layers.append(
            LayerCompaction(
                "fc",
                "linear",
                fc.out_features,
                fc.out_features,
                fc.in_features,
                len(order),
                0,
                int((weight == 0).all(0).sum()),
            )  # fmt: skip
        )
    else:
        b.tensors["fc_adapt.index"] = torch.zeros(0, dtype=torch.long)
        b.tensors["fc_adapt.const"] = torch.zeros(0, dtype=dtype)
        full = _Map(range(stream.state.numel()), stream.state)
        spec["out_scatter"] = b.scatter("out_scatter", stream, full)
    return spec, b.tensors, b.report


def compact_resnet(model: nn.Module) -> tuple[CompactResNet, CompactionReport]:
    """The :class:`CompactResNet` of a masked ResNet (see the module docstring), in eval mode on the
    model's device, and the report (layers and streams; the caller adds MACs and parameters).
    Raises UnsupportedModelError for anything but the ResNet layout."""
    param = next(model.parameters(), None)
    with torch.no_grad():
        spec, tensors, report = _build_spec(model)
        small = build_compact(spec, None).to(getattr(torch, spec["dtype"]))
        small.load_state_dict(tensors, strict=True)
    report.input_shape = family_input_shape(
        spec.get("family"), bool(spec.get("small_input")), spec["in_channels"]
    )
    return small.eval().to(param.device if param is not None else "cpu"), report
