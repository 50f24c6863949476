"""What compaction did (:class:`CompactionReport`) and the dense cost of any network
(:func:`count_compact_flops`, in :func:`fastprune.pruning.flops.count_flops` terms)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import torch
from torch import nn

from fastprune.pruning.flops import FlopsReport, FlopsRow


@dataclass
class LayerCompaction:
    """One conv (or the FC layer) of the compact network."""

    name: str  # module name in the original model
    kind: str  # "conv" or "linear"
    filters: int
    filters_kept: int
    in_channels: int
    in_kept: int  # input channels the compact layer reads (constant ones included)
    const_inputs: int  # of which constant channels appended (CONST channels of removed filters)
    zero_kernels: int  # all-zero (filter, input) kernels left inside the kept block

    @property
    def kernels(self) -> int:
        return self.filters_kept * self.in_kept

    @property
    def kernel_sparsity(self) -> float:
        """Share of the kept block's kernels that are zero (what masked convolution could still skip)."""
        return self.zero_kernels / self.kernels if self.kernels else 0.0


@dataclass
class CompactionReport:
    layers: list[LayerCompaction] = field(default_factory=list)
    streams: list[tuple[str, int, int, int]] = field(default_factory=list)  # block, width, kept, bias chans
    params_before: int = 0  # parameters of the masked model (all of them)
    params_after: int = 0
    macs_before: Optional[int] = None  # dense MACs per sample of the masked model (what it executes)
    macs_after: Optional[int] = None
    input_shape: Optional[tuple[int, int, int]] = None

    @property
    def zero_kernels(self) -> int:
        return sum(layer.zero_kernels for layer in self.layers)

    def __str__(self) -> str:
        head = f"{'layer':<26}{'filters':>12}{'inputs':>12}{'const in':>10}{'zero kernels':>16}"
        lines = [head, "-" * len(head)]
        for r in self.layers:
            lines.append(
                f"{r.name:<26}{f'{r.filters_kept}/{r.filters}':>12}{f'{r.in_kept}/{r.in_channels}':>12}"
                f"{r.const_inputs:>10}{f'{r.zero_kernels} ({100 * r.kernel_sparsity:.0f}%)':>16}"
            )
        lines.append("-" * len(head))
        narrowed = [s for s in self.streams if s[2] < s[1] or s[3]]
        for block, width, kept, bias in narrowed:
            lines.append(
                f"{block}: residual stream {kept}/{width} channels, {bias} with a folded BN constant"
            )
        lines.append(f"params {self.params_before:,} -> {self.params_after:,}")
        if self.macs_before is not None and self.macs_after is not None:
            lines.append(
                f"MACs/sample {self.macs_before:,} -> {self.macs_after:,} at input {self.input_shape}"
            )
        lines.append(f"zero kernels left (masked-convolution sparsity): {self.zero_kernels:,}")
        return "\n".join(lines)


def _input_shape(spec: Mapping[str, Any], required: bool = True) -> Optional[tuple[int, int, int]]:
    c = int(spec.get("in_channels", 3))
    if spec.get("family") == "cifar":
        return (c, 32, 32)
    if spec.get("family") == "imagenet":
        return (c, 64, 64) if spec.get("small_input") else (c, 224, 224)
    if required:
        raise ValueError("count_compact_flops: input_shape is required for a model of unknown family")
    return None


def count_compact_flops(model: nn.Module, input_shape: Optional[Sequence[int]] = None) -> FlopsReport:
    """Dense MACs and parameters of any network (e.g. a compact one) per sample, in count_flops' terms:
    conv ``out * in/groups * kh * kw * H_out * W_out``, FC ``out * in``; params = every parameter."""
    if input_shape is None:
        input_shape = _input_shape(json.loads(model.spec_json) if hasattr(model, "spec_json") else {})
    shape = tuple(int(d) for d in input_shape)[-3:]
    report = FlopsReport(input_shape=shape)  # type: ignore[arg-type]

    def hook(module: nn.Module, _inp: Any, out: torch.Tensor, name: str) -> None:
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            macs = out[0].numel() * module.in_channels // module.groups * kh * kw
            kind = "Conv2d"
        else:
            macs, kind = module.in_features * module.out_features, "Linear"
        params = sum(p.numel() for p in module.parameters(recurse=False))
        report.rows.append(FlopsRow(name, kind, macs, params, macs, params))

    handles = [
        m.register_forward_hook(lambda mod, i, o, name=name: hook(mod, i, o, name))
        for name, m in model.named_modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    param = next(model.parameters(), None)
    flags = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *shape), device=param.device if param is not None else "cpu",
                              dtype=param.dtype if param is not None else torch.float32))  # fmt: skip
    finally:
        for h in handles:
            h.remove()
        for m, flag in flags.items():
            m.training = flag
    report.params = report.dense_params = sum(p.numel() for p in model.parameters())
    return report
