"""`fastprune reproduce kernel`: Cugu & Akbas's claim, at a scale this machine runs.

The claim (PRUNING.md section 1): a ResNet trained with Adam (lr 1e-3, batch 128) and an L1 penalty of
1e-4 on its conv kernels, the learning rate x0.1 at 40/60/80/90% of training (their epochs 80/120/160/180
of 200), loses most of its kernels (~81-84% of ResNet-56's, ~90-92% of ResNet-110's on CIFAR-10) at one
global threshold t = 1e-4, keeping ~98-99% of its accuracy without fine-tuning.

The protocol keeps that recipe and scales it in optimizer steps, not epochs: L1 under Adam moves a weight
whose data gradient stays below the penalty by about the learning rate per step, so the "dead" kernels
collapse towards the last phase's learning rate (a plateau far below t) only after enough steps at each
rate; a recipe scaled down in epochs on a small data set never gets there (20 digits epochs = 240 steps
pruned 0.3% of ResNet-20's kernels). Steps:

* train (``runs.run_or_reuse``, folder OUT/train): ``method none`` with the recipe above, for
  ceil(steps / steps per epoch) epochs, the four decays at 40/60/80/90% of them;
* the histogram of kernel magnitudes of the trained network (spectral norm, the authors' default
  criterion, and mean |w|): histogram.csv and kernel_magnitudes.png;
* every kernel criterion at t = 1e-6, 1e-5, 1e-4 and 1e-3 on the same trained weights, and the pruned
  share vs threshold sweep 1e-12..1 (:func:`fastprune.research.compare`, folder OUT/compare);
* the verdict (summary.json, report.md): the authors' default criterion (spectral_norm) at t = 1e-4
  reproduces the claim when it prunes at least half of the kernels (``LARGE_SHARE``) and keeps at least
  98% of the unpruned accuracy (``KEPT_ACCURACY``); the plateau formed when at least ``PLATEAU_SHARE`` of
  the kernels are already pruned at t = 1e-6 and the share grows by at most ``PLATEAU_SPREAD`` up to 1e-3.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Union

from fastprune.serialization import replace_atomically

THRESHOLDS = (1e-6, 1e-5, 1e-4, 1e-3)
CLAIM_THRESHOLD = 1e-4
CLAIM_CRITERION = "spectral_norm"
LARGE_SHARE = 0.5
KEPT_ACCURACY = 0.98
PLATEAU_SPREAD = 0.05
PLATEAU_SHARE = 0.1
PHASES = (0.4, 0.6, 0.8, 0.9)  # the authors' 80/120/160/180 of 200 epochs
# Default optimizer steps of the "small" scale: enough for the plateau on digits (measured, see README
# "Reproducing the papers"), within 30 minutes on a 2-core CPU.
SMALL_STEPS = 4800
PAPER_EPOCHS = 200


@dataclass
class KernelProtocol:
    """The resolved settings of one run of the protocol."""

    scale: str
    arch: str
    dataset: str
    data_dir: Optional[str]
    device: str
    seed: int
    batch_size: int
    steps_per_epoch: int
    epochs: int
    milestones: list[int]
    max_batches: Optional[int]  # tiny scale only: batches per epoch (training and evaluation)
    sweep_points: int
    threads: Optional[int]

    @property
    def batches_per_epoch(self) -> int:
        return min(self.steps_per_epoch, self.max_batches or self.steps_per_epoch)

    @property
    def steps(self) -> int:
        return self.epochs * self.batches_per_epoch


def resolve(
    scale: str = "small",
    *,
    dataset: str = "digits",
    data_dir: Optional[str] = None,
    device: str = "cpu",
    arch: Optional[str] = None,
    steps: Optional[int] = None,
    seed: int = 0,
    threads: Optional[int] = None,
) -> KernelProtocol:
    """The protocol's settings: `scale` tiny (a smoke test: 2 epochs of 2 batches), small (digits default:
    SMALL_STEPS optimizer steps, ResNet-20) or paper (the authors' 200 epochs, ResNet-56); `steps`
    overrides the scale's count (rounded up to whole epochs), `arch` its network."""
    from fastprune.research.runs import BATCH_SIZE, check_scale, steps_per_epoch

    check_scale(scale)
    if steps is not None and (type(steps) is not int or steps < 1):
        raise ValueError(f"steps: expected an integer >= 1, got {steps!r}")
    batch_size = BATCH_SIZE
    per_epoch = steps_per_epoch(dataset, data_dir, batch_size)
    max_batches = 2 if scale == "tiny" else None
    if steps is None:
        steps = {"tiny": 2 * 2, "small": SMALL_STEPS, "paper": PAPER_EPOCHS * per_epoch}[scale]
    epochs = max(1, math.ceil(steps / min(per_epoch, max_batches or per_epoch)))
    milestones = sorted({max(1, round(f * epochs)) for f in PHASES})
    return KernelProtocol(
        scale=scale,
        arch=arch or ("resnet56" if scale == "paper" else "resnet20"),
        dataset=dataset,
        data_dir=None if data_dir is None else str(data_dir),
        device=device,
        seed=seed,
        batch_size=batch_size,
        steps_per_epoch=per_epoch,
        epochs=epochs,
        milestones=milestones,
        max_batches=max_batches,
        sweep_points=7 if scale == "tiny" else 25,
        threads=threads,
    )


def training_config(protocol: KernelProtocol, out: Path, progress: bool):
    """The authors' training recipe as a TrainConfig (no pruning during training: the protocol prunes the
    trained weights with every criterion afterwards)."""
    from fastprune.training.config import TrainConfig

    return TrainConfig(
        arch=protocol.arch,
        dataset=protocol.dataset,
        data_dir=protocol.data_dir,
        out_dir=str(out / "train"),
        epochs=protocol.epochs,
        batch_size=protocol.batch_size,
        method="none",
        optimizer="adam",
        lr=1e-3,
        l1_penalty=1e-4,
        weight_decay=0.0,
        milestones=protocol.milestones,
        gamma=0.1,
        seed=protocol.seed,
        threads=protocol.threads,
        device=protocol.device,
        progress=False,
        quiet=not progress,
        max_batches=protocol.max_batches,
    )


def magnitude_histogram(model) -> list[dict[str, Any]]:
    """Kernels of every conv by magnitude: rows {"low", "high", "spectral_norm", "mean_abs"} counting the
    kernels with spectral norm (largest singular value) / mean |w| in [low, high), decades from 1e-12 to
    10, plus a first row [0, 0] for exact zeros and [0, 1e-12) below the first decade."""
    import torch

    from fastprune.ops import kernel_scores

    weights = [m.weight.detach() for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    scores = {
        "spectral_norm": torch.cat([s.flatten() for s in kernel_scores(weights, "spectral_norm")]).double(),
        "mean_abs": torch.cat([w.abs().double().mean(dim=(2, 3)).flatten() for w in weights]),
    }
    edges = [0.0] + [10.0**e for e in range(-12, 2)]
    rows = [{"low": 0.0, "high": 0.0, **{k: int((s == 0).sum()) for k, s in scores.items()}}]
    for low, high in zip(edges, edges[1:]):
        counts = {k: int(((s > 0) & (s >= low) & (s < high)).sum()) for k, s in scores.items()}
        rows.append({"low": low, "high": high, **counts})
    rows.append({"low": 10.0, "high": math.inf, **{k: int((s >= 10).sum()) for k, s in scores.items()}})
    return rows


def verdict(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The claim checked on compare's rows: see the module docstring."""
    at = {(r["criterion"], r["param"]): r for r in rows if r["kind"] == "kernel" and r["mode"] == "threshold"}
    claim = at[(CLAIM_CRITERION, CLAIM_THRESHOLD)]
    before = claim["acc_before"]
    kept = claim["acc_after"] / before if before > 0 else 0.0
    shares = [at[(CLAIM_CRITERION, t)]["pruned_share"] for t in THRESHOLDS]
    spread = max(shares) - min(shares)
    return {
        "criterion": CLAIM_CRITERION,
        "threshold": CLAIM_THRESHOLD,
        "accuracy_unpruned": before,
        "accuracy_pruned": claim["acc_after"],
        "accuracy_kept": kept,
        "pruned_share": claim["pruned_share"],
        "kernel_macs_removed": claim["kernel_macs_removed"],
        "plateau_shares": dict(zip(map(str, THRESHOLDS), shares)),
        "plateau_formed": spread <= PLATEAU_SPREAD and shares[0] >= PLATEAU_SHARE,
        "large_share": claim["pruned_share"] >= LARGE_SHARE,
        "little_loss": kept >= KEPT_ACCURACY,
        "reproduced": claim["pruned_share"] >= LARGE_SHARE and kept >= KEPT_ACCURACY,
        "at_claim_threshold": {
            name: {"pruned_share": r["pruned_share"], "accuracy": r["acc_after"]}
            for (name, t), r in at.items()
            if t == CLAIM_THRESHOLD
        },
    }


def reproduce_kernel(
    out: Union[str, os.PathLike] = "runs/reproduce-kernel", *, progress: bool = True, **settings: Any
) -> dict[str, Any]:
    """Run the protocol (module docstring) into folder `out`; returns summary.json's content.

    `settings`: :func:`resolve`'s arguments (scale, dataset, data_dir, device, arch, steps, seed, threads).
    `progress`: print each step and each training epoch."""
    from fastprune.research.comparison import compare
    from fastprune.research.runs import run_or_reuse, say_nothing
    from fastprune.training.saved_model import load_saved_model

    protocol = resolve(**settings)
    out = Path(out)
    say: Callable[..., None] = print if progress else say_nothing
    started = time.perf_counter()
    say(
        f"[1/3] train {protocol.arch} on {protocol.dataset}: Adam lr 1e-3, L1 1e-4 on the convs, "
        f"{protocol.steps} steps ({protocol.epochs} epochs of {protocol.batches_per_epoch}), "
        f"lr x0.1 at epochs {protocol.milestones}",
        flush=True,
    )
    run = run_or_reuse(training_config(protocol, out, progress))
    if run.reused:
        say(f"      reused the complete run in {run.out_dir}")
    model = load_saved_model(run.out_dir, what="reproduce")[0]
    histogram = magnitude_histogram(model)
    say("[2/3] every kernel criterion at t = 1e-6 .. 1e-3, and the threshold sweep", flush=True)
    rows = compare(
        model,
        filter_criteria=[],
        thresholds=THRESHOLDS,
        sweep=True,
        sweep_points=protocol.sweep_points,
        dataset=protocol.dataset,
        data_dir=protocol.data_dir,
        device=protocol.device,
        max_batches=protocol.max_batches,
        seed=protocol.seed,
        out=out / "compare",
        progress=False,
    )
    summary = {
        "protocol": "kernel",
        "settings": {**asdict(protocol), "steps": protocol.steps},
        "verdict": verdict(rows),
        "train_seconds": run.seconds,
        "seconds": time.perf_counter() - started,
    }
    say("[3/3] report", flush=True)
    _write_outputs(out, summary, histogram)
    say(conclusion(summary["verdict"]))
    say(f"wrote {out / 'report.md'}, {out / 'summary.json'}, {out / 'histogram.csv'} and the plots")
    return summary


def conclusion(v: dict[str, Any]) -> str:
    """The plain sentence of the report."""
    answer = "REPRODUCED" if v["reproduced"] else "NOT REPRODUCED"
    plateau = "formed" if v["plateau_formed"] else "did not form"
    shares = ", ".join(f"t={t}: {s:.1%}" for t, s in v["plateau_shares"].items())
    return (
        f"{answer}: at t = {v['threshold']:g}, {v['criterion']} pruned {v['pruned_share']:.1%} of the "
        "kernels "
        f"(claim: >= {LARGE_SHARE:.0%}; paper ~81-92%), accuracy {v['accuracy_unpruned']:.2%} -> "
        f"{v['accuracy_pruned']:.2%} ({v['accuracy_kept']:.1%} kept; claim: >= {KEPT_ACCURACY:.0%}), no "
        f"fine-tuning. The plateau {plateau} ({shares})."
    )


def _write_outputs(out: Path, summary: dict[str, Any], histogram: list[dict[str, Any]]) -> None:
    from fastprune.research.comparison import write_csv
    from fastprune.research.plots import histogram_plot

    text = (json.dumps(summary, indent=1, default=float) + "\n").encode()
    replace_atomically(out / "summary.json", lambda f: f.write(text))
    write_csv(out / "histogram.csv", histogram, ("low", "high", "spectral_norm", "mean_abs"))
    image = histogram_plot(out, histogram, CLAIM_THRESHOLD)
    s, v = summary["settings"], summary["verdict"]
    lines = [
        f"# Reproducing Cugu & Akbas: kernel pruning of {s['arch']} on {s['dataset']} ({s['scale']} scale)",
        "",
        f"**{conclusion(v)}**",
        "",
        f"Training: Adam (lr 1e-3, batch {s['batch_size']}), L1 penalty 1e-4 on every conv kernel, no weight "
        f"decay, {s['steps']} optimizer steps = {s['epochs']} epochs, lr x0.1 at epochs {s['milestones']} "
        f"(the authors' 80/120/160/180 of 200 epochs, scaled in steps), seed {s['seed']}, device "
        f"{s['device']}; {summary['train_seconds']:.0f} s of training, {summary['seconds']:.0f} s in all. "
        "Pruning: once, on the trained weights, one global threshold, no fine-tuning (as the paper).",
        "",
        "| criterion | pruned at t = 1e-4 | accuracy |",
        "|---|---:|---:|",
    ]
    for name, r in v["at_claim_threshold"].items():
        lines.append(f"| {name} | {r['pruned_share']:.1%} | {r['accuracy']:.2%} |")
    lines += [
        "",
        f"Unpruned accuracy {v['accuracy_unpruned']:.2%}. Every criterion at every threshold, "
        "with params and MACs: [compare/report.md](compare/report.md).",
        "",
    ]
    lines += [f"![kernel magnitudes]({image})" if image else "(no plots: they need matplotlib)", ""]
    if (out / "compare" / "pruned_share_vs_threshold.png").is_file():
        lines += ["![pruned share vs threshold](compare/pruned_share_vs_threshold.png)", ""]
    total = histogram[0]["spectral_norm"] + sum(r["spectral_norm"] for r in histogram[1:])
    lines += [
        "Kernels by spectral norm (histogram.csv):",
        "",
        "| range | kernels | share |",
        "|---|---:|---:|",
    ]
    for r in histogram:
        if r["spectral_norm"]:
            span = "0" if r["high"] == 0 else f"[{r['low']:g}, {r['high']:g})"
            lines.append(f"| {span} | {r['spectral_norm']:,} | {r['spectral_norm'] / max(total, 1):.1%} |")
    text_md = ("\n".join(lines) + "\n").encode()
    replace_atomically(out / "report.md", lambda f: f.write(text_md))
