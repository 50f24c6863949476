"""fastprune: custom kernels for pruning convolutional networks.

Public ops live in :mod:`fastprune.ops` (``pairwise_distances``, ``gm_scores``). Importing this package
loads no native code and never initialises CUDA.
"""

from fastprune._version import __version__
from fastprune.backends import available_backends, use_backend

__all__ = ["__version__", "available_backends", "use_backend", "ops"]


def __getattr__(name: str):
    # `fastprune.ops` imports torch; load it on first use so `import fastprune` stays light.
    if name == "ops":
        import importlib

        return importlib.import_module("fastprune.ops")
    raise AttributeError(f"module 'fastprune' has no attribute {name!r}")
