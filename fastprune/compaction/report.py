"""What compaction did: :class:`CompactionReport`, one :class:`LayerCompaction` per conv or FC layer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


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
    kept_one: list[str] = field(default_factory=list)  # layers whose every filter went: one kept

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
        if self.kept_one:
            lines.append(f"every filter removed, one (zero) filter kept: {', '.join(self.kept_one)}")
        return "\n".join(lines)
