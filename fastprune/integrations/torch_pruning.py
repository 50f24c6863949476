"""Torch-Pruning importances computed by fastprune's batched kernels, and soft pruning on its graph.

Torch-Pruning (TP) scores one group at a time: the ``(dep, idxs)`` pruned together (a conv's filters, its
BatchNorm, the next conv's inputs, ...). Each dep's 1-D scores are scattered into the root channels
(``group[i].root_idxs``), reduced over the deps (``group_reduction``) and normalised (``normalizer``), by
TP's own ``_reduce`` / ``_normalize``. The importances here keep that contract (they plug into
``tp.pruner.BasePruner`` / ``MetaPruner``) but score the whole network in ONE batched fastprune call per
pruning step instead of one small op per dep.

**Batching and caching.** The first call whose weights are not cached takes every conv/linear weight of
the group's graph (``group._DG.module2node``; a hand-made group: its own modules), builds its channel
rows in every orientation the importance uses and scores all of them in one call (``gm_scores``,
``filter_norms`` or ``kernel_scores``; one per device if the model spans several). Results are cached
under ``(id(weight), weight._version, data_ptr, shape)``: the step's other groups are lookups; after an
optimizer step or a pruner changed weights in place (``_version`` bumps) or replaced them (new id or
shape) the next call recomputes. Writes through ``weight.data`` do not bump ``_version``: call
``clear_cache()`` after them. FPGM sums distances over the dep's ``idxs`` only; behind concat / split /
padding index mappings (ResNet option-A shortcuts) that is a subset of the layer, scored as extra rows of
the same call once known: ``prepare(groups)`` learns them up front (SoftPruner does), otherwise the first
step spends one extra call per group that has them, and later steps one call in all.

**Grouped convs.** Conv W (O, C/g, k, k): out-channel o -> row W[o].flatten(); in-channel c (group
a = c // (C/g), c' = c mod C/g) -> row W[a·O/g:(a+1)·O/g, c'].flatten(), only the filters reading c.
TP's in-channel rows are W.transpose(0, 1).flatten(1) (C/g rows); for 1 < g it ``.repeat(groups)``s
them: FPGM raises on the 2-D tensor (IndexError when g = C != O), magnitude credits each input with other
groups' filters. TP skips depthwise convs (their handler is in neither of its lists): so do the
importances meant for parity with TP (``FPGMImportance(semantics="tp")``, ``NormImportance``), to take
the same decisions; the paper's FPGM and ``KernelImportance`` score channel c of a depthwise conv as the
filter row W[c].flatten(), like any filter. Transposed convs (C, O/g, k, k): the mirror image.
Everything else follows TP.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch_pruning as tp
from torch_pruning.pruner import function as tpf

from fastprune.criteria import filter_norms
from fastprune.ops import CRITERIA, gm_scores, kernel_scores
from fastprune.ops._small_matrix import MAX_N

__all__ = ["FPGMImportance", "KernelImportance", "NormImportance", "SoftPruner", "channel_rows"]

_CONV = nn.modules.conv._ConvNd
_OUT_FNS = (tpf.prune_conv_out_channels, tpf.prune_linear_out_channels, tpf.prune_depthwise_conv_out_channels)
_IN_FNS = (tpf.prune_conv_in_channels, tpf.prune_linear_in_channels)
_NORM_FNS = (tpf.prune_batchnorm_out_channels, tpf.prune_layernorm_out_channels)
_REDUCTIONS = ("mean", "sum", "max", "prod", "first", "gate")
_NORMALIZERS = ("mean", "sum", "max", "standarization", "gaussian", "lamp")
Normalizer = Union[str, Callable[[torch.Tensor], torch.Tensor], None]


def _choice(name: str, value: Any, choices: Sequence[Any]) -> None:
    if value not in choices:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, choices))}, got {value!r}")


def channel_rows(module: nn.Module, orientation: str, w: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Rows (channels, D) of a conv/linear weight, one per output ("out") or input ("in") channel.

    Linear W (O, C): out rows W, in rows Wᵀ. Conv W (O, C/g, *k): out row o = W[o].flatten(); in row c =
    W[a·O/g:(a+1)·O/g, c mod C/g].flatten() with a = c // (C/g) (only the filters of c's group). Transposed
    conv W (C, O/g, *k): the mirror image. `w` replaces the weight by a tensor with the same two leading
    dims (e.g. per-kernel scores (O, C/g)), rearranged the same way.
    """
    w = module.weight.detach() if w is None else w
    if isinstance(module, nn.Linear):
        return w if orientation == "out" else w.t()
    g, k = module.groups, w[0, 0].numel()
    if module.transposed == (orientation == "out"):  # regroup: (g, A/g, B, k) -> (g·B, A/g·k)
        a, b = w.shape[:2]
        return w.reshape(g, a // g, b, k).transpose(1, 2).reshape(g * b, (a // g) * k)
    return w.flatten(1)


def _num_channels(module: nn.Module, orientation: str) -> int:
    w = module.weight
    if isinstance(module, nn.Linear):
        return w.shape[0] if orientation == "out" else w.shape[1]
    return w.shape[1] * module.groups if module.transposed == (orientation == "out") else w.shape[0]


def _weight_key(w: torch.Tensor) -> tuple:
    return (id(w), w._version, w.data_ptr(), tuple(w.shape))


def _kind(dep: Any) -> Optional[str]:
    """'out' (conv/linear filters, depthwise convs), 'in' (conv/linear inputs), 'norm' (BN/LN) or None."""
    module, fn = dep.target.module, dep.handler
    if isinstance(module, (_CONV, nn.Linear)):
        return "out" if fn in _OUT_FNS else "in" if fn in _IN_FNS else None
    affine = getattr(module, "affine", getattr(module, "elementwise_affine", False))
    return "norm" if fn in _NORM_FNS and affine and module.weight is not None else None


def _per_device(rows: List[torch.Tensor], score: Callable[[List[torch.Tensor]], Sequence[torch.Tensor]]):
    """score(rows) -> one result per row tensor; one call per device (one call in the usual case)."""
    out: List[Optional[torch.Tensor]] = [None] * len(rows)
    for device in dict.fromkeys(r.device for r in rows):
        pos = [i for i, r in enumerate(rows) if r.device == device]
        for i, s in zip(pos, score([rows[i] for i in pos])):
            out[i] = s
    return out


class _BatchedImportance(tp.importance.GroupMagnitudeImportance):
    """Shared machinery: dep classification, the step cache, TP's group reduction and normaliser."""

    _orientations: Tuple[str, ...] = ("out",)
    _pairwise = False  # scores of a subset of rows differ from the subset of the scores (FPGM)
    _tp_parity = False  # skip what Torch-Pruning's own importance skips (depthwise convs)

    def __init__(self, group_reduction: Optional[str], normalizer: Normalizer, p: float = 2) -> None:
        _choice("group_reduction", group_reduction, _REDUCTIONS)
        sentinel = isinstance(normalizer, str) and normalizer.startswith("sentinel_")
        if not (normalizer is None or callable(normalizer) or sentinel or normalizer in _NORMALIZERS):
            choices = ", ".join(map(repr, _NORMALIZERS))
            raise ValueError(
                f"normalizer: expected None, a callable, 'sentinel_<q>' or {choices}, got {normalizer!r}"
            )
        super().__init__(p=p, group_reduction=group_reduction, normalizer=normalizer)
        self._scores: Dict[tuple, torch.Tensor] = {}
        self._subsets: Dict[tuple, weakref.ref] = {}  # learned (id(module), orientation, idxs) -> module

    def clear_cache(self) -> None:
        """Forget the cached scores (after weight writes that bypass autograd's version counter)."""
        self._scores = {}

    def _accepts(self, module: nn.Module) -> bool:
        return True

    def _compute(self, blocks: List[Tuple[nn.Module, str, Optional[tuple]]]) -> List[torch.Tensor]:
        """Scores of (module, orientation, idxs or None = every channel) blocks, in ONE batched call."""
        raise NotImplementedError

    def _items(self, group: Any) -> list:
        items = []
        for i, (dep, idxs) in enumerate(group):
            if self._tp_parity and dep.handler is tpf.prune_depthwise_conv_out_channels:
                continue
            kind, module = _kind(dep), dep.target.module
            if kind not in self._orientations or (kind != "norm" and not self._accepts(module)):
                continue
            idxs = list(idxs)
            key = None
            if kind != "norm":
                n = _num_channels(module, kind)
                full = len(idxs) == n and (idxs == list(range(n)) or len(set(idxs)) == n)
                subset = None if full or not self._pairwise else tuple(idxs)
                key = (_weight_key(module.weight), kind, subset)
            items.append((kind, module, idxs, list(getattr(group[i], "root_idxs", idxs)), key))
        return items

    def prepare(self, groups: Iterable[Any]) -> None:
        """Learn the dep subsets of `groups` so the first step's batched call covers them too."""
        for group in groups:
            for kind, module, _, _, key in self._items(group):
                if key is not None and key[2] is not None:
                    self._subsets[(id(module), kind, key[2])] = weakref.ref(module)

    def _ensure(self, group: Any, items: list) -> None:
        missing = {it[4]: it for it in items if it[4] is not None and it[4] not in self._scores}
        if not missing:
            return
        self.prepare([group])
        blocks: Dict[tuple, tuple] = {}
        if any((key[0], key[1], None) not in self._scores for key in missing):  # new weights: a new step
            self._scores = {}
            self._subsets = {k: ref for k, ref in self._subsets.items() if ref() is not None}
            dg = getattr(group, "_DG", None)
            modules = list(dg.module2node) if dg is not None else [it[1] for it in items]
            for module in dict.fromkeys(modules):
                if isinstance(module, (_CONV, nn.Linear)) and self._accepts(module):
                    for kind in [k for k in self._orientations if k != "norm"]:
                        blocks[(_weight_key(module.weight), kind, None)] = (module, kind, None)
            for (_, kind, subset), ref in list(self._subsets.items()):
                module = ref()
                if module is None or not subset or max(subset) >= _num_channels(module, kind):
                    continue
                blocks[(_weight_key(module.weight), kind, subset)] = (module, kind, subset)
        blocks.update({key: (it[1], it[0], key[2]) for key, it in missing.items()})
        self._scores.update(zip(blocks, self._compute(list(blocks.values()))))

    def _local(self, kind: str, module: nn.Module, idxs: list, key: Optional[tuple]) -> torch.Tensor:
        if kind == "norm":
            return module.weight.detach()[idxs].abs().pow(self.p).float()
        scores = self._scores[key]
        if key[2] is not None or idxs == list(range(scores.numel())):
            return scores
        return scores[torch.as_tensor(idxs, device=scores.device)]

    @torch.no_grad()
    def __call__(self, group: Any, **kwargs: Any) -> Optional[torch.Tensor]:
        """(len(root channels),) float32 group scores (higher = more important), or None when no dep of
        the group is scored."""
        items = self._items(group)
        if not items:
            return None
        self._ensure(group, items)
        imps = [self._local(kind, module, idxs, key) for kind, module, idxs, _, key in items]
        return self._normalize(self._reduce(imps, [it[3] for it in items]), self.normalizer)  # TP's own

    def _reduce(self, group_imp: List[torch.Tensor], group_idxs: List[List[int]]) -> torch.Tensor:
        """TP's `_reduce`, with its "mean" / "sum" case without a tensor per dep: a dep covering the root
        channels in order adds in place (the same float32 sums, in the same order, as its scatter_add_)."""
        if self.group_reduction not in ("mean", "sum") or any(None in r for r in group_idxs):
            return super()._reduce(group_imp, group_idxs)
        reduced = torch.zeros_like(group_imp[0], dtype=torch.float32)
        identity = list(range(reduced.numel()))
        for imp, roots in zip(group_imp, group_idxs):
            imp = imp.to(reduced.device, dtype=torch.float32)
            if roots == identity:
                reduced += imp
            else:
                reduced.index_add_(0, torch.as_tensor(roots, device=imp.device), imp)
        return reduced / len(group_imp) if self.group_reduction == "mean" else reduced


class FPGMImportance(_BatchedImportance):
    """Filter Pruning via Geometric Median, as a Torch-Pruning importance.

    semantics="paper" (He et al., CVPR 2019): for every conv/linear out-channel dep (depthwise convs
    included) with rows F_i = W[i].flatten() of the RAW weights, s_i = Σ_{j∈idxs} d(F_i, F_j), d = `metric`
    ("l2" the paper's default, "l1", "cosine"); for a whole layer this is ``fastprune.ops.gm_scores(W)``.
    In-channel deps and BatchNorm are not scored (FPGM ranks filters); `p` is used by "tp" only.
    semantics="tp": ``tp.importance.FPGMImportance(p)``: rows R = |rows|^p of every out- AND in-channel
    dep, s_i = Σ_{j∈idxs} ‖R_i − R_j‖₂ (any `metric` may replace TP's l2), with the grouped/depthwise
    rows of the module docstring where TP crashes or skips the layer.
    Both then reduce over the group's deps (TP's `group_reduction`) and normalise (`normalizer`, e.g.
    "mean": s / mean(s)). Lower = pruned first. Distances come from fastprune's kernels, within 1e-4
    relative of float64 even between near-duplicate rows (TP's ``torch.cdist`` uses a Gram form).
    """

    def __init__(
        self,
        metric: str = "l2",
        semantics: str = "paper",
        p: float = 2,
        group_reduction: str = "mean",
        normalizer: Normalizer = "mean",
    ) -> None:
        _choice("metric", metric, ("l2", "l1", "cosine"))
        _choice("semantics", semantics, ("paper", "tp"))
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not p > 0:
            raise ValueError(f"p: expected a positive number (the power of |w| in 'tp' semantics), got {p!r}")
        super().__init__(group_reduction, normalizer, p)
        self.metric, self.semantics = metric, semantics
        self._orientations = ("out",) if semantics == "paper" else ("out", "in")
        self._pairwise = True
        self._tp_parity = semantics == "tp"

    def _compute(self, blocks):
        powered: Dict[int, torch.Tensor] = {}  # tp: |W|^p once per module, its rows views or regroups of it
        rows = []
        for module, kind, subset in blocks:
            w = None
            if self.semantics == "tp":
                if id(module) not in powered:
                    weight = module.weight.detach().float()
                    powered[id(module)] = weight.square() if self.p == 2 else weight.abs().pow(self.p)
                w = powered[id(module)]
            r = channel_rows(module, kind, w)
            rows.append(r if subset is None else r[list(subset)])
        return _per_device(rows, lambda rs: gm_scores(rs, self.metric))


class NormImportance(_BatchedImportance):
    """Filter-norm importance with Torch-Pruning's group semantics: parity with
    ``tp.importance.GroupMagnitudeImportance(p)`` (grouped/depthwise convs as in the module docstring).

    Per dep: s_i = ‖R_i‖_p^p = Σ|R_i|^p over the channel rows of conv/linear out- and in-channel deps, and
    |γ_i|^p for affine BatchNorm/LayerNorm deps (TP sums p-th powers, so for one layer the ranking is the
    ℓp-norm ranking). All conv/linear rows of the network: one ``fastprune.criteria.filter_norms``
    segmented reduction per step; γ is gathered per dep. Then `group_reduction` and `normalizer`.
    """

    def __init__(self, p: int = 2, group_reduction: str = "mean", normalizer: Normalizer = "mean") -> None:
        _choice("p", p, (1, 2))
        super().__init__(group_reduction, normalizer, p)
        self._orientations = ("out", "in", "norm")
        self._tp_parity = True

    def _compute(self, blocks):
        rows = [channel_rows(module, kind) for module, kind, _ in blocks]
        norms = _per_device(rows, lambda rs: filter_norms(rs, self.p))
        return [n.square() if self.p == 2 else n for n in norms]


class KernelImportance(_BatchedImportance):
    """fastprune's eigenvalue-based kernel criteria, reduced per filter, as a Torch-Pruning importance.

    For every conv out-channel dep (filter o, depthwise included): s_o = reduction_{i} c(W[o, i]) over the
    filter's k×k kernels W[o, i] (i over its C/g input channels), c = `criterion` of
    ``fastprune.ops.kernel_scores`` (default "spectral_norm": σ_max(W[o, i])), `reduction` "mean"
    (default: a filter matters as much as its average kernel), "sum", "max" or "min". Every conv of the
    network is one ``kernel_scores`` call per step. Convs with non-square kernels, k > MAX_N (7), not 2-D,
    linear layers and in-channel deps are not scored. Then `group_reduction` and `normalizer`.
    """

    def __init__(
        self,
        criterion: str = "spectral_norm",
        reduction: str = "mean",
        group_reduction: str = "mean",
        normalizer: Normalizer = "mean",
    ) -> None:
        _choice("criterion", criterion, tuple(CRITERIA))
        _choice("reduction", reduction, ("mean", "sum", "max", "min"))
        super().__init__(group_reduction, normalizer)
        self.criterion, self.reduction = criterion, reduction

    def _accepts(self, module):
        w = module.weight
        return isinstance(module, _CONV) and w.dim() == 4 and w.shape[2] == w.shape[3] <= MAX_N

    def _compute(self, blocks):
        modules = [module for module, _, _ in blocks]
        weights = [m.weight.detach() for m in modules]
        scores = _per_device(weights, lambda ws: kernel_scores(ws, self.criterion))
        reduce = {"mean": torch.mean, "sum": torch.sum, "max": torch.amax, "min": torch.amin}[self.reduction]
        return [reduce(channel_rows(m, "out", s), dim=1) for m, s in zip(modules, scores)]


class SoftPruner:
    """Soft filter pruning (SFP) through Torch-Pruning's dependency graph.

    The graph and its groups (roots: `root_module_types`, default every conv; `ignored_layers` skipped)
    are built once; shapes never change. Each :meth:`step` scores every group with `importance` (any TP
    importance; fastprune's score all groups in one batched call), picks floor(n·rate) lowest-scoring root
    channels per group (ties by index) and zeroes them in every filter-producing dep of the group: the
    conv/linear filters (weight rows and bias), depthwise convs, and the BatchNorm shift β, which makes
    the channel exactly zero in train mode. The BN scale γ is kept so the filters receive gradients and
    may recover: selection is redone from the current weights every step. :meth:`finalize` zeroes the
    pruned channels for good, γ included, so they are zero in eval mode too.

    State: ``masks`` {module name: bool (channels,) True = kept} for every zeroed module.
    """

    def __init__(
        self,
        model: nn.Module,
        example_inputs: Any,
        importance: Callable[[Any], Optional[torch.Tensor]],
        rate: float,
        ignored_layers: Optional[Sequence[nn.Module]] = None,
        *,
        root_module_types: Sequence[type] = (_CONV,),
    ) -> None:
        if not callable(importance):
            raise ValueError(
                f"importance: expected a callable group -> scores, got {type(importance).__name__}"
            )
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
            raise ValueError(f"rate: expected a number in [0, 1), got {rate!r}")
        self.model, self.importance, self.rate = model, importance, float(rate)
        training = model.training
        model.eval()  # trace without touching BatchNorm's running statistics
        try:
            self.DG = tp.DependencyGraph().build_dependency(model, example_inputs=example_inputs)
        finally:
            model.train(training)
        self.groups = list(
            self.DG.get_all_groups(
                ignored_layers=list(ignored_layers or []), root_module_types=tuple(root_module_types)
            )
        )
        names = {m: n for n, m in model.named_modules()}
        self._modules: Dict[str, nn.Module] = {}
        self._kept: Dict[str, torch.Tensor] = {}  # all True, one per zeroed module
        self._targets: List[List[Tuple[str, torch.Tensor, torch.Tensor]]] = []
        for group in self.groups:
            targets = []
            for i, (dep, idxs) in enumerate(group):
                module, roots = dep.target.module, group[i].root_idxs
                kind = _kind(dep)
                if kind == "out" or (kind == "norm" and isinstance(module, nn.modules.batchnorm._BatchNorm)):
                    if module in names and all(r is not None for r in roots):
                        n = _num_channels(module, "out") if kind == "out" else module.weight.shape[0]
                        self._modules[names[module]] = module
                        self._kept[names[module]] = torch.ones(
                            n, dtype=torch.bool, device=module.weight.device
                        )
                        targets.append((names[module], torch.as_tensor(idxs), torch.as_tensor(roots)))
            self._targets.append(targets)
        self.masks: Dict[str, torch.Tensor] = self._all_kept()
        if hasattr(importance, "prepare"):
            importance.prepare(self.groups)
        self.steps = 0

    def _all_kept(self) -> Dict[str, torch.Tensor]:
        return {name: keep.clone() for name, keep in self._kept.items()}

    @torch.no_grad()
    def step(self) -> None:
        """Re-select the pruned channels of every group from the current weights and zero them."""
        masks = self._all_kept()
        for group, targets in zip(self.groups, self._targets):
            scores = self.importance(group)
            n_pruned = 0 if scores is None else int(scores.numel() * self.rate)
            if n_pruned == 0:
                continue
            pruned = torch.zeros(scores.numel(), dtype=torch.bool)
            pruned[torch.sort(scores.detach().cpu(), stable=True).indices[:n_pruned]] = True
            for name, idxs, roots in targets:
                masks[name][idxs[pruned[roots]].to(masks[name].device)] = False
        self.masks = masks
        self._apply(final=False)
        self.steps += 1

    @torch.no_grad()
    def finalize(self) -> None:
        """Zero the pruned channels for good: filters, biases and the BN scale and shift."""
        self._apply(final=True)

    def _apply(self, final: bool) -> None:
        for name, module in self._modules.items():
            keep = self.masks[name]
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.bias.mul_(keep.to(module.bias.dtype))
                if final:
                    module.weight.mul_(keep.to(module.weight.dtype))
                continue
            w = module.weight
            if getattr(module, "transposed", False):  # (C, O/g, *k): column o' of every group's rows
                g = module.groups
                keep = keep.view(g, 1, -1).expand(g, w.shape[0] // g, -1).reshape(w.shape[:2])
            w.mul_(keep.view(keep.shape + (1,) * (w.dim() - keep.dim())).to(w.dtype))
            if module.bias is not None:
                module.bias.mul_(self.masks[name].to(module.bias.dtype))

    def pruned_share(self) -> float:
        """Zeroed channels / channels over the masked modules."""
        total = sum(m.numel() for m in self.masks.values())
        return sum(int((~m).sum()) for m in self.masks.values()) / max(total, 1)
