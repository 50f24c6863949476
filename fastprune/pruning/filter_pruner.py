"""Soft filter pruning (SFP / FPGM) with MFP-style criterion switching, for training loops.

    pruner = fastprune.SoftFilterPruner(model, criterion="fpgm", rate=0.4)
    for epoch in range(epochs):
        train_one_epoch(model, optimizer)
        pruner.step()                      # score every selected layer, zero the weakest filters
    pruner.finalize()                      # the pruned channels are gone for good (BN zeroed too)

At each step, per selected conv with N filters, the floor(N · rate) lowest-scoring filters (ties by
index) are pruned: their weights (and bias) are set to zero. `mode` says what happens next:

    "soft"  (SFP) nothing else: the zeroed filters keep training and may recover; the next step picks
            again from all filters.
    "hard"  (FPGM's code) their gradients and optimizer state (momentum, Adam moments) are masked too,
            and the weights are re-zeroed after every optimizer step, so they stay exactly zero.

Criterion switching (MFP, He et al.; a reconstruction, see the README): with `candidates`, every
candidate criterion proposes its pruned network at each step (its "neighbour"), each neighbour is rated
by an attribute, and the pruner switches to the best one: the lowest loss on a held-out batch
(`attribute="loss"`, the default), or the least redundant surviving filters (`"diversity"`: a
weight-distribution attribute needing no data), or any function of the model (lower = better). The choice
and every candidate's attribute are recorded in `history`.

Under torch.distributed, rank 0's masks (and choice) are broadcast, so every rank prunes the same
filters.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from fastprune.criteria import Criterion, CriterionLike
from fastprune.criteria import get as get_criterion
from fastprune.pruning.channels import UnsupportedModelError, channel_liveness
from fastprune.pruning.coupling import CoupledGroup, coupled_groups, group_masks
from fastprune.pruning.flops import resolve_input_shape
from fastprune.pruning.keep_masks import KeepMasks
from fastprune.pruning.layers import LayerSelection, following_batchnorm, select_convs
from fastprune.pruning.switching import ATTRIBUTES, resolve_attribute

MODES = ("soft", "hard")
COUPLINGS = ("auto", "groups", "none")


@dataclass
class StepRecord:
    """What one pruning step did."""

    step: int
    criterion: str  # label of the criterion applied
    attributes: dict[str, float] = field(default_factory=dict)  # candidate label -> attribute (switching)
    pruned: int = 0  # filters pruned at this step, all layers
    filters: int = 0  # filters in the selected layers
    scoring_seconds: float = 0.0  # time in criterion calls (all candidates)


def _check_rate(name: str, value: object) -> float:
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value < 1.0):
        raise ValueError(f"{name}: expected a pruning rate in [0, 1), got {value!r}")
    return float(value)


class SoftFilterPruner:
    """Filter pruner for a training loop (see the module docstring for the semantics).

    Args:
        model: the network (its Conv2d layers are pruned in place).
        criterion: a registered name ("l1", "l2", "fpgm", "fpgm_he", "fpgm_mix", or your own), a
            `fastprune.criteria.Criterion`, or a function; `criterion_options` are passed to it.
        rate: the share of filters pruned in every selected layer, in [0, 1).
        layer_rates: per-layer overrides {conv name: rate}.
        mode: "soft" (SFP) or "hard" (masks gradients and optimizer state; needs `optimizer`).
        layers: None (every conv except projection shortcuts), a list of conv names, or a predicate.
        candidates: criteria to switch between (MFP); None = always `criterion`.
        attribute: how candidates are rated: "loss" (needs step(held_out=...)), "diversity" or a
            function model -> float (lower = better); see fastprune.pruning.switching.
        loss_fn: for attribute="loss" (default cross-entropy).
        optimizer: whose state hard mode masks.
        backend: the fastprune backend for the scoring kernels.
        coupling: "auto" (coupled groups for networks other than ResNets), "groups" (always) or "none"
            (every conv's filters on their own): channels a depthwise conv, a residual add or a
            concatenation couples are scored and pruned together (fastprune.pruning.coupling), traced
            once here with Torch-Pruning's DependencyGraph. With coupling, ``layers=None`` selects every
            conv (a projection shortcut goes with the channels it adds to).
        input_shape: (C, H, W) of the example input that traces the model for coupling (default from
            ``model.family``).
    """

    def __init__(
        self,
        model: nn.Module,
        criterion: CriterionLike = "fpgm",
        rate: float = 0.4,
        *,
        layer_rates: Optional[Mapping[str, float]] = None,
        mode: str = "soft",
        layers: LayerSelection = None,
        criterion_options: Optional[Mapping[str, Any]] = None,
        candidates: Optional[Sequence[CriterionLike]] = None,
        attribute: Union[str, Callable[[nn.Module], float]] = "loss",
        loss_fn: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None,
        optimizer: Optional[torch.optim.Optimizer] = None,
        backend: str = "auto",
        coupling: str = "auto",
        input_shape: Optional[Sequence[int]] = None,
    ) -> None:
        if coupling not in COUPLINGS:
            raise ValueError(f"coupling: expected one of {', '.join(map(repr, COUPLINGS))}, got {coupling!r}")
        if mode not in MODES:
            raise ValueError(f"mode: expected one of {', '.join(map(repr, MODES))}, got {mode!r}")
        if mode == "hard" and optimizer is None:
            raise ValueError("optimizer: hard mode masks the optimizer's momentum; pass optimizer=")
        self.model, self.mode, self.optimizer, self.backend = model, mode, optimizer, backend
        self.groups: Optional[list[CoupledGroup]] = None
        if coupling == "groups" or (coupling == "auto" and not _is_resnet(model)):
            # coupled groups hold the projection shortcuts too: by default every conv is selected
            self.convs = select_convs(model, _every_conv if layers is None else layers)
            self.groups = self._coupled_groups(coupling, input_shape)
        if self.groups is None:
            self.convs = select_convs(model, layers)
        self.rate = _check_rate("rate", rate)
        names = {name for name, _ in self.convs}
        self.rates = {name: self.rate for name in names}
        for name, value in (layer_rates or {}).items():
            if name not in names:
                raise ValueError(f"layer_rates: {name!r} is not one of the selected conv layers")
            self.rates[name] = _check_rate(f"layer_rates[{name!r}]", value)
        self.criterion = get_criterion(criterion, **dict(criterion_options or {}))
        self.candidates = [get_criterion(c) for c in candidates] if candidates else []
        if attribute not in ATTRIBUTES and not callable(attribute):
            raise ValueError(f"attribute: expected one of {', '.join(map(repr, ATTRIBUTES))} or a function")
        self.attribute = attribute
        self.loss_fn = loss_fn or nn.functional.cross_entropy
        device = self.convs[0][1].weight.device
        self.masks = {
            name: torch.ones(c.out_channels, dtype=torch.bool, device=device) for name, c in self.convs
        }
        self.history: list[StepRecord] = []
        self.steps = 0
        # Hard mode holds the pruned filters at zero through training; the masks are shared by reference,
        # so every step's new masks take effect at once.
        self._keeper = KeepMasks(model, self.masks, optimizer, batchnorm=False) if mode == "hard" else None

    # ---- selection ---------------------------------------------------------------------------------

    def _coupled_groups(
        self, coupling: str, input_shape: Optional[Sequence[int]]
    ) -> Optional[list[CoupledGroup]]:
        """The coupled groups (fastprune.pruning.coupling) of the selected convs; None where "auto" cannot
        trace the model (with a warning: every conv on its own)."""
        param = self.convs[0][1].weight
        try:
            shape = resolve_input_shape(self.model, input_shape)
        except ValueError:
            if coupling == "groups":
                raise
            first = next(m for m in self.model.modules() if isinstance(m, nn.Conv2d))
            shape = (first.in_channels, 32, 32)  # a guess: most CNNs trace at any size
        example = torch.zeros((1, *shape), device=param.device, dtype=param.dtype)
        try:
            return coupled_groups(self.model, dict(self.convs), example)
        except UnsupportedModelError as error:
            if coupling == "groups":
                raise
            warnings.warn(
                f"SoftFilterPruner: coupled channels not traced ({error}); every conv is pruned on its own. "
                "Pass input_shape=(C, H, W) to trace the model.",
                stacklevel=3,
            )
            return None

    def num_pruned(self) -> list[int]:
        """floor(N · rate) per selected layer (a tiny slack absorbs 0.4 · 10 = 3.9999...)."""
        return [int(math.floor(conv.out_channels * self.rates[name] + 1e-9)) for name, conv in self.convs]

    @torch.no_grad()
    def compute_masks(self, criterion: Optional[Criterion] = None) -> dict[str, torch.Tensor]:
        """The keep-masks `criterion` (default: the current one) gives for the weights as they are now,
        without applying them."""
        criterion = criterion or self.criterion
        counts = self.num_pruned()
        weights = [conv.weight.detach() for _, conv in self.convs]
        scores = criterion(
            weights, num_pruned=counts, masks=[self.masks[n] for n, _ in self.convs], backend=self.backend
        )
        masks = {}
        for (name, _), score, count in zip(self.convs, scores, counts):
            if torch.isnan(score).any():
                raise ValueError(f"criterion {criterion.label!r} returned NaN scores for layer {name!r}")
            keep = torch.ones_like(score, dtype=torch.bool)
            if self.groups is None:
                keep[torch.sort(score, stable=True).indices[:count]] = False
            masks[name] = keep
        if self.groups is not None:  # coupled channels: scored and pruned together
            by_name = {name: score for (name, _), score in zip(self.convs, scores)}
            masks.update(group_masks(self.groups, by_name, self.rates))
        return masks

    @torch.no_grad()
    def step(self, held_out: Optional[tuple[torch.Tensor, torch.Tensor]] = None) -> StepRecord:
        """One pruning step: score, (switch,) zero the weakest filters. `held_out` = (inputs, targets)
        is needed only for switching with attribute="loss"."""
        start = time.perf_counter()
        record = StepRecord(step=self.steps, criterion=self.criterion.label)
        if len(self.candidates) > 1:
            masks, record = self._switch(held_out, record)
        else:
            criterion = self.candidates[0] if self.candidates else self.criterion
            masks = self.compute_masks(criterion)
            record.criterion = criterion.label
            record.scoring_seconds = time.perf_counter() - start
        masks, record.criterion = _broadcast_from_rank0(masks, record.criterion)
        if len(self.candidates) > 1:  # follow rank 0's choice (a no-op outside torch.distributed)
            self.criterion = next(c for c in self.candidates if c.label == record.criterion)
        self.set_masks(masks)
        record.pruned = sum(int((~m).sum()) for m in self.masks.values())
        record.filters = sum(m.numel() for m in self.masks.values())
        self.history.append(record)
        self.steps += 1
        return record

    def _switch(self, held_out, record: StepRecord) -> tuple[dict[str, torch.Tensor], StepRecord]:
        rate = resolve_attribute(self.attribute, held_out, self.loss_fn, self.backend)
        # _zero_pruned zeroes weights and biases, so both must be restored after each neighbour.
        backup = [(conv.weight.detach().clone(), _clone_or_none(conv.bias)) for _, conv in self.convs]
        best = None
        for candidate in self.candidates:
            start = time.perf_counter()
            masks = self.compute_masks(candidate)
            record.scoring_seconds += time.perf_counter() - start
            try:
                self._zero_pruned(masks)  # the neighbour network this candidate proposes
                value = float(rate(self.model, masks, self.convs))
            finally:
                for (_, conv), (weight, bias) in zip(self.convs, backup):
                    conv.weight.copy_(weight)
                    if bias is not None:
                        conv.bias.copy_(bias)
            record.attributes[candidate.label] = value
            if best is None or value < best[0]:  # ties keep the earlier candidate
                best = (value, candidate, masks)
        assert best is not None
        self.criterion = best[1]
        record.criterion = best[1].label
        return best[2], record

    # ---- applying masks ----------------------------------------------------------------------------

    @torch.no_grad()
    def set_masks(self, masks: Mapping[str, torch.Tensor]) -> None:
        """Adopt `masks` ({conv name: (N,) bool, True = kept}) and zero the pruned filters (in hard mode
        also their optimizer state)."""
        for name, conv in self.convs:
            if name not in masks:
                raise ValueError(f"masks: no mask for layer {name!r}")
            mask = masks[name]
            if (
                not isinstance(mask, torch.Tensor)
                or mask.dtype != torch.bool
                or mask.shape != (conv.out_channels,)
            ):
                raise ValueError(f"masks[{name!r}]: expected a bool tensor of shape ({conv.out_channels},)")
            self.masks[name].copy_(mask)
        self.apply_masks()

    @torch.no_grad()
    def apply_masks(self) -> None:
        """Zero the pruned filters' weights and bias (and, in hard mode, their optimizer state)."""
        if self._keeper is not None:  # hard mode: weights, bias and optimizer state
            self._keeper.apply()
        else:
            self._zero_pruned(self.masks)

    @torch.no_grad()
    def _zero_pruned(self, masks: Mapping[str, torch.Tensor]) -> None:
        for name, conv in self.convs:
            keep = masks[name].to(conv.weight.dtype)
            conv.weight.mul_(keep.view(-1, *([1] * (conv.weight.dim() - 1))))
            if conv.bias is not None:
                conv.bias.mul_(keep)

    def remove_hooks(self) -> None:
        """Stop hard mode's masking of gradients and optimizer state (masks and weights stay as they are)."""
        if self._keeper is not None:
            self._keeper.remove()
            self._keeper = None

    @torch.no_grad()
    def finalize(self) -> None:
        """Make the pruning final: zero the pruned filters and the scale and shift of the BatchNorm that
        follows each pruned conv, so the pruned channels are exactly zero (what `count_flops` counts
        as removed and `compact` removes). Soft pruning leaves BN alone during training, since a zero
        BN scale would stop the filter from ever recovering."""
        self._zero_pruned(self.masks)
        for name, _ in self.convs:
            bn = following_batchnorm(self.model, name)
            if bn is not None and bn.affine:
                keep = self.masks[name].to(bn.weight.dtype)
                bn.weight.mul_(keep)
                bn.bias.mul_(keep)

    # ---- reporting and checkpoints -----------------------------------------------------------------

    def kept_filters(self) -> dict[str, int]:
        """{conv name: filters kept}."""
        return {name: int(mask.sum()) for name, mask in self.masks.items()}

    def pruned_share(self) -> float:
        """Pruned filters / filters, over the selected layers."""
        total = sum(m.numel() for m in self.masks.values())
        return sum(int((~m).sum()) for m in self.masks.values()) / max(total, 1)

    def state_dict(self) -> dict[str, Any]:
        """Masks, step count, current criterion and history (checkpoint with the model and optimizer)."""
        return {
            "masks": {name: mask.cpu().clone() for name, mask in self.masks.items()},
            "steps": self.steps,
            "criterion": {"name": self.criterion.name, "options": self.criterion.options},
            "history": [asdict(r) for r in self.history],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what `state_dict` saved (the weights come from the model's own state dict)."""
        masks = state["masks"]
        if set(masks) != set(self.masks):
            raise ValueError(
                f"state: its masks cover layers {sorted(masks)}, this pruner selects {sorted(self.masks)}"
            )
        for name, mask in masks.items():
            if (
                not isinstance(mask, torch.Tensor)
                or mask.dtype != torch.bool
                or mask.shape != self.masks[name].shape
            ):
                shape = tuple(self.masks[name].shape)
                raise ValueError(f"state['masks'][{name!r}]: expected a bool tensor of shape {shape}")
        for name, mask in masks.items():
            self.masks[name].copy_(mask.to(self.masks[name].device))
        self.steps = int(state["steps"])
        self.criterion = get_criterion(state["criterion"]["name"], **state["criterion"]["options"])
        self.history = [StepRecord(**r) for r in state["history"]]


def _is_resnet(model: nn.Module) -> bool:
    """A ResNet the native analysis handles: its convs are pruned on their own (compaction keeps a
    residual channel while any contributor lives), the papers' way."""
    try:
        channel_liveness(model)
        return True
    except UnsupportedModelError:
        return False


def _every_conv(_name: str, _conv: nn.Conv2d) -> bool:
    return True


def _clone_or_none(tensor: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return None if tensor is None else tensor.detach().clone()


def _broadcast_from_rank0(masks: dict[str, torch.Tensor], label: str) -> tuple[dict[str, torch.Tensor], str]:
    """Every rank adopts rank 0's masks and criterion label (a no-op outside torch.distributed)."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return masks, label
    names = list(masks)
    flat = torch.cat([masks[n] for n in names]).to(torch.uint8)
    if dist.get_backend() == "nccl":
        flat = flat.cuda()
    dist.broadcast(flat, src=0)
    labels = [label]
    dist.broadcast_object_list(labels, src=0)
    parts = torch.split(flat.to(masks[names[0]].device).bool(), [masks[n].numel() for n in names])
    return dict(zip(names, parts)), labels[0]
