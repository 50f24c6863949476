"""Every pruning criterion on the same trained weights: :func:`compare` (``fastprune compare``).

For each setting the trained weights are restored (a deep copy of the state dict, BatchNorm statistics
included), then pruned once, measured and evaluated:

* filter settings (criterion x rate): :class:`fastprune.SoftFilterPruner` scores every selected conv
  and zeroes the floor(N x rate) weakest filters (``step()``), then makes the pruning final
  (``finalize()``: the pruned filters' BatchNorm scale and shift zeroed too), exactly as the training
  loop's final prune; ``pruned_share`` = pruned filters / filters of the selected convs.
* kernel settings (criterion x mode x threshold): :class:`fastprune.KernelPruner` zeroes the kernels its
  mode drops (``compute_masks()`` + ``apply()``); ``pruned_share`` = zero kernels / kernels of its
  selected convs (kernels already zero count as pruned).

Measured per setting: ``params`` and ``macs`` (per sample, conv + FC) from :func:`fastprune.count_flops`
(what a compacted dense network of the surviving widths costs), ``kernel_macs``: what a kernel-skipping
conv would do (sum over convs of the nonzero kernels of live filters on live input channels x kh x kw x
output positions, + the FC MACs; it equals ``macs`` when only whole filters go), each also as the share
removed relative to the input network (``*_removed``); test accuracy before (once) and after, and after
``finetune_epochs`` of fine-tuning with the masks held (:func:`_finetune`). The control ``random``
scores filters uniformly at random from a generator seeded with ``seed`` (reproducible).
"""

from __future__ import annotations

import copy
import csv
import io
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import torch
from torch import nn

from fastprune.criteria import DISTANCE_METRICS, KERNEL_CRITERIA
from fastprune.criteria import names as filter_criterion_names
from fastprune.pruning import KernelPruner, SoftFilterPruner, count_flops
from fastprune.pruning.keep_masks import KeepMasks
from fastprune.pruning.kernel_pruner import MODES as KERNEL_MODES
from fastprune.serialization import replace_atomically

DEFAULT_FILTER_CRITERIA = ("l1", "l2", "fpgm", "fpgm:l1", "fpgm:cosine", "fpgm_mix", "fpgm_he", "random")
DEFAULT_RATES = (0.3, 0.5)
DEFAULT_KERNEL_CRITERIA = tuple(KERNEL_CRITERIA)
MODE_PARAMETER = {"threshold": "threshold", "contrib": "contrib", "sorted": "fraction"}
# results.csv: `param` is the rate of a filter setting, the threshold / tau / fraction of a kernel one.
FIELDS = (
    "kind", "criterion", "mode", "param", "pruned_share", "params", "params_removed", "macs", "macs_removed",
    "kernel_macs", "kernel_macs_removed", "acc_before", "acc_after", "acc_finetuned", "seconds",
)  # fmt: skip
SWEEP_FIELDS = ("criterion", "param", "pruned_share")
Source = Union[nn.Module, str, os.PathLike]


def random_criterion(seed: int = 0) -> Callable[..., list[torch.Tensor]]:
    """The control criterion: uniform random filter scores from a generator seeded with `seed` on every
    call (the same seed prunes the same filters of the same network)."""

    def random(weights, *, num_pruned, masks):
        generator = torch.Generator().manual_seed(seed)
        return [torch.rand(w.shape[0], generator=generator).to(w.device) for w in weights]

    return random


def _filter_criterion(spec: str, seed: int) -> tuple[Any, dict[str, Any]]:
    """(criterion, options) of NAME or NAME:METRIC (fpgm, fpgm_mix)."""
    name, _, metric = str(spec).partition(":")
    if name == "random" and not metric:
        return random_criterion(seed), {}
    if name not in filter_criterion_names() or (metric and name not in ("fpgm", "fpgm_mix")):
        valid = ", ".join([*filter_criterion_names(), "random"])
        raise ValueError(
            f"unknown filter criterion {spec!r}; valid: {valid} (fpgm and fpgm_mix also as NAME:METRIC)"
        )
    if metric and metric not in DISTANCE_METRICS:
        raise ValueError(f"filter criterion {spec!r}: metric must be one of {', '.join(DISTANCE_METRICS)}")
    return name, ({"metric": metric} if metric else {})


def _kernel_settings(
    criteria: Sequence[str], modes: Sequence[str], values: dict[str, Sequence[float]]
) -> list[tuple[str, str, float]]:
    settings = []
    for mode in modes:
        if mode not in KERNEL_MODES:
            raise ValueError(f"unknown kernel mode {mode!r}; valid: {', '.join(KERNEL_MODES)}")
        for name in criteria:
            if name not in KERNEL_CRITERIA:
                raise ValueError(f"unknown kernel criterion {name!r}; valid: {', '.join(KERNEL_CRITERIA)}")
            for value in values[mode]:
                KernelPruner(None, name, mode=mode, **{MODE_PARAMETER[mode]: value})  # checks the value
                settings.append((name, mode, float(value)))
    return settings


def load_model(source: Union[str, os.PathLike], *, trust: bool = False) -> tuple[nn.Module, dict[str, Any]]:
    """The network of a run folder (its model.pt, else checkpoint.pt), a model.pt or a checkpoint.pt, with
    the weights as saved (already pruned ones stay zero; no mask is applied on top), and what the files
    say about it: {"path", "arch", "dataset", "data_dir"} (dataset None when they name none)."""
    from fastprune.training.saved_model import load_saved_model

    model, _, config, file = load_saved_model(Path(source), trust=trust, what="compare")
    facts = {
        "path": str(file),
        "arch": config["arch"],
        "dataset": config.get("dataset"),
        "data_dir": config.get("data_dir"),
    }
    return model, facts


def measure(model: nn.Module, input_shape: Sequence[int]) -> dict[str, int]:
    """{"params", "macs", "kernel_macs"} per sample: count_flops's parameters, MACs (conv + FC) and MACs of a
    kernel-skipping conv (FlopsReport.kernel_macs)."""
    flops = count_flops(model, input_shape)
    return {"params": flops.params, "macs": flops.macs, "kernel_macs": flops.kernel_macs}


def threshold_sweep(
    model: nn.Module,
    criteria: Sequence[str] = DEFAULT_KERNEL_CRITERIA,
    thresholds: Optional[Sequence[float]] = None,
    *,
    points: int = 25,
    backend: str = "auto",
) -> list[dict[str, Any]]:
    """Kernel pruned share vs threshold (KernelPruner, mode "threshold"; masks computed, the model left
    as it is) for each criterion, over `thresholds` (default `points` log-spaced from 1e-12 to 1): rows
    {"kind": "sweep", "criterion", "mode", "param" (the threshold), "pruned_share"}; non-decreasing in
    the threshold."""
    if thresholds is None:
        if points < 2:
            raise ValueError(f"sweep points: expected >= 2, got {points}")
        thresholds = [10.0 ** (-12 + 12 * i / (points - 1)) for i in range(points)]
    rows = []
    for name in criteria:
        for t in thresholds:
            masks = KernelPruner(model, name, threshold=t, backend=backend).compute_masks().values()
            share = 1 - sum(int(m.sum()) for m in masks) / max(sum(m.numel() for m in masks), 1)
            rows.append(
                {"kind": "sweep", "criterion": name, "mode": "threshold", "param": t, "pruned_share": share}
            )
    return rows


def _finetune(model, masks, loader, device, epochs: int, lr: float, max_batches, seed: int) -> None:
    """A minimal fine-tuning loop, not the training loop's (whose epoch function is internal): SGD
    (Nesterov momentum 0.9, weight decay 5e-4, constant `lr`), cross-entropy, float32, the same batches
    for every setting (reseeded from `seed`); the masks are held by KeepMasks as in the loop's fine-tuning
    (pruned weights, a pruned filter's BatchNorm and their optimizer state stay zero)."""
    loader.dataset.seed_augmentation(seed)
    if loader.generator is not None:
        loader.generator.manual_seed(seed)
    torch.manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    keeper = KeepMasks(model, masks, optimizer)
    model.train()
    try:
        for _ in range(epochs):
            for i, (x, y) in enumerate(loader):
                if max_batches is not None and i >= max_batches:
                    break
                loss = nn.functional.cross_entropy(model(x.to(device)), y.to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    finally:
        keeper.remove()
        model.eval()


def _prune_filters(model, criterion, options, rate: float, backend: str):
    pruner = SoftFilterPruner(model, criterion, rate, criterion_options=options, backend=backend)
    pruner.step()
    pruner.finalize()  # as the training loop's final prune: the pruned channels' BN zeroed too
    return dict(pruner.masks), pruner.pruned_share()


def _prune_kernels(model, name: str, mode: str, value: float, backend: str):
    pruner = KernelPruner(model, name, mode=mode, backend=backend, **{MODE_PARAMETER[mode]: value})
    masks = pruner.compute_masks()
    report = pruner.apply(masks=masks)
    return masks, report.kernels_removed / max(report.kernels, 1)


def write_csv(path: Path, rows: list[dict[str, Any]], fields: Sequence[str]) -> None:
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(fields), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    data = text.getvalue().encode()
    replace_atomically(path, lambda f: f.write(data))


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def compare(
    model_or_path: Source,
    *,
    filter_criteria: Sequence[str] = DEFAULT_FILTER_CRITERIA,
    rates: Sequence[float] = DEFAULT_RATES,
    kernel_criteria: Sequence[str] = DEFAULT_KERNEL_CRITERIA,
    kernel_modes: Sequence[str] = ("threshold",),
    thresholds: Sequence[float] = (1e-4,),
    contribs: Sequence[float] = (1e-3,),
    fractions: Sequence[float] = (0.5,),
    sweep: bool = False,
    sweep_points: int = 25,
    finetune_epochs: int = 0,
    finetune_lr: float = 0.01,
    dataset: Optional[str] = None,
    data_dir: Optional[Union[str, os.PathLike]] = None,
    device: str = "cpu",
    batch_size: int = 128,
    max_batches: Optional[int] = None,
    seed: int = 0,
    out: Optional[Union[str, os.PathLike]] = None,
    trust_checkpoint: bool = False,
    backend: str = "auto",
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Prune one trained network with every criterion, restoring its weights between settings.

    `model_or_path`: a run folder, model.pt or checkpoint.pt (:func:`load_model`), or a module (a copy is
    pruned; the module is left as it is). Filter settings: `filter_criteria` (registered names, NAME:METRIC
    for fpgm / fpgm_mix, "random") x `rates`; kernel settings: `kernel_criteria` x `kernel_modes`, at each
    of `thresholds` / `contribs` / `fractions` (the parameter of its mode). `sweep`: the kernel pruned
    share at `sweep_points` thresholds from 1e-12 to 1 (:func:`threshold_sweep`). Accuracy is measured
    on the test split of `dataset` (default: the run's, else digits), the first `max_batches` batches.

    Returns one dict per setting (see the module docstring for what is measured): first the input network
    (kind "none"), then kind "filter" and "kernel" rows with the FIELDS of results.csv plus "layers"
    ({conv: kept share}) and "masks" ({conv: bool keep-mask, CPU}), then the "sweep" rows. With `out`,
    writes there results.csv (rewritten after each setting, atomically), sweep.csv, the PNG plots and
    report.md (:mod:`fastprune.research.plots`).
    """
    from fastprune import data
    from fastprune.training.loop import evaluate

    filter_criteria, kernel_criteria = (
        [c] if isinstance(c, str) else c for c in (filter_criteria, kernel_criteria)
    )
    filters = [
        (spec, *_filter_criterion(spec, seed), float(rate)) for spec in filter_criteria for rate in rates
    ]
    for rate in rates:
        _check(isinstance(rate, (int, float)) and 0.0 <= rate < 1.0, f"rate: expected [0, 1), got {rate!r}")
    values = {"threshold": thresholds, "contrib": contribs, "sorted": fractions}
    kernels = _kernel_settings(kernel_criteria, kernel_modes, values)
    _check(bool(filters or kernels or sweep), "nothing to compare: no filter nor kernel setting, no sweep")
    _check(finetune_epochs >= 0 and batch_size >= 1, "finetune_epochs >= 0 and batch_size >= 1 expected")
    _check(max_batches is None or max_batches >= 1, f"max_batches: expected >= 1, got {max_batches}")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} needs a CUDA GPU and torch sees none; use --device cpu")
    if isinstance(model_or_path, nn.Module):
        model, facts = copy.deepcopy(model_or_path).eval(), {"path": None, "dataset": None, "data_dir": None}
        facts["arch"] = getattr(model, "arch", type(model).__name__)
    else:
        model, facts = load_model(model_or_path, trust=trust_checkpoint)
    facts["dataset"] = dataset = dataset or facts["dataset"] or "digits"
    data_dir = data_dir if data_dir is not None else facts["data_dir"]
    train_loader, test_loader = data.loaders(dataset, data_dir=data_dir, batch_size=batch_size, seed=seed)
    heads = [m for m in model.modules() if isinstance(m, nn.Linear)]
    classes = test_loader.dataset.num_classes
    outputs = heads[-1].out_features if heads else classes
    _check(
        outputs == classes, f"the model has {outputs} classes, data set {dataset!r} {classes}: pass --dataset"
    )
    shape = tuple(test_loader.dataset.input_shape)
    say = print if progress else (lambda *_args, **_kw: None)
    model.to(device)
    trained = copy.deepcopy(model.state_dict())
    n_eval = (
        len(test_loader.dataset)
        if max_batches is None
        else min(len(test_loader.dataset), max_batches * batch_size)
    )
    facts.update(input_shape=shape, device=str(device), test_images=n_eval, finetune_epochs=finetune_epochs,
                 finetune_lr=finetune_lr, seed=seed)  # fmt: skip
    start = time.perf_counter()
    before = measure(model, shape)
    _, acc_before = evaluate(model, test_loader, torch.device(device), max_batches)
    base = {"kind": "none", "criterion": "none", "pruned_share": 0.0, **before, "acc_before": acc_before}
    base.update({f"{key}_removed": 0.0 for key in before}, acc_after=acc_before, layers={}, masks={})
    base["seconds"] = time.perf_counter() - start
    rows = [base]
    out_dir = Path(out) if out is not None else None
    say(f"{facts['arch']} on {dataset} ({n_eval} test images): accuracy {acc_before:.2%}, "
        f"{before['params']:,} params, {before['macs']:,} MACs")  # fmt: skip
    sweep_rows = []
    if sweep:  # on the trained weights, before any setting prunes them
        sweep_rows = threshold_sweep(
            model, kernel_criteria or DEFAULT_KERNEL_CRITERIA, points=sweep_points, backend=backend
        )
        for name in dict.fromkeys(r["criterion"] for r in sweep_rows):
            shares = [r["pruned_share"] for r in sweep_rows if r["criterion"] == name]
            say(f"sweep {name}: thresholds 1e-12..1, kernels pruned {shares[0]:.1%} .. {shares[-1]:.1%}")
    settings = [("filter", *f) for f in filters] + [("kernel", *k) for k in kernels]
    for i, setting in enumerate(settings, 1):
        model.load_state_dict(trained)  # every setting starts from the trained weights
        start = time.perf_counter()
        if setting[0] == "filter":
            kind, spec, criterion, options, value = setting
            masks, share = _prune_filters(model, criterion, options, value, backend)
            row = {"kind": kind, "criterion": spec, "mode": "hard", "param": value}
        else:
            kind, spec, mode, value = setting
            masks, share = _prune_kernels(model, spec, mode, value, backend)
            row = {"kind": kind, "criterion": spec, "mode": mode, "param": value}
        cpu_masks = {name: m.detach().cpu().clone() for name, m in masks.items()}
        row.update(pruned_share=share, **measure(model, shape), acc_before=acc_before, masks=cpu_masks,
                   layers={name: float(m.float().mean()) for name, m in cpu_masks.items()})  # fmt: skip
        for key in ("params", "macs", "kernel_macs"):
            row[f"{key}_removed"] = 1 - row[key] / before[key] if before[key] else 0.0
        row["acc_after"] = evaluate(model, test_loader, torch.device(device), max_batches)[1]
        tuned = ""
        if finetune_epochs:
            _finetune(model, masks, train_loader, device, finetune_epochs, finetune_lr, max_batches, seed)
            row["acc_finetuned"] = evaluate(model, test_loader, torch.device(device), max_batches)[1]
            tuned = f" (fine-tuned {row['acc_finetuned']:.2%})"
        row["seconds"] = time.perf_counter() - start
        rows.append(row)
        unit = "filters" if kind == "filter" else "kernels"
        say(
            f"[{i}/{len(settings)}] {kind} {spec} {row['mode']} {value:g}: {share:.1%} of {unit} pruned, "
            f"MACs -{row['macs_removed']:.1%}, kernel-skipping MACs -{row['kernel_macs_removed']:.1%}, "
            f"accuracy {acc_before:.2%} -> {row['acc_after']:.2%}{tuned}, {row['seconds']:.1f} s",
            flush=True,
        )
        if out_dir is not None:  # complete rows survive a Ctrl-C
            write_csv(out_dir / "results.csv", rows, FIELDS)
    model.load_state_dict(trained)
    rows += sweep_rows
    if out_dir is not None:
        from fastprune.research.plots import write_report

        write_csv(out_dir / "results.csv", [r for r in rows if r["kind"] != "sweep"], FIELDS)
        if sweep_rows:
            write_csv(out_dir / "sweep.csv", sweep_rows, SWEEP_FIELDS)
        write_report(out_dir, rows, facts)
    return rows


def finite(value: Any) -> bool:
    """A number to plot or print (not None, not NaN)."""
    return isinstance(value, (int, float)) and math.isfinite(value)
