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
from fastprune.compaction.modules import ChannelAdapter, ChannelScatter, CompactBlock, ConvBN, pool_from_spec

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


def save_compact(model: CompactResNet, path: Union[str, os.PathLike]) -> None:
    """One file: ``{"format", "spec" (JSON text), "state_dict"}`` (tensors and strings only, no pickled
    classes; ``torch.load(..., weights_only=True)`` reads it)."""
    if not isinstance(model, CompactResNet):
        raise TypeError(
            f"save_compact: expected a CompactResNet (from compact()), got {type(model).__name__}"
        )
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"format": FORMAT, "spec": model.spec_json, "state_dict": state}, os.fspath(path))


def load_compact(path: Union[str, os.PathLike], map_location: Any = "cpu") -> CompactResNet:
    """Rebuild a network saved by :func:`save_compact` (eval mode); the original model is not needed."""
    try:
        blob = torch.load(os.fspath(path), map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:
        raise ValueError(f"load_compact: {path} is not a readable torch file ({error})") from error
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ValueError(f"load_compact: {path} was not written by save_compact (format {FORMAT!r})")
    spec = json.loads(blob["spec"])
    model = build_compact(spec, None).to(getattr(torch, spec["dtype"]))
    model.load_state_dict(blob["state_dict"], strict=True)
    return model.eval()
