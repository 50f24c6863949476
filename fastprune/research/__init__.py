"""Research tools: side-by-side comparisons of the pruning criteria on one trained network.

    rows = fastprune.research.compare("runs/a", rates=[0.3, 0.5], finetune_epochs=1, out="runs/a/compare")

:func:`compare` prunes the same trained weights with every filter criterion (at each rate) and every
kernel criterion (at each mode and threshold), restoring the weights in between, and measures what each
setting removes and what it costs in accuracy; ``fastprune compare RUN`` is its command line.
:func:`reproduce_kernel` and :func:`reproduce_filter` rerun the two papers' claims by protocol at a scale
this machine runs (``fastprune reproduce kernel|filter``):

    summary = fastprune.research.reproduce_filter("runs/rf", seeds=[0, 1, 2], criteria=["l2", "fpgm"])

Loaded on first use: importing this package imports no torch.
"""

from __future__ import annotations

_LAZY_NAMES = {
    "compare": "fastprune.research.comparison",
    "random_criterion": "fastprune.research.comparison",
    "threshold_sweep": "fastprune.research.comparison",
    "DEFAULT_FILTER_CRITERIA": "fastprune.research.comparison",
    "reproduce_kernel": "fastprune.research.kernel_protocol",
    "reproduce_filter": "fastprune.research.filter_protocol",
}

__all__ = sorted(_LAZY_NAMES)


def __getattr__(name: str):
    import importlib

    if name in _LAZY_NAMES:
        return getattr(importlib.import_module(_LAZY_NAMES[name]), name)
    raise AttributeError(f"module 'fastprune.research' has no attribute {name!r}")
