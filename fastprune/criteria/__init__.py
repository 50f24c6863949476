"""Pruning criteria: which filters (or kernels) matter least.

Filter criteria (SFP / FPGM / MFP) live in a registry: ``names()`` lists them, ``get(name, **options)``
binds options, ``@register(name)`` adds your own. Each scores every selected layer in one batched call;
see :mod:`fastprune.criteria.filter_criteria` for the definitions. The kernel-level, eigenvalue-based
criteria are ``KERNEL_CRITERIA``, computed by :func:`fastprune.ops.kernel_scores` and used by
:class:`fastprune.KernelPruner`.
"""

from fastprune.criteria import filter_criteria  # noqa: F401  (registers the built-in criteria)
from fastprune.criteria.filter_criteria import DISTANCE_METRICS, filter_norms
from fastprune.criteria.registry import Criterion, CriterionLike, get, names, register
from fastprune.ops import CRITERIA as KERNEL_CRITERIA

__all__ = [
    "DISTANCE_METRICS",
    "KERNEL_CRITERIA",
    "Criterion",
    "CriterionLike",
    "filter_norms",
    "get",
    "names",
    "register",
]
