"""Kernel-level pruning with the eigenvalue-based criteria (Cugu & Akbas, "A Deeper Look into
Convolutions via Pruning").

Each k x k kernel K = W[o, i] of each selected conv gets a score c(K) (fastprune.ops.kernel_scores, one
native call for the whole network) and a keep-mask of shape (O, I) by one of three modes:

    "threshold"  kept iff c(K) >= t ** p, one global t (default 1e-4) for every layer and kernel size,
                 p = criterion_power(criterion, k) (k for det, 2k for det_gram, else 1);
    "contrib"    kept iff c(K) / sum of c over the alive kernels of the same output filter >= tau
                 (default 1e-3);
    "sorted"     per output filter, the lowest-scoring `fraction` of its alive kernels is dropped.

A kernel is alive when any of its weights is nonzero; dead kernels stay dead. The authors' layers: every
conv except an ImageNet 7x7 stem (and never a fully connected layer).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional

import torch
from torch import nn

from fastprune.ops import CRITERIA, criterion_power, kernel_scores

MODES = ("threshold", "contrib", "sorted")


def default_layer_filter(name: str, conv: nn.Conv2d) -> bool:
    """Every conv with square kernels of at most 7 x 7, except a 7 x 7 stem on an RGB input."""
    k = conv.kernel_size
    return k[0] == k[1] and k[0] <= 7 and not (k[0] == 7 and conv.in_channels == 3)


@dataclass
class LayerReport:
    name: str
    kernels: int  # O * I
    kernels_removed: int
    parameters: int  # weights of the conv (bias excluded)
    parameters_removed: int
    filters_dead: int  # output filters whose every kernel is pruned


@dataclass
class PruningReport:
    layers: list[LayerReport] = field(default_factory=list)
    model_parameters: int = 0  # every parameter of the model, for the compression score

    @property
    def kernels_removed(self) -> int:
        return sum(layer.kernels_removed for layer in self.layers)

    @property
    def kernels(self) -> int:
        return sum(layer.kernels for layer in self.layers)

    @property
    def parameters_removed(self) -> int:
        return sum(layer.parameters_removed for layer in self.layers)

    @property
    def fraction_parameters_removed(self) -> float:
        return self.parameters_removed / max(self.model_parameters, 1)

    def compression_score(self, accuracy_pruned: float, accuracy_unpruned: float) -> float:
        return compression_score(accuracy_pruned, accuracy_unpruned, self.fraction_parameters_removed)

    def __str__(self) -> str:
        lines = [f"{'layer':<32}{'kernels':>10}{'removed':>10}{'%':>7}{'dead filters':>14}"]
        for layer in self.layers:
            share = 100.0 * layer.kernels_removed / max(layer.kernels, 1)
            lines.append(
                f"{layer.name:<32}{layer.kernels:>10}{layer.kernels_removed:>10}{share:>6.1f}%{layer.filters_dead:>14}"
            )
        lines.append(
            f"total: {self.kernels_removed}/{self.kernels} kernels, {self.parameters_removed} of "
            f"{self.model_parameters} parameters ({100 * self.fraction_parameters_removed:.1f}%) removed"
        )
        return "\n".join(lines)


def compression_score(accuracy_pruned: float, accuracy_unpruned: float, fraction_removed: float) -> float:
    """(acc_pruned / acc_unpruned) * fraction of parameters removed (the authors' score)."""
    if accuracy_unpruned <= 0:
        raise ValueError(f"accuracy_unpruned: expected > 0, got {accuracy_unpruned}")
    return accuracy_pruned / accuracy_unpruned * fraction_removed


def l1_kernel_penalty(
    model: nn.Module, layer_filter: Callable[[str, nn.Conv2d], bool] = default_layer_filter
):
    """sum |w| over the selected conv weights: add `1e-4 * l1_kernel_penalty(model)` to the loss, as the
    authors do while training, to drive unimportant kernels towards zero."""
    weights = [conv.weight for name, conv in _convs(model) if layer_filter(name, conv)]
    if not weights:
        raise ValueError("model: no conv layer selected for the L1 penalty")
    return sum(w.abs().sum() for w in weights)


def _convs(model: nn.Module) -> Iterable[tuple[str, nn.Conv2d]]:
    return ((name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d))


_UNSET: Any = object()


class KernelPruner:
    """Scores every kernel of the selected convs with one criterion and masks the weak ones.

    Example (model first, as :class:`~fastprune.pruning.SoftFilterPruner`):
        pruner = KernelPruner(model, criterion="spectral_norm", mode="threshold", threshold=1e-4)
        masks = pruner.compute_masks()          # {conv name: (O, I) bool, True = kept}
        report = pruner.apply(masks=masks)      # zeroes pruned kernels in place
        print(report); report.compression_score(acc_pruned, acc_unpruned)

    The methods also take another model (``pruner.compute_masks(other)``). The older form with the
    criterion first and the model given later, ``KernelPruner("min_eig").compute_masks(model)``, still
    works and warns (DeprecationWarning).
    """

    def __init__(
        self,
        model: Optional[nn.Module] = None,
        criterion: str = _UNSET,
        *,
        mode: str = "threshold",
        threshold: float = 1e-4,
        contrib: float = 1e-3,
        fraction: float = 0.5,
        layer_filter: Callable[[str, nn.Conv2d], bool] = default_layer_filter,
        backend: str = "auto",
    ) -> None:
        if isinstance(model, str):  # the old form: KernelPruner(criterion, ...)
            if criterion is not _UNSET:
                raise TypeError("KernelPruner: the model comes first: KernelPruner(model, criterion=...)")
            warnings.warn(
                "KernelPruner(criterion, ...) is deprecated: pass the model first, "
                "KernelPruner(model, criterion=...), and call compute_masks() / apply() without it",
                DeprecationWarning,
                stacklevel=2,
            )
            model, criterion = None, model
        if model is not None and not isinstance(model, nn.Module):
            raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
        criterion = "spectral_norm" if criterion is _UNSET else criterion
        if criterion not in CRITERIA:
            raise ValueError(
                f"criterion: expected one of {', '.join(repr(c) for c in CRITERIA)}, got {criterion!r}"
            )
        if mode not in MODES:
            raise ValueError(f"mode: expected one of {', '.join(repr(m) for m in MODES)}, got {mode!r}")
        for arg, value in (("threshold", threshold), ("contrib", contrib)):
            if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
                raise ValueError(f"{arg}: expected a finite number > 0, got {value!r}")
        if not (isinstance(fraction, (int, float)) and 0.0 <= fraction <= 1.0):
            raise ValueError(f"fraction: expected a number in [0, 1], got {fraction!r}")
        self.model = model
        self.criterion, self.mode, self.backend = criterion, mode, backend
        self.threshold, self.contrib, self.fraction = float(threshold), float(contrib), float(fraction)
        self.layer_filter = layer_filter

    def _model(self, model: Optional[nn.Module]) -> nn.Module:
        model = self.model if model is None else model
        if model is None:
            raise ValueError("model: none given (KernelPruner(model, ...) or compute_masks(model))")
        if not isinstance(model, nn.Module):
            raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
        return model

    def layers(self, model: Optional[nn.Module] = None) -> list[tuple[str, nn.Conv2d]]:
        """The selected convs, (name, module), of `model` (default: the pruner's)."""
        model = self._model(model)
        selected = [(name, conv) for name, conv in _convs(model) if self.layer_filter(name, conv)]
        if not selected:
            raise ValueError("model: no conv layer matches the layer filter")
        return selected

    @torch.no_grad()
    def compute_masks(self, model: Optional[nn.Module] = None) -> dict[str, torch.Tensor]:
        """{conv name: (O, I) bool keep-mask} of `model` (default: the pruner's); the scores of every
        selected layer come from one native call."""
        model = self._model(model)
        layers = self.layers(model)
        weights = [conv.weight for _, conv in layers]
        scores = kernel_scores(weights, self.criterion, backend=self.backend)
        masks = {}
        for (name, conv), score, weight in zip(layers, scores, weights):
            alive = weight.flatten(2).ne(0).any(dim=2)
            masks[name] = self._keep(score.double(), alive, conv.kernel_size[0])
        return masks

    def _keep(self, score: torch.Tensor, alive: torch.Tensor, k: int) -> torch.Tensor:
        if self.mode == "threshold":
            return alive & (score >= self.threshold ** criterion_power(self.criterion, k))
        if self.mode == "contrib":
            total = torch.where(alive, score, 0.0).sum(dim=1, keepdim=True)
            share = torch.where(total > 0, score / total.clamp_min(torch.finfo(torch.float64).tiny), 0.0)
            return alive & (share >= self.contrib)
        # sorted: rank alive kernels per output filter (dead ones last, ties by index) and drop the lowest.
        ranked = torch.where(alive, score, math.inf)
        order = torch.sort(ranked, dim=1, stable=True).indices
        drop_count = torch.floor(alive.sum(dim=1) * self.fraction).long()
        position = torch.empty_like(order)
        position.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
        return alive & (position >= drop_count[:, None])

    @torch.no_grad()
    def apply(
        self, model: Optional[nn.Module] = None, masks: Optional[dict[str, torch.Tensor]] = None
    ) -> PruningReport:
        """Zeroes every pruned kernel of `model` (default: the pruner's) in place, computing the masks when
        not given, and reports what went."""
        model = self._model(model)
        masks = self.compute_masks(model) if masks is None else masks
        report = PruningReport(model_parameters=sum(p.numel() for p in model.parameters()))
        for name, conv in self.layers(model):
            if name not in masks:
                raise ValueError(f"masks: no mask for layer {name!r}")
            keep = masks[name]
            if keep.shape != conv.weight.shape[:2]:
                raise ValueError(
                    f"masks[{name!r}]: expected shape {tuple(conv.weight.shape[:2])}, got {tuple(keep.shape)}"
                )
            conv.weight.mul_(keep.to(conv.weight.dtype)[:, :, None, None])
            k2 = conv.weight.shape[2] * conv.weight.shape[3]
            removed = int((~keep).sum())
            report.layers.append(
                LayerReport(
                    name,
                    keep.numel(),
                    removed,
                    conv.weight.numel(),
                    removed * k2,
                    int((~keep.any(dim=1)).sum()),
                )
            )
        return report
