"""Compaction: a pruned (masked) network -> a genuinely smaller dense network with the same outputs.

    small = fastprune.compact(model)                  # model: zeroed filters/kernels, eval-mode BN
    small, report = fastprune.compact(model, return_report=True); print(report)
    fastprune.save_compact(small, "small.pt"); small = fastprune.load_compact("small.pt")
    fast = small.for_inference()                      # BN folded, ReLU and residual adds fused

Modules: :mod:`~fastprune.compaction.api` (:func:`compact`, :func:`apply_masks`),
:mod:`~fastprune.compaction.resnet` (the builder for ResNets), :mod:`~fastprune.compaction.graph` (any
other CNN, through Torch-Pruning's graph), :mod:`~fastprune.compaction.network`
(the compact network, its spec, save/load), :mod:`~fastprune.compaction.modules` (its layers),
:mod:`~fastprune.compaction.inference` (the inference form), :mod:`~fastprune.compaction.report`,
:mod:`~fastprune.compaction.cli` (``fastprune compact``). Imports go one way: api -> resnet / graph;
resnet -> network -> inference -> modules; the analysis it relies on (:mod:`fastprune.pruning.channels`,
:mod:`fastprune.pruning.flops`) never imports this package.
"""

from fastprune.compaction.api import apply_masks, compact
from fastprune.compaction.network import CompactResNet, build_compact, load_compact, save_compact
from fastprune.compaction.report import CompactionReport, LayerCompaction
from fastprune.pruning.flops import count_dense_flops

count_compact_flops = count_dense_flops  # the name compaction's users know: dense MACs of any network

__all__ = [
    "CompactResNet",
    "CompactionReport",
    "LayerCompaction",
    "apply_masks",
    "build_compact",
    "compact",
    "count_compact_flops",
    "load_compact",
    "save_compact",
]
