"""FLOPs of a masked ResNet: an exact count of the network as it is, and the papers' analytic convention.

Exact count (:func:`count_flops`), per input sample, multiply-accumulates (MACs; 1 MAC = 2 FLOPs):

    conv:  alive_out * alive_in * k_h * k_w * H_out * W_out        (groups == 1)
    FC:    out_features * alive_in_features
    .macs = conv + FC;  .conv_macs = convs only;  BN, ReLU, pooling and the residual adds are not counted.

``alive_in``/``alive_out`` come from :func:`fastprune.pruning.channels.channel_liveness` (removed
filters, channels zero for certain); ``H_out, W_out`` from a shape-only forward pass (meta tensors) with
hooks. Parameters are counted for the alive part: conv weights ``alive_out * alive_in * k_h * k_w`` (+
bias of alive filters), BN gamma/beta of the alive filters of the conv it follows, FC weights of alive
input features (+ the whole bias); any other parameter counts in full. ``dense_*`` are the same counts
with everything alive. This is what a compacted dense network of those widths costs (kernel-level zeros
inside the alive block still count), not the published convention: see :func:`paper_flops_reduction`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import torch
from torch import nn

from fastprune.pruning.channels import ChannelLiveness, UnsupportedModelError, channel_liveness
from fastprune.pruning.torch_masks import has_torch_masks, materialized

__all__ = [
    "FlopsRow",
    "FlopsReport",
    "count_flops",
    "count_dense_flops",
    "paper_macs",
    "paper_flops_reduction",
]


@dataclass
class FlopsRow:
    """One layer: MACs per sample and parameters, for the masked network and dense."""

    name: str
    type: str
    macs: int
    params: int
    dense_macs: int
    dense_params: int
    shape: str = ""  # e.g. "16->16 3x3 @32x32" (alive/total where pruned)
    # Convs: the MACs of a kernel-skipping convolution (alive pairs whose k x k kernel is not all zero);
    # None: the same as macs (other layers, and counts that see channels only).
    kernel_macs: Optional[int] = None


@dataclass
class FlopsReport:
    input_shape: tuple[int, int, int]
    rows: list[FlopsRow] = field(default_factory=list)
    params: int = 0
    dense_params: int = 0

    def _sum(self, attr: str, types: Sequence[str]) -> int:
        return sum(getattr(row, attr) for row in self.rows if row.type in types)

    @property
    def conv_macs(self) -> int:
        return self._sum("macs", ("Conv2d",))

    @property
    def dense_conv_macs(self) -> int:
        return self._sum("dense_macs", ("Conv2d",))

    @property
    def fc_macs(self) -> int:
        return self._sum("macs", ("Linear",))

    @property
    def macs(self) -> int:
        """Conv + FC MACs per sample."""
        return self._sum("macs", ("Conv2d", "Linear"))

    @property
    def dense_macs(self) -> int:
        return self._sum("dense_macs", ("Conv2d", "Linear"))

    @property
    def kernel_macs(self) -> int:
        """Conv + FC MACs per sample when convs also skip their all-zero k x k kernels (kernel-level
        sparsity, which the structural count above cannot remove)."""
        rows = [r for r in self.rows if r.type in ("Conv2d", "Linear")]
        return sum(r.macs if r.kernel_macs is None else r.kernel_macs for r in rows)

    @property
    def macs_reduction(self) -> float:
        """1 - macs / dense_macs (conv + FC)."""
        return 1.0 - self.macs / self.dense_macs if self.dense_macs else 0.0

    @property
    def conv_macs_reduction(self) -> float:
        return 1.0 - self.conv_macs / self.dense_conv_macs if self.dense_conv_macs else 0.0

    @property
    def params_reduction(self) -> float:
        return 1.0 - self.params / self.dense_params if self.dense_params else 0.0

    def __str__(self) -> str:
        head = (
            f"{'layer':<26} {'type':<11} {'shape':<30} {'MACs':>14} {'dense MACs':>14} "
            f"{'params':>11} {'dense':>11}"
        )
        lines = [head, "-" * len(head)]
        for r in self.rows:
            lines.append(
                f"{r.name:<26} {r.type:<11} {r.shape:<30} {r.macs:>14,} {r.dense_macs:>14,} "
                f"{r.params:>11,} {r.dense_params:>11,}"
            )
        lines.append("-" * len(head))
        lines.append(
            f"input {self.input_shape}: MACs (conv+FC) {self.macs:,} of {self.dense_macs:,} "
            f"({100 * self.macs_reduction:.2f}% removed); conv MACs {self.conv_macs:,} of "
            f"{self.dense_conv_macs:,} ({100 * self.conv_macs_reduction:.2f}% removed); params "
            f"{self.params:,} of {self.dense_params:,} ({100 * self.params_reduction:.2f}% removed); "
            f"skipping all-zero kernels too: MACs {self.kernel_macs:,}"
        )
        return "\n".join(lines)


def _nonzero_alive_kernels(weight: torch.Tensor, layer: Any) -> int:
    """Pairs (filter o, input channel i) of a conv that are alive (both channels live) and whose k x k kernel
    W[o, i] is not all zero: what a kernel-skipping convolution computes."""
    out, per_group = weight.shape[:2]
    alive_in = layer.alive_in.cpu().view(layer.groups, 1, per_group).expand(-1, out // layer.groups, -1)
    kept = weight.detach().cpu().flatten(2).ne(0).any(2) & layer.alive_out.cpu()[:, None]
    return int((kept & alive_in.reshape(out, per_group)).sum())


def family_input_shape(
    family: object, small_input: bool = False, channels: int = 3
) -> Optional[tuple[int, int, int]]:
    """The default input (C, H, W) of a model family: CIFAR 32x32, ImageNet 224x224 (64x64 with the small-
    input stem); None for an unknown family."""
    if family == "cifar":
        return (channels, 32, 32)
    if family == "imagenet":
        return (channels, 64, 64) if small_input else (channels, 224, 224)
    return None


def _default_input_shape(model: nn.Module) -> tuple[int, int, int]:
    shape = family_input_shape(getattr(model, "family", None), bool(getattr(model, "small_input", False)))
    if shape is None:
        raise ValueError("count_flops: input_shape is required for a model without a known `family`")
    return shape


def resolve_input_shape(model: nn.Module, input_shape: Optional[Sequence[int]]) -> tuple[int, int, int]:
    """(C, H, W) from `input_shape` ((C, H, W) or (N, C, H, W)) or, when None, the model's ``family``."""
    if input_shape is None:
        return _default_input_shape(model)
    dims = tuple(int(d) for d in input_shape)
    if len(dims) == 4:
        dims = dims[1:]
    if len(dims) != 3 or min(dims) < 1:
        raise ValueError(
            f"count_flops: input_shape must be (C, H, W) or (N, C, H, W), got {tuple(input_shape)}"
        )
    return (dims[0], dims[1], dims[2])


def _output_sizes(
    model: nn.Module, shape: tuple[int, int, int], names: set[str]
) -> dict[str, tuple[int, ...]]:
    """Output shapes of the named modules for a (1, C, H, W) input: meta-tensor forward with hooks, or a
    real zero input in eval mode (training flags restored) if the model cannot run on meta tensors."""
    sizes: dict[str, tuple[int, ...]] = {}
    modules = dict(model.named_modules())
    handles = [
        modules[name].register_forward_hook(
            lambda _m, _i, out, name=name: sizes.__setitem__(name, tuple(out.shape))
        )
        for name in names
    ]
    try:
        try:
            tensors = {
                k: torch.empty_like(v, device="meta") for k, v in model.state_dict(keep_vars=True).items()
            }
            torch.func.functional_call(model, tensors, (torch.empty((1, *shape), device="meta"),))
        except Exception:  # noqa: BLE001 - fall back to a real forward pass
            sizes.clear()
            flags = {m: m.training for m in model.modules()}
            param = next(model.parameters(), None)
            x = torch.zeros((1, *shape), device=param.device if param is not None else "cpu")
            try:
                model.eval()
                with torch.no_grad():
                    model(x)
            finally:
                for m, flag in flags.items():
                    m.training = flag
    finally:
        for handle in handles:
            handle.remove()
    missing = names - set(sizes)
    if missing:
        raise ValueError(f"count_flops: layers not reached by the forward pass: {sorted(missing)}")
    return sizes


def count_flops(model: nn.Module, input_shape: Optional[Sequence[int]] = None) -> FlopsReport:
    """Exact MACs and parameters of a (masked) ResNet per input sample; see the module docstring.

    Args:
        model: a ResNet that :func:`fastprune.pruning.channels.channel_liveness` supports, or a compact
            model from :func:`fastprune.compact` (counted dense: everything in it is alive).
        input_shape: (C, H, W) or (N, C, H, W) (N is ignored: counts are per sample). Default (3, 32, 32)
            for ``model.family == "cifar"``, (3, 224, 224) for "imagenet" ((3, 64, 64) with small_input).
    Returns:
        :class:`FlopsReport` with ``.macs`` (conv + FC), ``.conv_macs``, ``.fc_macs``, ``.params``,
        their ``dense_*`` counterparts, ``.macs_reduction`` and per-layer ``.rows``.
    """
    if getattr(model, "compacted", False):  # a compact network: dense, everything in it is alive
        return count_dense_flops(model, input_shape)
    shape = resolve_input_shape(model, input_shape)
    if has_torch_masks(model):  # pruned with torch.nn.utils.prune: count the plain masked weights
        model = materialized(model)
    liveness = analyse_channels(model, shape)
    sizes = _output_sizes(model, shape, set(liveness.layers))
    modules = dict(model.named_modules())
    report = FlopsReport(input_shape=shape)
    removed_params = 0
    for layer in liveness:
        module = modules[layer.name]
        a_in, a_out = layer.n_alive_in, layer.n_alive_out
        bias = module.bias is not None
        if layer.kind == "conv":
            kh, kw = module.kernel_size
            h, w = sizes[layer.name][2:]
            dense_pairs = layer.out_channels * layer.in_channels // layer.groups
            pairs = layer.alive_pairs()
            dense_params, params = (
                dense_pairs * kh * kw + bias * layer.out_channels,
                pairs * kh * kw + bias * a_out,
            )
            shape_text = f"{_frac(a_in, layer.in_channels)}->{_frac(a_out, layer.out_channels)} {kh}x{kw}"
            shape_text += f" @{h}x{w}" + (f" g{layer.groups}" if layer.groups > 1 else "")
            row = FlopsRow(
                layer.name, "Conv2d", pairs * kh * kw * h * w, params, dense_pairs * kh * kw * h * w,
                dense_params, shape_text, _nonzero_alive_kernels(module.weight, layer) * kh * kw * h * w,
            )  # fmt: skip
        else:
            dense_params = layer.out_channels * (layer.in_channels + bias)
            params = a_out * (a_in + bias)
            shape_text = f"{_frac(a_in, layer.in_channels)}->{_frac(a_out, layer.out_channels)}"
            row = FlopsRow(
                layer.name, "Linear", a_out * a_in, params, layer.out_channels * layer.in_channels,
                dense_params, shape_text,
            )  # fmt: skip
        report.rows.append(row)
        removed_params += dense_params - params
        if layer.bn is not None:
            bn = modules[layer.bn]
            per_channel = 2 if bn.weight is not None else 0
            dense_bn = per_channel * layer.out_channels
            kind = type(bn).__name__
            report.rows.append(FlopsRow(layer.bn, kind, 0, per_channel * a_out, 0, dense_bn))
            removed_params += dense_bn - per_channel * a_out
    report.dense_params = sum(p.numel() for p in model.parameters())
    report.params = report.dense_params - removed_params
    return report


def analyse_channels(model: nn.Module, shape: tuple[int, int, int]) -> ChannelLiveness:
    """Channel liveness of `model`: the ResNet analysis where it applies (no tracing), else the traced
    graph of any CNN (:func:`fastprune.pruning.graph_liveness.graph_liveness`) for a (1, *shape) input."""
    try:
        return channel_liveness(model)
    except UnsupportedModelError:
        from fastprune.pruning.graph_liveness import graph_liveness

        param = next(model.parameters(), None)
        example = torch.zeros(
            (1, *shape),
            device=param.device if param is not None else "cpu",
            dtype=param.dtype if param is not None else torch.float32,
        )
        return graph_liveness(model, example)


def count_dense_flops(model: nn.Module, input_shape: Optional[Sequence[int]] = None) -> FlopsReport:
    """MACs and parameters of any network counted dense (every channel alive; e.g. a compact one), per
    sample, in :func:`count_flops` terms: conv ``out * in/groups * kh * kw * H_out * W_out``, FC
    ``out * in``; params = every parameter. One forward pass of zeros with hooks (eval mode, no grad; the
    training flags are restored)."""
    shape = resolve_input_shape(model, input_shape)
    report = FlopsReport(input_shape=shape)

    def hook(module: nn.Module, _inp: Any, out: torch.Tensor, name: str) -> None:
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            macs = out[0].numel() * module.in_channels // module.groups * kh * kw
            kind = "Conv2d"
        else:
            macs, kind = module.in_features * module.out_features, "Linear"
        params = sum(p.numel() for p in module.parameters(recurse=False))
        report.rows.append(FlopsRow(name, kind, macs, params, macs, params))

    handles = [
        m.register_forward_hook(lambda mod, i, o, name=name: hook(mod, i, o, name))
        for name, m in model.named_modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    param = next(model.parameters(), None)
    flags = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *shape), device=param.device if param is not None else "cpu",
                              dtype=param.dtype if param is not None else torch.float32))  # fmt: skip
    finally:
        for h in handles:
            h.remove()
        for m, flag in flags.items():
            m.training = flag
    report.params = report.dense_params = sum(p.numel() for p in model.parameters())
    return report


def _frac(alive: int, total: int) -> str:
    return str(total) if alive == total else f"{alive}/{total}"


# ---------------------------------------------------------------- the papers' analytic convention

_CIFAR_DEPTHS = (20, 32, 44, 56, 110)
_IMAGENET_BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3)}


def _paper_terms(arch: str) -> list[tuple[float, int]]:
    """(dense conv MACs, exponent of r) for every term of the papers' counter for ``arch``."""
    key = str(arch).strip().lower()
    depth = int(key[6:]) if key.startswith("resnet") and key[6:].isdigit() else -1
    terms: list[tuple[float, int]] = []
    if depth in _CIFAR_DEPTHS:  # SFP's cifar_resnet_flop
        n = (depth - 2) // 6
        terms.append((3 * 16 * 9 * 32 * 32, 1))
        c_in = 16
        for j, (c, s) in enumerate(((16, 32), (32, 16), (64, 8))):
            for b in range(n):
                terms.append((c_in * c * 9 * s * s, 2 if (j == 0 and b == 0) else 1))
                terms.append((c * c * 9 * s * s, 2))
                c_in = c
        return terms
    if depth in _IMAGENET_BLOCKS:
        terms.append((3 * 64 * 49 * 112 * 112, 1))
        planes, sizes = (64, 128, 256, 512), (56, 28, 14, 7)
        if depth == 50:  # bottleneck counter: ResNet v1 layout (stride on the first 1x1 conv)
            c_in = 64
            for j, (p, s, blocks) in enumerate(zip(planes, sizes, _IMAGENET_BLOCKS[depth])):
                for b in range(blocks):
                    first_input_pruned = j == 0 and b == 0  # reads the pruned stem
                    terms.append((c_in * p * s * s, 2 if first_input_pruned else 1))
                    terms.append((p * p * 9 * s * s, 2))
                    terms.append((p * 4 * p * s * s, 2))
                    if b == 0:  # projection shortcut: output unpruned (input pruned only after the stem)
                        terms.append((c_in * 4 * p * s * s, 1 if first_input_pruned else 0))
                    c_in = 4 * p
            return terms
        # basic-block counter as released: no shortcut convs; the first conv of layer2 and layer4 is
        # charged with its narrower input, that of layer3 with a full-width one (an overwritten offset).
        for j, (p, s, blocks) in enumerate(zip(planes, sizes, _IMAGENET_BLOCKS[depth])):
            for b in range(blocks):
                c_first = planes[j - 1] if (b == 0 and j in (1, 3)) else p
                terms.append((c_first * p * 9 * s * s, 2 if (j == 0 and b == 0) else 1))
                terms.append((p * p * 9 * s * s, 2))
        return terms
    valid = [f"resnet{d}" for d in (*_CIFAR_DEPTHS, *_IMAGENET_BLOCKS)]
    raise ValueError(f"paper convention: unknown arch {arch!r}; valid: {', '.join(valid)}")


def _check_rate(rate: float) -> float:
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate):
        raise ValueError(f"rate must be a number in [0, 1), got {rate!r}")
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"rate must lie in [0, 1), got {rate}")
    return float(rate)


def paper_macs(arch: str, rate: float = 0.0) -> float:
    """Conv MACs of ``arch`` at filter pruning rate ``rate`` by the papers' analytic counter (no FC).

    ``sum_l dense_l * r ** e_l`` with ``r = 1 - rate``; see :func:`paper_flops_reduction` for e_l.
    Dense values: CIFAR ResNet-56 125,485,056; ResNet-110 252,887,040; ResNet-50 3,855,925,248.
    """
    r = 1.0 - _check_rate(rate)
    return float(sum(macs * r**e for macs, e in _paper_terms(arch)))


def paper_flops_reduction(arch: str, rate: float) -> float:
    """Fraction of conv MACs removed, ``1 - M(1 - rate) / M(1)``, by the convention of the SFP/FPGM/MFP
    papers' "FLOPs↓" columns (their released ``cifar_resnet_flop`` / ImageNet counters).

    ``M(r) = sum_l dense_l * r ** e_l`` over the convs: a continuous keep ratio ``r`` instead of integer
    channel counts, ``e_l = 1`` where only the output width is pruned and ``2`` where input and output are:

    * CIFAR ResNet-(6n+2) at 32x32 (``dense_l = C_in * C_out * 9 * H_out * W_out``): the stem e=1; both
      convs of the first block of stage 1 e=2 (it reads the pruned stem); in every other block the first
      conv e=1 (it reads the full-width residual stream) and the second e=2. The first conv of stages 2
      and 3 has the narrower input (16 or 32 channels; the "offset" of the released code).
    * ImageNet ResNet-50 (224x224, stride on the first 1x1 conv: the original v1 layout, 3.86e9 MACs
      dense, not the 4.09e9 of torchvision's v1.5): stem (7x7 at 112x112) e=1; per bottleneck 1x1 e=1
      (e=2 in the very first block, after the stem), 3x3 e=2, expanding 1x1 e=2; projection shortcuts
      unpruned (e=0; e=1 in layer1, whose input is the pruned stem).
    * ImageNet ResNet-18/34: as the CIFAR rule with stages at 56/28/14/7 and a 7x7 stem; as released,
      shortcuts are omitted and layer3's first conv keeps its full-width input term.

    Reproduces the published figures: ResNet-56 41.1% (30%), 52.6% (40%); ResNet-110 52.3% (40%);
    ResNet-50 42.2% (30%), 53.5% (40%); ResNet-18 41.8% and ResNet-34 41.1% (30%). A real network pruned
    to integer widths removes somewhat less; :func:`count_flops` gives that exact number.

    Raises:
        ValueError: unknown arch, or rate outside [0, 1).
    """
    terms = _paper_terms(arch)
    r = 1.0 - _check_rate(rate)
    dense = sum(macs for macs, _ in terms)
    return 1.0 - sum(macs * r**e for macs, e in terms) / dense
