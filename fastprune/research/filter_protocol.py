"""`fastprune reproduce filter`: SFP, FPGM and MFP's comparisons, over seeds, at a scale this machine runs.

The claims (PRUNING.md sections 2 and 4): at the same pruning rate (40% of the filters of every conv),
the geometric-median criterion (FPGM) keeps more accuracy than the norm criteria (SFP's l2; FPGM's
ResNet-56 from scratch 92.93% against SFP's 92.26%), and switching between criteria by a meta-attribute
(MFP) keeps more than any one of them. Differences of a few tenths of a point are the whole story, so
one run per criterion settles nothing (on digits one test image is 0.28 points): the protocol runs every
criterion with each of >= 3 seeds and compares them paired by seed (the same seed gives the same
initial weights and batches to every criterion).

Per seed, each a training run (``runs.run_or_reuse``: a rerun reuses complete runs), under OUT/seed<S>/:

* ``baseline``: no pruning, the SFP/FPGM recipe (SGD Nesterov 0.9, lr 0.1 x0.2 at 30/60/80%, weight
  decay 5e-4, batch 128) for ``epochs``;
* ``scratch-<criterion>`` (SFP's and FPGM's "from scratch"): the same recipe from random weights, a
  pruning step every ``prune_every`` epochs (``scratch_mode``: soft, or hard as FPGM's released code, which
  masks the gradients between steps), the pruning made final at the end;
* ``pretrained-<criterion>`` (FPGM's "pre-trained" setting): from the seed's baseline, ``pretrained_epochs``
  of soft pruning at lr 0.01 (same decays; a step every ``pretrained_prune_every`` epochs), made final;
* both then fine-tune ``finetune_epochs`` with the masks held (lr ``FINETUNE_LR``, x0.2 at 50/75%).

At the papers' scale a step follows each epoch (391 CIFAR batches) and nothing is fine-tuned. Scaled down,
a step after each 12-batch digits epoch leaves the network no time to recover: measured (ResNet-20, seed
0, 40%), the test accuracy fell to chance after each step and the runs ended at 10-19%, and even with a
step every 5 epochs the third step, at lr 0.004, left training itself at ~20-28% accuracy. So the small
scale spaces the steps (60 batches apart from scratch, 24 from the baseline) and fine-tunes 4 epochs after
the final prune; the report gives the accuracy just before and after the final prune too.
Even so, soft pruning from scratch broke training at this scale: measured (seeds 0 and 1), the runs ended
at 21-40% after fine-tuning (a zeroed filter regrowing from nothing has a near-zero batch variance, which
BatchNorm divides by: 12-60 batches are too few to settle that). With the gradients (and momentum) of the
pruned filters held at zero between steps (``mode="hard"``, as FPGM's released code masks them) the same
runs reached 97-98%: the small scale prunes from scratch in hard mode, from the baseline in soft mode.

Criteria: l1, l2, fpgm (distance sums, l2 distance) and mfp (switching between l1, l2 and fpgm at every
step by the loss on a held-out training batch: our reconstruction of MFP's meta-attribute, PRUNING.md).
Reported (results.csv, summary.csv, paired.csv, report.md, PNGs): per run the final test accuracy,
MACs and parameters; per setting and criterion mean ± sample std over the seeds; per pair of criteria the
paired difference (mean, std, 95% t interval, wins / ties / losses, in test images too), called resolved
only when its interval excludes 0.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any, Callable, Optional, Union

from fastprune.research.comparison import write_csv
from fastprune.research.runs import BATCH_SIZE, check_scale
from fastprune.serialization import replace_atomically

CRITERIA = ("l1", "l2", "fpgm", "mfp")
MFP_CANDIDATES = ["l1", "l2", "fpgm"]


@dataclass(frozen=True)
class ScaleSettings:
    arch: str
    epochs: int  # baseline and from scratch
    prune_every: int  # from scratch
    pretrained_epochs: int
    pretrained_prune_every: int
    finetune_epochs: int  # after the final prune, both settings
    scratch_mode: str  # "soft" (SFP) or "hard" (gradients and momentum of pruned filters held at zero)


# paper: the authors' released CIFAR scripts (FPGM's scripts/pruning_cifar10.sh: from scratch 200 epochs at
# lr 0.1; --use_pretrain 200 epochs at lr 0.01; x0.2 at 60/120/160; a step every epoch; three runs of each
# setting). small: see the module docstring; 30 minutes of a 2-core CPU for 3 seeds x 4 criteria.
SCALE_SETTINGS = {
    "tiny": ScaleSettings("resnet20", 1, 1, 1, 1, 1, "hard"),
    "small": ScaleSettings("resnet20", 20, 5, 4, 2, 4, "hard"),
    "paper": ScaleSettings("resnet56", 200, 1, 200, 1, 0, "soft"),
}
PRETRAINED_LR = 0.01
FINETUNE_LR = 0.01
RESULT_FIELDS = (
    "setting",
    "criterion",
    "seed",
    "test_acc",
    "test_acc_before_final_prune",
    "test_acc_after_final_prune",
    "pruned_filters",
    "macs",
    "params",
    "macs_removed",
    "mfp_steps",
    "seconds",
)
# Two-sided 95% quantiles of Student's t by degrees of freedom (1..10, then 12, 15, 20, 30); above 30: 1.96.
T95 = {
    1: 12.706,
    2: 4.303,
    3: 3.182,
    4: 2.776,
    5: 2.571,
    6: 2.447,
    7: 2.365,
    8: 2.306,
    9: 2.262,
    10: 2.228,
    12: 2.179,
    15: 2.131,
    20: 2.086,
    30: 2.042,
}


@dataclass
class FilterProtocol:
    """The resolved settings of one run of the protocol."""

    scale: str
    arch: str
    dataset: str
    data_dir: Optional[str]
    device: str
    seeds: list[int]
    criteria: list[str]
    rate: float
    epochs: int
    prune_every: int
    pretrained_epochs: int
    pretrained_prune_every: int
    finetune_epochs: int
    scratch_mode: str
    max_batches: Optional[int]  # tiny scale only
    threads: Optional[int]
    settings: list[str] = field(default_factory=lambda: ["scratch", "pretrained"])


def resolve(
    scale: str = "small",
    *,
    dataset: str = "digits",
    data_dir: Optional[str] = None,
    device: str = "cpu",
    arch: Optional[str] = None,
    seeds: Optional[list[int]] = None,
    criteria: Optional[list[str]] = None,
    rate: float = 0.4,
    epochs: Optional[int] = None,
    pretrained_epochs: Optional[int] = None,
    threads: Optional[int] = None,
) -> FilterProtocol:
    """The protocol's settings (see SCALE_SETTINGS); any argument given overrides its scale's value."""
    check_scale(scale)
    seeds = [0, 1, 2] if seeds is None else list(seeds)
    if len(seeds) < 2 or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds: expected >= 2 distinct seeds (3 or more for a result), got {seeds}")
    criteria = list(CRITERIA) if criteria is None else list(criteria)
    unknown = [c for c in criteria if c not in CRITERIA]
    if unknown or len(criteria) < 2:
        raise ValueError(f"criteria: expected two or more of {', '.join(CRITERIA)}, got {criteria}")
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 < rate < 1.0:
        raise ValueError(f"rate: expected a pruning rate in (0, 1), got {rate!r}")
    defaults = SCALE_SETTINGS[scale]
    for name, value in (("epochs", epochs), ("pretrained_epochs", pretrained_epochs)):
        if value is not None and (type(value) is not int or value < 1):
            raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
    return FilterProtocol(
        scale=scale,
        arch=arch or defaults.arch,
        dataset=dataset,
        data_dir=None if data_dir is None else str(data_dir),
        device=device,
        seeds=seeds,
        criteria=criteria,
        rate=float(rate),
        epochs=epochs or defaults.epochs,
        prune_every=min(defaults.prune_every, epochs or defaults.epochs),
        pretrained_epochs=pretrained_epochs or defaults.pretrained_epochs,
        pretrained_prune_every=min(
            defaults.pretrained_prune_every, pretrained_epochs or defaults.pretrained_epochs
        ),
        finetune_epochs=defaults.finetune_epochs,
        scratch_mode=defaults.scratch_mode,
        max_batches=1 if scale == "tiny" else None,
        threads=threads,
    )


def run_configs(protocol: FilterProtocol, out: Path) -> list[tuple[str, str, int, Any]]:
    """(setting, criterion, seed, TrainConfig) of every run, in the order they run: per seed the
    baseline, then each criterion from scratch, then each from the baseline."""
    from fastprune.training.config import TrainConfig

    common = dict(
        arch=protocol.arch,
        dataset=protocol.dataset,
        data_dir=protocol.data_dir,
        device=protocol.device,
        threads=protocol.threads,
        max_batches=protocol.max_batches,
        batch_size=BATCH_SIZE,
        progress=False,
        quiet=True,
    )
    runs = []
    for seed in protocol.seeds:
        folder = out / f"seed{seed}"
        baseline = TrainConfig(
            method="none", epochs=protocol.epochs, seed=seed, out_dir=str(folder / "baseline"), **common
        )
        runs.append(("baseline", "none", seed, baseline))
        for setting in protocol.settings:
            for name in protocol.criteria:
                pruning = dict(
                    method="filter",
                    rate=protocol.rate,
                    mode="soft",
                    seed=seed,
                    out_dir=str(folder / f"{setting}-{name}"),
                    **common,
                )
                if name == "mfp":
                    pruning.update(criterion="fpgm", candidates=list(MFP_CANDIDATES), attribute="loss")
                else:
                    pruning.update(criterion=name)
                if setting == "pretrained":
                    pruning.update(
                        init_from=str(folder / "baseline" / "model.pt"),
                        lr=PRETRAINED_LR,
                        epochs=protocol.pretrained_epochs,
                        prune_every=protocol.pretrained_prune_every,
                    )
                else:
                    pruning.update(
                        epochs=protocol.epochs, prune_every=protocol.prune_every, mode=protocol.scratch_mode
                    )
                if protocol.finetune_epochs:
                    pruning.update(finetune_epochs=protocol.finetune_epochs, finetune_lr=FINETUNE_LR)
                runs.append((setting, name, seed, TrainConfig(**pruning)))
    return runs


def _mean_of(rows: list[dict[str, Any]], setting: str, name: str, key: str) -> Optional[float]:
    values = [
        r[key] for r in rows if r["setting"] == setting and r["criterion"] == name and r[key] is not None
    ]
    return statistics.fmean(values) if values else None


def t95(df: int) -> float:
    """Two-sided 95% Student t quantile (the next smaller tabulated df: a slightly wider interval)."""
    return T95[max(d for d in T95 if d <= df)] if df <= 30 else 1.96


def paired(a: list[float], b: list[float]) -> dict[str, Any]:
    """Paired comparison of a and b (same seeds, same order): the differences a - b, their mean, sample
    std, 95% t interval, wins / ties / losses of a, and whether the interval excludes 0."""
    diffs = [x - y for x, y in zip(a, b)]
    mean = statistics.fmean(diffs)
    std = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
    half = t95(len(diffs) - 1) * std / math.sqrt(len(diffs))
    return {
        "n": len(diffs),
        "mean_diff": mean,
        "std_diff": std,
        "ci_low": mean - half,
        "ci_high": mean + half,
        "wins": sum(d > 0 for d in diffs),
        "ties": sum(d == 0 for d in diffs),
        "losses": sum(d < 0 for d in diffs),
        "resolved": len(diffs) > 1 and (mean - half > 0 or mean + half < 0),
    }


def _run_row(setting: str, name: str, seed: int, outcome, baseline_macs: Optional[int]) -> dict[str, Any]:
    last = outcome.metrics[-1] if outcome.metrics else {}
    # the epoch of the final prune: the last with a pruning step (fine-tuning epochs follow it)
    final = next((m for m in reversed(outcome.metrics) if m.get("test_acc_before_prune") is not None), {})
    chosen = [m["criterion"] for m in outcome.metrics if m.get("criterion")]
    steps = ", ".join(f"{c} x{chosen.count(c)}" for c in dict.fromkeys(chosen)) if name == "mfp" else ""
    macs = last.get("macs")
    return {
        "setting": setting,
        "criterion": name,
        "seed": seed,
        "test_acc": outcome.final_test_acc,
        "test_acc_before_final_prune": final.get("test_acc_before_prune"),
        "test_acc_after_final_prune": final.get("test_acc"),
        "pruned_filters": last.get("pruned_filters"),
        "macs": macs,
        "params": last.get("params"),
        "macs_removed": (1 - macs / baseline_macs) if macs and baseline_macs else 0.0,
        "mfp_steps": steps,
        "seconds": outcome.seconds,
    }


def reproduce_filter(
    out: Union[str, os.PathLike] = "runs/reproduce-filter", *, progress: bool = True, **settings: Any
) -> dict[str, Any]:
    """Run the protocol (module docstring) into folder `out`; returns summary.json's content.

    `settings`: :func:`resolve`'s arguments (scale, dataset, data_dir, device, arch, seeds, criteria, rate,
    epochs, pretrained_epochs, threads). `progress`: print a line per training run."""
    from fastprune.research.runs import check_folder, run_or_reuse, say_nothing

    protocol = resolve(**settings)
    out = Path(out)
    say: Callable[..., None] = print if progress else say_nothing
    runs = run_configs(protocol, out)
    for *_, config in runs:  # refuse a folder of other settings before training anything
        check_folder(config)
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    baseline_macs: dict[int, Optional[int]] = {}
    for i, (setting, name, seed, config) in enumerate(runs, 1):
        outcome = run_or_reuse(config)
        row = _run_row(setting, name, seed, outcome, baseline_macs.get(seed))
        if setting == "baseline":
            baseline_macs[seed] = row["macs"]
        rows.append(row)
        write_csv(out / "results.csv", rows, RESULT_FIELDS)  # rewritten after each run: a Ctrl-C keeps them
        elapsed = time.perf_counter() - started
        left = elapsed / i * (len(runs) - i)
        how = "reused" if outcome.reused else f"{outcome.seconds:.0f} s"
        extra = f" ({row['mfp_steps']})" if row["mfp_steps"] else ""
        say(
            f"[{i}/{len(runs)}] seed {seed} {setting} {name}: test accuracy {row['test_acc']:.2%}{extra}, "
            f"{how}; about {left / 60:.0f} min left",
            flush=True,
        )
    summary = summarize(protocol, rows)
    summary["seconds"] = time.perf_counter() - started
    summary["train_seconds"] = sum(r["seconds"] for r in rows)
    write_report(out, summary, rows)
    say(f"wrote {out / 'report.md'}, {out / 'summary.json'}, results.csv, summary.csv, paired.csv, plots")
    return summary


def summarize(protocol: FilterProtocol, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean ± std per (setting, criterion) and the paired comparisons of every two criteria per setting."""
    from fastprune.pruning.flops import paper_flops_reduction

    def accuracies(setting: str, name: str) -> list[float]:
        return [
            r["test_acc"]
            for seed in protocol.seeds
            for r in rows
            if r["setting"] == setting and r["criterion"] == name and r["seed"] == seed
        ]

    groups = [("baseline", "none")] + [(s, c) for s in protocol.settings for c in protocol.criteria]
    table = []
    for setting, name in groups:
        values = accuracies(setting, name)
        removed = [r["macs_removed"] for r in rows if r["setting"] == setting and r["criterion"] == name]
        table.append(
            {
                "setting": setting,
                "criterion": name,
                "n": len(values),
                "mean": statistics.fmean(values),
                "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                "min": min(values),
                "max": max(values),
                "macs_removed": statistics.fmean(removed),
                **{
                    f"mean_{key}": _mean_of(rows, setting, name, f"test_acc_{key}")
                    for key in ("before_final_prune", "after_final_prune")
                },
            }
        )
    comparisons = []
    for setting in protocol.settings:
        for a, b in combinations(protocol.criteria, 2):
            comparisons.append(
                {"setting": setting, "a": a, "b": b, **paired(accuracies(setting, a), accuracies(setting, b))}
            )
    try:
        paper_reduction: Optional[float] = paper_flops_reduction(protocol.arch, protocol.rate)
    except ValueError:  # an arch the papers' counter does not know
        paper_reduction = None
    from fastprune import data

    test_images = len(data.load(protocol.dataset, data_dir=protocol.data_dir, train=False))
    if protocol.max_batches is not None:  # the tiny scale evaluates its first batch only
        test_images = min(test_images, protocol.max_batches * BATCH_SIZE)
    return {
        "protocol": "filter",
        "settings": asdict(protocol),
        "summary": table,
        "paired": comparisons,
        "paper_flops_reduction": paper_reduction,
        "test_images": test_images,
    }


def write_report(out: Path, summary: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """summary.json, summary.csv, paired.csv, accuracy_by_seed.png and report.md under `out`."""
    from fastprune.research.plots import seeds_plot

    text = (json.dumps(summary, indent=1, default=float) + "\n").encode()
    replace_atomically(out / "summary.json", lambda f: f.write(text))
    write_csv(out / "summary.csv", summary["summary"], list(summary["summary"][0]))
    write_csv(out / "paired.csv", summary["paired"], list(summary["paired"][0]))
    groups = {f"{r['setting']} {r['criterion']}": [] for r in summary["summary"]}
    for r in rows:
        groups[f"{r['setting']} {r['criterion']}"].append(r["test_acc"])
    image = seeds_plot(
        out, "accuracy_by_seed.png", groups, "Final test accuracy: one dot per seed, mean ± std"
    )
    s, images = summary["settings"], summary["test_images"]
    reduction = summary["paper_flops_reduction"]
    paper = f", {reduction:.1%} by the papers' analytic convention" if reduction is not None else ""
    removed = next(r["macs_removed"] for r in summary["summary"] if r["setting"] == "scratch")
    lines = [
        f"# Reproducing SFP / FPGM / MFP: filter pruning of {s['arch']} on {s['dataset']} "
        f"({s['scale']} scale)",
        "",
        f"Seeds {s['seeds']}; {s['rate']:.0%} of the filters of every conv; {images} test images (one "
        f"image = {1 / images:.2%}). Conv + FC MACs removed: {removed:.1%} (exact count of the pruned "
        f"network{paper}). Baseline and from-scratch runs: {s['epochs']} epoch(s) of SGD (Nesterov 0.9, "
        f"lr 0.1 x0.2 at 30/60/80%, weight decay 5e-4, batch {BATCH_SIZE}), from scratch a "
        f"{s['scratch_mode']} pruning step every {s['prune_every']} epoch(s); pre-trained runs: "
        f"{s['pretrained_epochs']} epoch(s) of soft pruning from the seed's baseline at lr {PRETRAINED_LR}, "
        f"a step every {s['pretrained_prune_every']} epoch(s); then the pruning made final and "
        f"{s['finetune_epochs']} epoch(s) of fine-tuning with the masks held (lr {FINETUNE_LR}). mfp "
        f"switches between {', '.join(MFP_CANDIDATES)} at every step by the loss on a held-out training "
        f"batch (our reconstruction of MFP's attribute). Training time {summary['train_seconds'] / 60:.1f} "
        f"min (the runs' epochs, reused ones included); this invocation {summary['seconds'] / 60:.1f} min.",
        "",
        "| setting | criterion | final accuracy, mean ± std | min .. max | before / after the final prune "
        "(means) | runs |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in summary["summary"]:
        before, after = r["mean_before_final_prune"], r["mean_after_final_prune"]
        prune = "-" if before is None else f"{before:.2%} / {after:.2%}"
        lines.append(
            f"| {r['setting']} | {r['criterion']} | {r['mean']:.2%} ± {r['std']:.2%} | "
            f"{r['min']:.2%} .. {r['max']:.2%} | {prune} | {r['n']} |"
        )
    lines += [
        "",
        "Paired by seed (a - b; the 95% interval is Student's t over the seeds; resolved = it excludes 0):",
        "",
        "| setting | a - b | mean (images) | 95% interval | a wins / ties / loses | resolved |",
        "|---|---|---:|---:|---:|---|",
    ]
    for p in summary["paired"]:
        lines.append(
            f"| {p['setting']} | {p['a']} - {p['b']} | {p['mean_diff']:+.2%} "
            f"({p['mean_diff'] * images:+.1f}) | "
            f"[{p['ci_low']:+.2%}, {p['ci_high']:+.2%}] | {p['wins']} / {p['ties']} / {p['losses']} | "
            f"{'yes' if p['resolved'] else 'no'} |"
        )
    lines += ["", conclusion(summary), ""]
    lines += [f"![accuracy by seed]({image})" if image else "(no plots: they need matplotlib)", ""]
    text_md = ("\n".join(lines) + "\n").encode()
    replace_atomically(out / "report.md", lambda f: f.write(text_md))


def conclusion(summary: dict[str, Any]) -> str:
    """The plain sentences of the report: which differences the seeds resolve, against the papers' claims."""
    resolved = [p for p in summary["paired"] if p["resolved"]]
    said = []
    for p in resolved:
        better, worse = (p["a"], p["b"]) if p["mean_diff"] > 0 else (p["b"], p["a"])
        said.append(f"{p['setting']}: {better} beats {worse} by {abs(p['mean_diff']):.2%}")
    head = (
        ("Resolved differences: " + "; ".join(said) + ".")
        if said
        else (
            f"No difference between criteria is resolved over {len(summary['settings']['seeds'])} seeds: "
            "every "
            "95% interval contains 0."
        )
    )
    return (
        f"{head} The papers' claims at this scale: FPGM over the norms (fpgm - l2 > 0) and MFP over every "
        "single criterion (mfp - x > 0) hold only where the row above says resolved with that sign."
    )
