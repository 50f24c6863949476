"""fastprune: custom kernels for pruning convolutional networks.

Public ops live in :mod:`fastprune.ops` (``pairwise_distances``, ``gm_scores``). Importing this package
loads no native code and never initialises CUDA.
"""

from fastprune._version import __version__
from fastprune.backends import available_backends, use_backend

__all__ = ["__version__", "available_backends", "use_backend", "ops", "KernelPruner"]


def __getattr__(name: str):
    # `fastprune.ops` imports torch; load it on first use so `import fastprune` stays light.
    import importlib

    if name == "ops":
        return importlib.import_module("fastprune.ops")
    if name == "KernelPruner":
        return importlib.import_module("fastprune.pruning").KernelPruner
    raise AttributeError(f"module 'fastprune' has no attribute {name!r}")
