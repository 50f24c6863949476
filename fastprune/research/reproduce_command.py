"""`fastprune reproduce kernel|filter`: the papers' claims rerun by protocol, at a scale this machine runs.

kernel: Cugu & Akbas's recipe (Adam, L1 1e-4 on the convs, lr x0.1 at 40/60/80/90%) scaled in optimizer
steps, then every kernel criterion at t = 1e-6..1e-3 on the trained weights and the threshold sweep; the
report shows the kernel magnitudes and says whether a large share of kernels goes at 1e-4 with little
loss (fastprune.research.kernel_protocol).

filter: SFP from scratch and FPGM's pre-trained setting for l1, l2, fpgm and MFP-style switching at 40%,
over >= 3 seeds: mean ± std and paired differences with 95% intervals (fastprune.research.filter_protocol).

Scales: tiny (a smoke test, seconds), small (the default on the embedded digits: <= 30 minutes each on a
2-core CPU) and paper (the default on any other data set: the papers' epochs and ResNet-56, e.g.
`--dataset cifar10 --data-dir DIR --device cuda`). Rerunning a command reuses the runs it completed and
resumes the one it was in (Ctrl-C loses at most the current epoch); a folder holding other settings is
refused, never overwritten. Writes OUT (default runs/reproduce-kernel or runs/reproduce-filter):
report.md, summary.json, CSVs, PNGs and one run folder per training run.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``reproduce`` subcommand to a ``parser.add_subparsers()`` object (imports no torch)."""
    parser = subparsers.add_parser(
        "reproduce",
        help="rerun the papers' claims by protocol: kernel or filter (see --help)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("protocol", choices=["kernel", "filter"], help="which paper's claim")
    parser.add_argument(
        "--scale",
        choices=["tiny", "small", "paper"],
        default=None,
        help="tiny (smoke test), small (default on digits) or paper (default on other data sets)",
    )
    parser.add_argument(
        "--dataset", default="digits", help="digits (embedded), cifar10, cifar100, tinyimagenet"
    )
    parser.add_argument("--data-dir", default=None, help="folder (or archive) of the data set files")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--arch", default=None, help="network (default resnet20; resnet56 at paper scale)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads of the training runs")
    parser.add_argument("--out", type=Path, default=None, help="output folder (runs/reproduce-PROTOCOL)")
    parser.add_argument("--quiet", action="store_true", help="print only errors")
    kernel = parser.add_argument_group("kernel protocol")
    kernel.add_argument("--steps", type=int, default=None, help="optimizer steps of training (small: 4800)")
    kernel.add_argument("--seed", type=int, default=0, help="seed of the training run (0)")
    filters = parser.add_argument_group("filter protocol")
    filters.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds (0 1 2)")
    filters.add_argument(
        "--criteria", nargs="+", default=None, help="two or more of l1 l2 fpgm mfp (default: all four)"
    )
    filters.add_argument("--rate", type=float, default=0.4, help="share of filters pruned per conv (0.4)")
    filters.add_argument(
        "--epochs", type=int, default=None, help="baseline / from-scratch epochs (small: 20)"
    )
    filters.add_argument(
        "--pretrained-epochs", type=int, default=None, help="epochs of pruning from the baseline (small: 4)"
    )
    return parser


def reproduce_command(args: argparse.Namespace) -> int:
    """Run `fastprune reproduce` (see the module docstring)."""
    from fastprune.training.config import TrainConfig

    TrainConfig(device=args.device).resolved()  # a CUDA device without a GPU: refused before any data is read
    scale = args.scale or ("small" if args.dataset.lower() == "digits" else "paper")
    out = args.out or Path(f"runs/reproduce-{args.protocol}")
    common = dict(
        dataset=args.dataset, data_dir=args.data_dir, device=args.device, arch=args.arch, threads=args.threads
    )
    if args.protocol == "kernel":
        _refuse(args, ("seeds", "criteria", "epochs", "pretrained_epochs"), "filter", rate=0.4)
        from fastprune.research.kernel_protocol import reproduce_kernel

        reproduce_kernel(
            out, progress=not args.quiet, scale=scale, steps=args.steps, seed=args.seed, **common
        )
    else:
        _refuse(args, ("steps",), "kernel", seed=0)
        from fastprune.research.filter_protocol import reproduce_filter

        reproduce_filter(
            out,
            progress=not args.quiet,
            scale=scale,
            seeds=args.seeds,
            criteria=args.criteria,
            rate=args.rate,
            epochs=args.epochs,
            pretrained_epochs=args.pretrained_epochs,
            **common,
        )
    return 0


def _refuse(args: argparse.Namespace, names: tuple[str, ...], other: str, **defaults: Any) -> None:
    """An option of the other protocol is a mistake, not something to ignore silently."""
    given = [n for n in names if getattr(args, n) is not None]
    given += [n for n, default in defaults.items() if getattr(args, n) != default]
    if given:
        flags = ", ".join("--" + n.replace("_", "-") for n in given)
        raise ValueError(f"{flags}: option(s) of `fastprune reproduce {other}`, not of {args.protocol}")
