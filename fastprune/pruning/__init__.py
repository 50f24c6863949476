"""What to prune: masks, pruners, reports."""

from fastprune.pruning.kernel_pruner import (
    KernelPruner,
    LayerReport,
    PruningReport,
    compression_score,
    l1_kernel_penalty,
)

__all__ = ["KernelPruner", "LayerReport", "PruningReport", "compression_score", "l1_kernel_penalty"]
