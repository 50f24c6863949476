"""The filter-criterion registry: names -> scoring functions, and user registration.

A filter criterion scores every filter of every selected layer in one call:

    fn(weights, *, num_pruned, masks, **options) -> list of (N_l,) float tensors

    weights     list of conv weights W_l, (N_l, C_l, k, k) (or (N_l, D_l)), one per layer
    num_pruned  list of ints: how many filters of each layer the caller will prune (criteria that are
                plain scores ignore it; ordering criteria such as "fpgm_mix" need it)
    masks       None, or a list of (N_l,) bool tensors: the current keep-masks (True = kept)

Lower score = less important: the pruner removes the `num_pruned` lowest of each layer (ties broken by
filter index). -inf means "prune first" (e.g. a filter that is already exactly zero under a mask-aware
criterion).
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Optional, Sequence, Union

import torch

ScoreFn = Callable[..., list[torch.Tensor]]
_REGISTRY: dict[str, ScoreFn] = {}


class Criterion:
    """A registered criterion bound to its options: ``Criterion("fpgm", metric="l1")``.

    Calling it scores a list of layers: ``criterion(weights, num_pruned=..., masks=None, backend="auto")``
    (`backend` reaches criteria whose function has a `backend` parameter).
    """

    def __init__(self, name: Union[str, ScoreFn], **options: Any) -> None:
        if callable(name):  # an unregistered function, used as is
            fn, name = name, getattr(name, "__name__", "custom")
        elif isinstance(name, str) and name in _REGISTRY:
            fn = _REGISTRY[name]
        else:
            raise ValueError(f"criterion: expected one of {', '.join(map(repr, names()))}, got {name!r}")
        self.name, self.options = name, dict(options)
        self._fn = functools.partial(fn, **options)
        # Criteria that run fastprune kernels take the caller's backend unless bound in the options.
        self._takes_backend = "backend" in inspect.signature(fn).parameters and "backend" not in options

    def __call__(
        self,
        weights: Sequence[torch.Tensor],
        *,
        num_pruned: Optional[Sequence[int]] = None,
        masks: Optional[Sequence[torch.Tensor]] = None,
        backend: str = "auto",
    ) -> list[torch.Tensor]:
        weights = list(weights)
        if not weights:
            raise ValueError("weights: expected a non-empty list of conv weights")
        num_pruned = [0] * len(weights) if num_pruned is None else list(num_pruned)
        if len(num_pruned) != len(weights) or (masks is not None and len(masks) != len(weights)):
            raise ValueError("num_pruned, masks: expected one entry per layer of weights")
        extra = {"backend": backend} if self._takes_backend else {}
        scores = list(self._fn(weights, num_pruned=num_pruned, masks=masks, **extra))
        if len(scores) != len(weights):
            raise RuntimeError(
                f"criterion {self.name!r} returned scores for {len(scores)} layers (expected {len(weights)})"
            )
        for w, s in zip(weights, scores):
            if not isinstance(s, torch.Tensor) or s.shape != (w.shape[0],):
                raise RuntimeError(
                    f"criterion {self.name!r} returned scores {getattr(s, 'shape', type(s).__name__)} "
                    f"for a layer of {w.shape[0]} filters (expected a tensor of shape ({w.shape[0]},))"
                )
        return scores

    @property
    def label(self) -> str:
        """The name with its options, for logs: ``fpgm(metric=l1)``."""
        if not self.options:
            return self.name
        return f"{self.name}({', '.join(f'{k}={v}' for k, v in sorted(self.options.items()))})"

    def __repr__(self) -> str:
        return f"Criterion({self.label})"


CriterionLike = Union[str, Criterion, ScoreFn]


def register(name: str, *, overwrite: bool = False) -> Callable[[ScoreFn], ScoreFn]:
    """Decorator registering a filter criterion under `name`::

        @fastprune.criteria.register("taylor_abs")
        def taylor_abs(weights, *, num_pruned, masks, scale=1.0):
            return [scale * w.abs().flatten(1).sum(1) for w in weights]

    Afterwards ``SoftFilterPruner(model, criterion="taylor_abs")`` uses it.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name: expected a non-empty string, got {name!r}")

    def decorate(fn: ScoreFn) -> ScoreFn:
        if name in _REGISTRY and not overwrite:
            raise ValueError(f"criterion {name!r} is already registered (pass overwrite=True to replace it)")
        _REGISTRY[name] = fn
        return fn

    return decorate


def names() -> list[str]:
    """The registered criterion names."""
    return sorted(_REGISTRY)


def get(criterion: CriterionLike, **options: Any) -> Criterion:
    """A `Criterion` from a name (with options), a `Criterion` (returned as is) or a bare function."""
    if isinstance(criterion, Criterion):
        if options:
            raise ValueError("options: a Criterion instance already carries its options")
        return criterion
    if isinstance(criterion, str) or callable(criterion):
        return Criterion(criterion, **options)
    raise TypeError(f"criterion: expected a name, a Criterion or a function, got {type(criterion).__name__}")
