"""fastprune: custom kernels for pruning convolutional networks.

Public ops live in :mod:`fastprune.ops` (``pairwise_distances``, ``gm_scores``). Importing this package
loads no native code and never initialises CUDA.
"""

from fastprune._version import __version__
from fastprune.backends import CpuCapability, available_backends, cpu_capability, use_backend

# Loaded on first use, so `import fastprune` stays light (no torch, no native code).
_SUBMODULES = ("ops", "criteria", "models", "data", "pruning", "compaction")
_LAZY_NAMES = {
    "KernelPruner": "fastprune.pruning",
    "SoftFilterPruner": "fastprune.pruning",
    "count_flops": "fastprune.pruning",
    "paper_flops_reduction": "fastprune.pruning",
    "channel_liveness": "fastprune.pruning",
    "compact": "fastprune.compaction",
    "save_compact": "fastprune.compaction",
    "load_compact": "fastprune.compaction",
    "CompactionReport": "fastprune.compaction",
    "export_masks": "fastprune.pruning.torch_masks",
    "import_masks": "fastprune.pruning.torch_masks",
}

__all__ = [
    "__version__",
    "CpuCapability",
    "available_backends",
    "cpu_capability",
    "use_backend",
    *_SUBMODULES,
    *_LAZY_NAMES,
]


def __getattr__(name: str):
    import importlib

    if name in _SUBMODULES:
        return importlib.import_module(f"fastprune.{name}")
    if name in _LAZY_NAMES:
        return getattr(importlib.import_module(_LAZY_NAMES[name]), name)
    raise AttributeError(f"module 'fastprune' has no attribute {name!r}")
