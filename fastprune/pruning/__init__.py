"""What to prune: masks, pruners, reports."""

from fastprune.pruning.channels import (
    ChannelLiveness,
    LayerLiveness,
    UnsupportedModelError,
    channel_liveness,
)
from fastprune.pruning.filter_pruner import SoftFilterPruner, StepRecord
from fastprune.pruning.flops import FlopsReport, FlopsRow, count_flops, paper_flops_reduction, paper_macs
from fastprune.pruning.keep_masks import KeepMasks
from fastprune.pruning.kernel_pruner import (
    KernelPruner,
    LayerReport,
    PruningReport,
    compression_score,
    l1_kernel_penalty,
)
from fastprune.pruning.torch_masks import export_masks, import_masks

# Compaction lives in fastprune.compaction (which imports this package): its names stay reachable from
# here, loaded on first use.
_COMPACTION_NAMES = ("CompactionReport", "compact", "load_compact", "save_compact")


def __getattr__(name: str):
    if name in _COMPACTION_NAMES:
        import fastprune.compaction

        return getattr(fastprune.compaction, name)
    raise AttributeError(f"module 'fastprune.pruning' has no attribute {name!r}")


__all__ = [
    "KeepMasks",
    "SoftFilterPruner",
    "StepRecord",
    "KernelPruner",
    "LayerReport",
    "PruningReport",
    "compression_score",
    "l1_kernel_penalty",
    "ChannelLiveness",
    "LayerLiveness",
    "UnsupportedModelError",
    "channel_liveness",
    "FlopsReport",
    "FlopsRow",
    "count_flops",
    "paper_flops_reduction",
    "paper_macs",
    "CompactionReport",
    "compact",
    "load_compact",
    "save_compact",
    "export_masks",
    "import_masks",
]
