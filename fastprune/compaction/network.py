"""The compact network itself: :class:`CompactResNet`, built from a JSON-able spec plus a ``state_dict``
(:func:`build_compact`), saved and loaded as exactly those two (:func:`save_compact`, :func:`load_compact`:
tensors and strings only, no pickled classes)."""

from __future__ import annotations

import json
import os
from typing import Any, Optional, Union

import torch
from torch import nn

from fastprune.compaction.inference import for_inference
from fastprune.compaction.modules import (
    ChannelAdapter,
    ChannelScatter,
    CompactBlock,
    ConstantInputConv2d,
    ConstantInputLinear,
    ConvBN,
    pool_from_spec,
)
from fastprune.serialization import load_torch_file, replace_atomically

FORMAT = "fastprune-compact/1"


class CompactResNet(nn.Module):
    """A compacted ResNet: stem, blocks, pooling, FC; built from a spec by :func:`build_compact`.

    ``spec_json`` holds the JSON spec (widths, index maps, original layer names); ``arch``/``family``
    name the network it came from.
    """

    compacted = True  # every channel in it is alive: count_flops counts it dense

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__()
        self.spec_json = json.dumps(spec, sort_keys=True)
        self.arch = str(spec.get("arch", ""))
        self.family = str(spec.get("family", ""))
        self.small_input = bool(spec.get("small_input", False))
        self.stem = ConvBN(spec["stem"])
        self.maxpool = pool_from_spec(spec["maxpool"])
        self.stem_scatter = ChannelScatter(spec["stem_scatter"])
        self.blocks = nn.Sequential(*[CompactBlock(b) for b in spec["blocks"]])
        self.avgpool = pool_from_spec(spec["avgpool"])
        fc = spec["fc"]
        self.has_fc = fc is not None
        if fc is not None:
            self.fc_adapt = ChannelAdapter(fc["select"], 0)
            self.fc: nn.Module = nn.Linear(fc["in"], fc["out"], bias=fc["bias"])
            self.out_scatter: nn.Module = nn.Identity()
        else:
            self.fc_adapt = ChannelAdapter(None, 0)
            self.fc = nn.Identity()
            self.out_scatter = ChannelScatter(spec["out_scatter"])

    def for_inference(self) -> CompactResNet:
        """A copy for inference (:func:`fastprune.compaction.inference.for_inference`): BatchNorm
        folded into the convs, ReLU and residual adds fused into them, the convs run by fastprune's CPU
        kernel. Outputs equal this model's in eval mode (to float32 rounding); this model is not changed.
        Not for training or export (use this model)."""
        return for_inference(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_scatter(self.maxpool(self.stem(x)))
        x = self.avgpool(self.blocks(x))
        if self.has_fc:
            return self.fc(torch.flatten(self.fc_adapt(x), 1))
        return torch.flatten(self.out_scatter(x), 1)


def build_compact(
    spec: dict[str, Any], state_dict: Optional[dict[str, torch.Tensor]] = None
) -> CompactResNet:
    """A :class:`CompactResNet` from its spec, in eval mode, with ``state_dict`` loaded (strict)."""
    model = CompactResNet(spec)
    if state_dict is not None:
        model.load_state_dict(state_dict, strict=True)
    return model.eval()


GRAPH_FORMAT = "fastprune-compact-graph/1"
_RESIZED = (nn.Conv2d, nn.Linear, nn.modules.batchnorm._BatchNorm)


def _layer_shapes(model: nn.Module) -> dict[str, dict[str, int]]:
    """The widths compaction changes, per layer: what rebuilding a compacted fastprune model needs."""
    shapes: dict[str, dict[str, int]] = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            shapes[name] = {
                "in": m.in_channels,
                "out": m.out_channels,
                "groups": m.groups,
                "bias": m.bias is not None,
            }
        elif isinstance(m, nn.Linear):
            shapes[name] = {"in": m.in_features, "out": m.out_features, "bias": m.bias is not None}
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            shapes[name] = {"features": m.num_features}
        if isinstance(m, (ConstantInputConv2d, ConstantInputLinear)):
            shapes[name]["constants"] = int(m.constants.numel())
    return shapes


def _resized(module: nn.Module, shape: dict[str, int]) -> nn.Module:
    layer = _resized_plain(module, shape)
    if shape.get("constants"):  # constant input planes appended (values from the state dict)
        layer.__class__ = ConstantInputConv2d if isinstance(layer, nn.Conv2d) else ConstantInputLinear
        layer.register_buffer("constants", torch.zeros(shape["constants"]))
    return layer


def _resized_plain(module: nn.Module, shape: dict[str, int]) -> nn.Module:
    if isinstance(module, nn.Conv2d):
        return nn.Conv2d(
            shape["in"], shape["out"], module.kernel_size, module.stride, module.padding, module.dilation,
            shape["groups"], shape["bias"], module.padding_mode,
        )  # fmt: skip
    if isinstance(module, nn.Linear):
        return nn.Linear(shape["in"], shape["out"], shape["bias"])
    return type(module)(
        shape["features"], module.eps, module.momentum, module.affine, module.track_running_stats
    )


def _save_graph_compact(model: nn.Module, path: Union[str, os.PathLike]) -> None:
    from fastprune import models

    arch = str(getattr(model, "arch", ""))
    if arch not in models.names():
        raise TypeError(
            f"save_compact: {type(model).__name__} is not one of fastprune's architectures, which is what "
            "load_compact can rebuild; save it with torch.save(model) (or its state_dict and your code)"
        )
    heads = [m for m in model.modules() if isinstance(m, nn.Linear)]
    spec = {
        "arch": arch,
        "num_classes": heads[-1].out_features if heads else 10,
        "small_input": bool(getattr(model, "small_input", False)),
        "layers": _layer_shapes(model),
    }
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"format": GRAPH_FORMAT, "spec": json.dumps(spec), "state_dict": state}
    replace_atomically(path, lambda f: torch.save(payload, f))


def _load_graph_compact(blob: dict[str, Any]) -> nn.Module:
    from fastprune import models

    spec = json.loads(blob["spec"])
    small_input = True if spec.get("small_input") else None
    model = models.create(spec["arch"], num_classes=int(spec["num_classes"]), small_input=small_input)
    for name, shape in spec["layers"].items():
        parent, _, leaf = name.rpartition(".")
        owner = model.get_submodule(parent) if parent else model
        setattr(owner, leaf, _resized(owner.get_submodule(leaf), shape))
    model.load_state_dict(blob["state_dict"], strict=True)
    model.compacted = True
    return model.eval()


def save_compact(model: nn.Module, path: Union[str, os.PathLike]) -> None:
    """One file: ``{"format", "spec" (JSON text), "state_dict"}`` (tensors and strings only, no pickled
    classes; ``torch.load(..., weights_only=True)`` reads it), replaced atomically (an error or a Ctrl-C
    never leaves a torn file). A :class:`CompactResNet`, or a compacted fastprune model of another
    architecture (its spec: the layer widths)."""
    if not isinstance(model, CompactResNet):
        if getattr(model, "compacted", False):
            _save_graph_compact(model, path)
            return
        raise TypeError(f"save_compact: expected a network from compact(), got {type(model).__name__}")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"format": FORMAT, "spec": model.spec_json, "state_dict": state}
    replace_atomically(path, lambda f: torch.save(payload, f))


def load_compact(path: Union[str, os.PathLike], map_location: Any = "cpu") -> nn.Module:
    """Rebuild a network saved by :func:`save_compact` (eval mode) on the device `map_location`; the
    original model is not needed. Read as data only (:func:`fastprune.serialization.load_torch_file`)."""
    blob = load_torch_file(path, what="load_compact")
    if isinstance(blob, dict) and blob.get("format") == GRAPH_FORMAT:
        model = _load_graph_compact(blob)
    elif not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ValueError(f"load_compact: {path} was not written by save_compact (format {FORMAT!r})")
    else:
        spec = json.loads(blob["spec"])
        model = build_compact(spec, None).to(getattr(torch, spec["dtype"]))
        model.load_state_dict(blob["state_dict"], strict=True)
    return model.to(map_location).eval()
