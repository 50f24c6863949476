"""Which convs a filter pruner touches, and the BatchNorm that follows each of them."""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

from torch import nn

LayerSelection = Union[None, Sequence[str], Callable[[str, nn.Conv2d], bool]]

_SHORTCUT_WORDS = ("downsample", "shortcut")


def is_projection_shortcut(name: str) -> bool:
    """True for convs inside a ResNet projection shortcut (torchvision's `downsample`, or `shortcut`)."""
    return any(word in name.split(".") for word in _SHORTCUT_WORDS)


def default_filter_layers(name: str, conv: nn.Conv2d) -> bool:
    """The papers' default for filter pruning: every conv except projection shortcuts. On CIFAR ResNets
    (option-A shortcuts, no shortcut convs) that is every conv, the first included."""
    return not is_projection_shortcut(name)


def select_convs(model: nn.Module, layers: LayerSelection = None) -> list[tuple[str, nn.Conv2d]]:
    """The (name, conv) pairs to prune, in module order.

    layers: None (the papers' default, see `default_filter_layers`), a list of module names, or a
    predicate (name, conv) -> bool. Names that are not modules of `model`, or not Conv2d, are errors.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    modules = dict(model.named_modules())
    convs = [(name, m) for name, m in modules.items() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"model: {type(model).__name__} has no Conv2d layer to prune")
    if layers is None or callable(layers):
        keep = default_filter_layers if layers is None else layers
        selected = [(name, conv) for name, conv in convs if keep(name, conv)]
    else:
        if isinstance(layers, str):
            raise TypeError("layers: expected a list of module names, got a single string")
        selected = []
        for name in layers:
            if name not in modules:
                raise ValueError(f"layers: {name!r} is not a module of the model")
            if not isinstance(modules[name], nn.Conv2d):
                raise ValueError(f"layers: {name!r} is a {type(modules[name]).__name__}, not a Conv2d")
            selected.append((name, modules[name]))
        order = {name: i for i, (name, _) in enumerate(convs)}
        selected.sort(key=lambda item: order[item[0]])
    if not selected:
        raise ValueError("layers: no conv layer selected")
    return selected


def following_batchnorm(model: nn.Module, conv_name: str) -> Optional[nn.BatchNorm2d]:
    """The BatchNorm2d registered right after `conv_name` in module order with one feature per filter
    (conv1 -> bn1, downsample.0 -> downsample.1 in ResNets), or None."""
    names = [name for name, _ in model.named_modules()]
    modules = dict(model.named_modules())
    conv = modules[conv_name]
    position = names.index(conv_name)
    if position + 1 < len(names):
        candidate = modules[names[position + 1]]
        if isinstance(candidate, nn.BatchNorm2d) and candidate.num_features == conv.out_channels:
            return candidate
    return None
