"""Channel liveness of any CNN that Torch-Pruning's DependencyGraph can trace (VGG, MobileNet, DenseNet-style
concatenations, your own models): the rules of :mod:`fastprune.pruning.channels`, on the traced graph.

The graph comes from ``torch_pruning.DependencyGraph`` (one forward pass of an example input, traced
through autograd): modules (convs, BN, linear) and functional ops (adds, concatenations, activations,
pooling, reshapes) in data-flow order. Channel states (``NaN`` LIVE, ``0`` ZERO, else a known constant)
flow through it:

* ``nn.Conv2d`` with ``groups`` g, weight (O, C/g, kh, kw): filter o (group o // (O/g)) is removed iff
  every nonzero kernel ``W[o, j]`` reads a ZERO channel (channel ``(o // (O/g)) * C/g + j``) and its bias
  is absent or zero; input channel c is alive iff it is not ZERO and a kept filter of its group has a
  nonzero kernel on it. ``nn.Linear`` likewise (a 1x1 conv on features); a flattened map gives each
  channel's state to its ``H * W`` features.
* BatchNorm (eval), ReLU / ReLU6 / LeakyReLU / SiLU / Sigmoid / Tanh / GELU / Hardswish / Hardsigmoid map
  constants to constants (computed by the same torch function, in the model's dtype), LIVE stays LIVE.
* ``+`` / ``-`` of two maps combine states (ZERO iff ZERO in both); ``*`` of two maps is ZERO where either
  is; concatenation concatenates states; max pooling, adaptive / global average pooling and reshapes keep
  them; average pooling with zero padding counted makes constants LIVE (they vary at the borders).
* Anything else (an unknown op, a channel shuffle, a split, LayerNorm, ...): every output channel LIVE,
  ZERO included. This never calls a live channel dead; it can only count more than what runs.

Layers whose output reaches a network output through other ops only keep every output (they are the
logits, or the channels of a returned feature map). Layers are keyed by
their ``model.named_modules()`` names, in data-flow order; ``LayerLiveness.groups`` holds the conv's
groups. Requires ``torch-pruning`` (a dependency of fastprune).
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fastprune.models._blocks import ShortcutA
from fastprune.pruning.channels import (
    ChannelLiveness,
    LayerLiveness,
    UnsupportedModelError,
    batchnorm_state,
    kernel_liveness,
)

_LIVE = float("nan")
_LAYERS = (nn.Conv2d, nn.Linear)


def _keep_live(
    function: Callable[[torch.Tensor], torch.Tensor],
) -> Callable[[torch.Tensor, Any], torch.Tensor]:
    """f applied to the constants of a state vector (LIVE stays LIVE)."""

    def apply(state: torch.Tensor, _grad_fn: Any) -> torch.Tensor:
        return torch.where(torch.isnan(state), state, function(torch.nan_to_num(state)))

    return apply


def _hardtanh(state: torch.Tensor, grad_fn: Any) -> torch.Tensor:
    low, high = float(grad_fn._saved_min_val), float(grad_fn._saved_max_val)
    return _keep_live(lambda x: x.clamp(low, high))(state, grad_fn)


def _leaky_relu(state: torch.Tensor, grad_fn: Any) -> torch.Tensor:
    slope = float(grad_fn._saved_negative_slope)
    return _keep_live(lambda x: F.leaky_relu(x, slope))(state, grad_fn)


def _gelu(state: torch.Tensor, grad_fn: Any) -> torch.Tensor:
    approximate = str(getattr(grad_fn, "_saved_approximate", "none"))
    return _keep_live(lambda x: F.gelu(x, approximate=approximate))(state, grad_fn)


def _same(state: torch.Tensor, _grad_fn: Any) -> torch.Tensor:
    return state


def _avg_pool(state: torch.Tensor, grad_fn: Any) -> torch.Tensor:
    padding = tuple(getattr(grad_fn, "_saved_padding", ()) or ())
    if any(int(p) for p in padding) and bool(getattr(grad_fn, "_saved_count_include_pad", True)):
        return torch.where(state == 0, state, torch.full_like(state, _LIVE))  # constants vary at borders
    return state


def _slice(state: torch.Tensor, grad_fn: Any) -> torch.Tensor:
    sizes = tuple(grad_fn._saved_self_sym_sizes)
    if len(sizes) < 2 or int(grad_fn._saved_dim) != 1:
        return state  # a spatial (or batch) slice keeps every channel's state
    picked = range(sizes[1])[int(grad_fn._saved_start) : int(grad_fn._saved_end) : int(grad_fn._saved_step)]
    if state.numel() != sizes[1]:
        return torch.full((len(picked),), _LIVE, dtype=state.dtype)
    return state[list(picked)]


def _shortcut_a(state: torch.Tensor, module: ShortcutA) -> torch.Tensor:
    """fastprune's option-A shortcut: subsampled channels, zero channels padded around them."""
    out = torch.zeros(module.out_channels, dtype=state.dtype)
    out[module.pad_before : module.pad_before + module.in_channels] = state
    return out


# One-input ops by autograd node name (without the trailing version digit).
_UNARY: dict[str, Callable[[torch.Tensor, Any], torch.Tensor]] = {
    "ReluBackward": _keep_live(torch.relu),
    "HardtanhBackward": _hardtanh,
    "LeakyReluBackward": _leaky_relu,
    "SiluBackward": _keep_live(F.silu),
    "SigmoidBackward": _keep_live(torch.sigmoid),
    "TanhBackward": _keep_live(torch.tanh),
    "GeluBackward": _gelu,
    "HardswishBackward": _keep_live(F.hardswish),
    "HardsigmoidBackward": _keep_live(F.hardsigmoid),
    "MaxPool2DWithIndicesBackward": _same,
    "AdaptiveMaxPool2DBackward": _same,
    "AdaptiveAvgPool2DBackward": _same,
    "MeanBackward": _same,
    "AvgPool2DBackward": _avg_pool,
    "CloneBackward": _same,
    "ViewBackward": _same,
    "ReshapeAliasBackward": _same,
    "UnsafeViewBackward": _same,
    "SliceBackward": _slice,
}


def _op_name(grad_fn: Any) -> str:
    return grad_fn.name().rstrip("0123456789") if grad_fn is not None else ""


# Modules whose output this analysis reads as a whole (their inner ops, e.g. a channel pad, carry
# values autograd does not keep), by type.
_MODULES: dict[type, Callable[[torch.Tensor, Any], torch.Tensor]] = {ShortcutA: _shortcut_a}


def _binary(name: str, a: torch.Tensor, b: torch.Tensor) -> Optional[torch.Tensor]:
    if a.numel() != b.numel():
        return None
    if name == "AddBackward":
        return a + b
    if name == "SubBackward":
        return a - b
    if name == "MulBackward":
        return torch.where((a == 0) | (b == 0), torch.zeros_like(a), a * b)
    return None


def _topological(nodes: Sequence[Any]) -> list[Any]:
    """Nodes in data-flow order (Kahn; ties in the graph's own order)."""
    members = set(nodes)
    pending = {node: sum(1 for i in node.inputs if i in members) for node in nodes}
    ready = [node for node in nodes if pending[node] == 0]
    order = []
    while ready:
        node = ready.pop(0)
        order.append(node)
        for out in node.outputs:
            if out in pending:
                pending[out] -= 1
                if pending[out] == 0:
                    ready.append(out)
    if len(order) != len(nodes):
        raise UnsupportedModelError("the traced graph has a cycle")
    return order


def trace_graph(model: nn.Module, example_input: torch.Tensor) -> tuple[Any, dict[Any, nn.Module]]:
    """Torch-Pruning's DependencyGraph of `model` for `example_input` (eval mode, training flags restored),
    and the modules whose rules this analysis knows (:data:`_MODULES`) by the autograd node of their
    output."""
    try:
        import torch_pruning as tp
    except ImportError as error:  # pragma: no cover - a dependency
        raise UnsupportedModelError(
            "models other than fastprune's ResNets need torch-pruning (pip install torch-pruning)"
        ) from error
    flags = {m: m.training for m in model.modules()}
    outputs: dict[Any, nn.Module] = {}
    handles = [
        m.register_forward_hook(lambda m, _i, out: outputs.__setitem__(getattr(out, "grad_fn", None), m))
        for m in model.modules()
        if isinstance(m, tuple(_MODULES))
    ]
    try:
        model.eval()
        return tp.DependencyGraph().build_dependency(model, example_inputs=example_input), outputs
    except Exception as error:
        raise UnsupportedModelError(
            f"{type(model).__name__}: Torch-Pruning's DependencyGraph cannot trace it ({error})"
        ) from error
    finally:
        for handle in handles:
            handle.remove()
        for m, flag in flags.items():
            m.training = flag


def graph_liveness(model: nn.Module, example_input: torch.Tensor) -> ChannelLiveness:
    """Channel liveness of every Conv2d and Linear of `model` (see the module docstring), traced with
    `example_input` (N, C, H, W); ``output_state`` is the state of what the last layer reads."""
    import torch_pruning as tp

    graph, known = trace_graph(model, example_input)
    names = {module: name for name, module in model.named_modules()}
    dtype = example_input.dtype
    layers: dict[str, LayerLiveness] = {}
    states: dict[Any, torch.Tensor] = {}
    last_input = torch.zeros(0, dtype=dtype)
    optype = tp.ops.OPTYPE
    nodes = list(graph.module2node.values())
    outputs = output_layers(nodes)
    with torch.no_grad():
        for node in _topological(nodes):
            module, inputs = node.module, [states[i] for i in node.inputs if i in states]
            feeds_output = node in outputs
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                name = names.get(module, str(module))
                layer = _layer(name, module, inputs, feeds_output, dtype)
                layers[name] = layer
                last_input = layer.in_state
                states[node] = layer.out_state
            elif isinstance(module, nn.modules.batchnorm._BatchNorm):
                name = names.get(module, str(module))
                state = inputs[0] if inputs else torch.full((module.num_features,), _LIVE, dtype=dtype)
                if state.numel() != module.num_features:
                    raise UnsupportedModelError(
                        f"{name}: {module.num_features} features for a {state.numel()}-channel map"
                    )
                states[node] = batchnorm_state(module, state, dtype)
                producer = node.inputs[0] if node.inputs else None
                # the BN of a conv / linear layer whose output it alone reads
                if (
                    producer is not None
                    and isinstance(producer.module, _LAYERS)
                    and len(producer.outputs) == 1
                ):
                    owner = layers[names[producer.module]]
                    owner.bn, owner.out_state = name, states[node]
            elif node.type == optype.CONCAT and inputs:
                states[node] = torch.cat(inputs)
            elif not inputs:
                continue  # a parameter's own op (e.g. a linear weight's transpose)
            elif node.grad_fn in known and len(inputs) == 1:
                states[node] = _MODULES[type(known[node.grad_fn])](inputs[0], known[node.grad_fn])
            else:
                states[node] = _elementwise(node, inputs)
    return ChannelLiveness(layers, last_input)


def output_layers(nodes: Sequence[Any]) -> set[Any]:
    """The conv / linear nodes whose output reaches a network output through other ops only (BN,
    activations, adds, concatenations, pooling): their channels are outputs and are never removed."""
    import torch_pruning as tp

    stack = [n for n in nodes if not n.outputs or all(o.type == tp.ops.OPTYPE.OUTPUT for o in n.outputs)]
    seen: set[Any] = set()
    layers: set[Any] = set()
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        if isinstance(node.module, (nn.Conv2d, nn.Linear)):
            layers.add(node)
        else:
            stack.extend(node.inputs)
    return layers


def _elementwise(node: Any, inputs: list[torch.Tensor]) -> torch.Tensor:
    name = _op_name(node.grad_fn)
    if len(inputs) == 1 and name in _UNARY:
        return _UNARY[name](inputs[0], node.grad_fn)
    if len(inputs) == 2:
        combined = _binary(name, inputs[0], inputs[1])
        if combined is not None:
            return combined
    return torch.full_like(inputs[0], _LIVE)  # unknown: every channel LIVE (never wrongly dead)


def _layer(
    name: str, module: nn.Module, inputs: list[torch.Tensor], feeds_output: bool, dtype: torch.dtype
) -> LayerLiveness:
    is_conv = isinstance(module, nn.Conv2d)
    in_channels = module.in_channels if is_conv else module.in_features
    out_channels = module.out_channels if is_conv else module.out_features
    state = inputs[0] if inputs else torch.full((in_channels,), _LIVE, dtype=dtype)
    if not is_conv and state.numel() != in_channels and state.numel() and in_channels % state.numel() == 0:
        state = state.repeat_interleave(in_channels // state.numel())  # a flattened (C, H, W) map
    if state.numel() != in_channels:
        raise UnsupportedModelError(f"{name}: reads {state.numel()} channels but expects {in_channels}")
    weight = module.weight.detach()
    groups = module.groups if is_conv else 1
    kernel_nonzero = weight.ne(0).flatten(2).any(-1).cpu() if is_conv else weight.ne(0).cpu()
    bias = module.bias.detach().cpu() if module.bias is not None else None
    alive_in, alive_out = kernel_liveness(kernel_nonzero, bias, state, groups)
    if feeds_output:
        alive_out = torch.ones_like(alive_out)  # the network's outputs stay
    raw = torch.where(alive_out, _LIVE, 0.0).to(dtype)
    return LayerLiveness(
        name, "conv" if is_conv else "linear", in_channels, out_channels, alive_in, alive_out, state, raw,
        groups=groups,
    )  # fmt: skip
