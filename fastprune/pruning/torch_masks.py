"""fastprune's masks in PyTorch's standard pruning format (`torch.nn.utils.prune`), both ways.

    export_masks(model, masks)      fastprune masks -> `weight_orig` / `weight_mask` on each layer
    import_masks(model)             any torch-pruned model -> fastprune masks (remove=True: made final)
    materialized(model)             a copy with every torch-prune reparametrisation removed

fastprune's masks are boolean keep-masks (True = kept) per layer name, in one of three shapes:

    (O,)              filter mask: SoftFilterPruner's `masks` (a False row prunes a whole filter/neuron);
    (O, C/groups)     kernel mask: KernelPruner's `compute_masks()` (a False entry prunes one k x k kernel);
    weight.shape      unstructured mask (single weights).

torch keeps a float mask of the full weight shape in the buffer `weight_mask` and the unpruned weights in
the parameter `weight_orig`; a forward pre-hook recomputes `weight = weight_orig * weight_mask`.
"""

from __future__ import annotations

import copy
from typing import Mapping, Optional

import torch
from torch import nn
from torch.nn.utils import prune

FORMATS = ("torch",)
_LAYER_TYPES = (nn.Conv2d, nn.Linear)


def _expand(mask: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """A (O,), (O, C/groups) or full-shape bool mask as a float mask of `weight`'s shape."""
    view = mask.to(weight.device).reshape(*mask.shape, *([1] * (weight.dim() - mask.dim())))
    return view.expand(weight.shape).to(weight.dtype).contiguous()


def _structure_of_zeros(layer: nn.Module) -> torch.Tensor:
    """The keep-mask the model's zeros say: (O, C/groups) kernels of a conv (a whole-zero filter is a
    row of False), (O,) neurons of a linear layer. Single zero weights inside live kernels are kept."""
    weight = layer.weight.detach()
    if isinstance(layer, nn.Linear):
        return weight.ne(0).any(dim=1)
    return weight.flatten(2).ne(0).any(dim=2)


def _check_mask(name: str, layer: nn.Module, mask: object) -> torch.Tensor:
    weight = layer.weight
    shapes = [tuple(weight.shape[:1]), tuple(weight.shape[:2]), tuple(weight.shape)]
    allowed = " or ".join(str(s) for s in dict.fromkeys(shapes))
    if not isinstance(mask, torch.Tensor):
        raise ValueError(f"masks[{name!r}]: expected a bool tensor, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise ValueError(f"masks[{name!r}]: expected a bool tensor (True = kept), got dtype {mask.dtype}")
    if tuple(mask.shape) not in shapes:
        raise ValueError(f"masks[{name!r}]: expected shape {allowed}, got {tuple(mask.shape)}")
    return mask


def export_masks(
    model: nn.Module, masks: Optional[Mapping[str, torch.Tensor]] = None, format: str = "torch"
) -> nn.Module:
    """Install fastprune keep-masks on `model` as `torch.nn.utils.prune.custom_from_mask` masks.

    Args:
        model: the network, changed in place: every masked layer gets the parameter `weight_orig`, the
            buffer `weight_mask` (float, the weight's full shape) and torch's forward pre-hook.
        masks: {module name: bool mask, True = kept} for Conv2d / Linear modules, each of shape (O,)
            (filters / neurons), (O, C/groups) (kernels) or the weight's full shape. None: derived from
            the model's current zeros, on every Conv2d and Linear layer: a conv kernel whose weights are
            all zero is pruned (so an all-zero filter is a pruned filter), a linear layer's all-zero row
            is a pruned neuron; nothing finer (the structure SoftFilterPruner and KernelPruner leave).
            Layers with nothing pruned get an all-ones mask, as torch's global pruning does.
        format: "torch" (the only one so far).
    Returns:
        `model`. A layer already pruned by torch gets the new mask combined with its old one (torch's
        PruningContainer).
    """
    if format not in FORMATS:
        raise ValueError(f"format: expected one of {', '.join(map(repr, FORMATS))}, got {format!r}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    modules = dict(model.named_modules())
    if masks is None:
        layers = {name: m for name, m in modules.items() if isinstance(m, _LAYER_TYPES)}
        if not layers:
            raise ValueError(f"model: {type(model).__name__} has no Conv2d or Linear layer to mask")
        masks = {name: _structure_of_zeros(layer) for name, layer in layers.items()}
    elif not isinstance(masks, Mapping):
        raise TypeError(f"masks: expected a dict {{module name: bool mask}}, got {type(masks).__name__}")
    elif not masks:
        raise ValueError("masks: empty (pass None to derive the masks from the model's zeros)")
    checked = {}
    for name, mask in masks.items():
        layer = modules.get(name)
        if layer is None:
            raise ValueError(f"masks: {name!r} is not a module of the model")
        if not isinstance(layer, _LAYER_TYPES):
            raise ValueError(f"masks: {name!r} is a {type(layer).__name__}, not a Conv2d or Linear layer")
        checked[name] = _check_mask(name, layer, mask)
    for name, mask in checked.items():  # validated first: an error leaves the model as it was
        layer = modules[name]
        prune.custom_from_mask(layer, "weight", _expand(mask, layer.weight.detach()))
    return model


def _pruned_tensors(module: nn.Module) -> list[str]:
    """Names of the tensors of `module` that torch.nn.utils.prune reparametrised (`weight`, `bias`...)."""
    return [
        hook._tensor_name
        for hook in module._forward_pre_hooks.values()
        if isinstance(hook, prune.BasePruningMethod)
    ]


def fastprune_mask(mask: torch.Tensor) -> torch.Tensor:
    """A full-shape torch mask in fastprune's form, the coarsest structure it has (bool, True = kept):
    (O,) when every filter is wholly kept or wholly pruned, else (O, C/groups) when every kernel is
    (weights of 3 or more dims), else the full-shape mask."""
    keep = mask.detach() != 0
    if keep.dim() < 2:
        return keep.clone()
    rows = keep.flatten(1)
    if torch.equal(rows.all(dim=1), rows.any(dim=1)):
        return rows.any(dim=1)
    if keep.dim() > 2:
        kernels = keep.flatten(2)
        if torch.equal(kernels.all(dim=2), kernels.any(dim=2)):
            return kernels.any(dim=2)
    return keep.clone()


def import_masks(model: nn.Module, remove: bool = False) -> dict[str, torch.Tensor]:
    """The weight masks of every module of `model` pruned with `torch.nn.utils.prune` (custom_from_mask,
    ln_structured, l1_unstructured, random_structured, global_unstructured, ... : any pruning method with
    a `weight_mask`), in fastprune's form.

    Returns:
        {module name: bool mask, True = kept}: (O,) when the mask prunes whole filters only, else
        (O, C/groups) when it prunes whole kernels only, else the weight's full shape (unstructured).
    remove: also make the pruning permanent (`torch.nn.utils.prune.remove` on every pruned tensor of
        every module, a pruned `bias` included): a plain `weight` parameter holding the zeros, no
        `*_orig` / `*_mask`, no hooks. The masks are read before.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    masks = {}
    for name, module in model.named_modules():
        tensors = _pruned_tensors(module)
        if "weight" in tensors and isinstance(getattr(module, "weight_mask", None), torch.Tensor):
            masks[name] = fastprune_mask(module.weight_mask)
        if remove:
            for tensor in tensors:
                prune.remove(module, tensor)
    return masks


def has_torch_masks(model: nn.Module) -> bool:
    """Whether any module of `model` carries torch.nn.utils.prune masks (``*_orig`` / ``*_mask``)."""
    return any(_pruned_tensors(module) for module in model.modules())


def materialized(model: nn.Module) -> nn.Module:
    """A deep copy of `model` with every torch-prune reparametrisation removed: each pruned tensor is a
    plain parameter again, equal to `*_orig * *_mask` (no hooks, no `*_orig` / `*_mask`); `model` itself
    is untouched. A model pruned by other tools, ready for count_flops and compact."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    # The pruned tensors are computed (non-leaf) tensors, which deepcopy refuses; copy stand-ins instead,
    # prune.remove below recomputes them from *_orig and *_mask.
    memo: dict[int, object] = {}
    for module in model.modules():
        for tensor in _pruned_tensors(module):
            value = getattr(module, tensor, None)
            if isinstance(value, torch.Tensor):
                memo[id(value)] = value.detach().clone()
    copied = copy.deepcopy(model, memo)
    for module in copied.modules():
        for tensor in _pruned_tensors(module):
            prune.remove(module, tensor)
    return copied
