"""`fastprune compare RUN_OR_MODEL`: every pruning criterion on the same trained weights, restored in between.

RUN_OR_MODEL is a run folder of `fastprune train` (its model.pt, else checkpoint.pt), a model.pt or a
checkpoint.pt. For each filter criterion at each rate, and each kernel criterion at each mode and
threshold, the trained weights are restored, pruned once (filters: zeroed with their BatchNorm, as the
training loop's final prune; kernels: KernelPruner), and the pruned share, parameters, MACs (per sample:
compacted widths, and what a kernel-skipping conv would do) and test accuracy before and after (and after
--finetune-epochs of fine-tuning) are measured. --sweep adds the kernel pruned share at 25 thresholds
from 1e-12 to 1 per kernel criterion. "random" is the seeded control (--seed).

Writes OUT (default RUN/compare for a run folder, ./compare for a file): results.csv (one row per
setting, rewritten after each, so a Ctrl-C keeps the settings done), sweep.csv, report.md with the table
and the PNG plots (pruned share vs threshold, accuracy vs pruned share, kept share per layer). The same
from Python: ``fastprune.research.compare(path_or_model, ...)`` returns the rows.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Optional

from fastprune.training.cli_evaluate import add_saved_model_arguments

FILTER_DEFAULT = ["l1", "l2", "fpgm", "fpgm:l1", "fpgm:cosine", "fpgm_mix", "fpgm_he", "random"]


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``compare`` subcommand to a ``parser.add_subparsers()`` object (imports no torch)."""
    parser = subparsers.add_parser(
        "compare", help="every pruning criterion on the same trained weights: table, CSV, plots (see --help)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    add_saved_model_arguments(parser, "source")
    parser.add_argument(
        "--filter-criteria", nargs="+", default=FILTER_DEFAULT, metavar="NAME[:METRIC]",
        help=f"filter criteria, or none (default: {' '.join(FILTER_DEFAULT)}; METRIC l2, l1 or cosine)",
    )  # fmt: skip
    parser.add_argument(
        "--rates", nargs="+", type=float, default=[0.3, 0.5], help="filter rates (default 0.3 0.5)"
    )
    parser.add_argument(
        "--kernel-criteria",
        nargs="+",
        default=None,
        metavar="NAME",
        help="kernel criteria, or none (default: all 8)",
    )
    parser.add_argument(
        "--kernel-modes", nargs="+", default=["threshold"], choices=["threshold", "contrib", "sorted"],
        help="kernel modes (default threshold)",
    )  # fmt: skip
    parser.add_argument(
        "--thresholds", nargs="+", type=float, default=[1e-4], help="threshold mode's t (1e-4)"
    )
    parser.add_argument("--contribs", nargs="+", type=float, default=[1e-3], help="contrib mode's tau (1e-3)")
    parser.add_argument(
        "--fractions", nargs="+", type=float, default=[0.5], help="sorted mode's fraction (0.5)"
    )
    parser.add_argument("--sweep", action="store_true", help="kernel pruned share vs threshold, 1e-12..1")
    parser.add_argument("--finetune-epochs", type=int, default=0, help="fine-tuning epochs per setting (0)")
    parser.add_argument("--finetune-lr", type=float, default=0.01, help="fine-tuning learning rate (0.01)")
    parser.add_argument("--batch-size", type=int, default=128, help="evaluation / fine-tuning batch (128)")
    parser.add_argument(
        "--max-batches", type=int, default=None, help="evaluate (and fine-tune) this many batches"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random control and fine-tuning (0)")
    parser.add_argument("--out", type=Path, default=None, help="report folder (RUN/compare or ./compare)")
    return parser


def _none_or(values: Optional[list[str]], default: Optional[list[str]]) -> list[str]:
    if values is None:
        return list(default or [])
    return [] if [v.lower() for v in values] == ["none"] else values


def compare_command(args: argparse.Namespace) -> int:
    """Run `fastprune compare` (see the module docstring)."""
    from fastprune.research.comparison import DEFAULT_KERNEL_CRITERIA, compare
    from fastprune.research.plots import text_table

    out = args.out or (args.source / "compare" if args.source.is_dir() else Path("compare"))
    rows = compare(
        args.source, filter_criteria=_none_or(args.filter_criteria, None),
        rates=args.rates, kernel_criteria=_none_or(args.kernel_criteria, list(DEFAULT_KERNEL_CRITERIA)),
        kernel_modes=args.kernel_modes, thresholds=args.thresholds, contribs=args.contribs,
        fractions=args.fractions, sweep=args.sweep, finetune_epochs=args.finetune_epochs,
        finetune_lr=args.finetune_lr, dataset=args.dataset, data_dir=args.data_dir, device=args.device,
        batch_size=args.batch_size, max_batches=args.max_batches, seed=args.seed, out=out,
        trust_checkpoint=args.trust_checkpoint,
    )  # fmt: skip
    print(text_table(rows))
    print(f"wrote {out / 'results.csv'}, {out / 'report.md'} and its plots")
    return 0


def main(argv: Optional[list[str]] = None) -> int:  # `python -m fastprune.research.command ...`
    parser = argparse.ArgumentParser(prog="fastprune")
    register(parser.add_subparsers(dest="command", required=True))
    return compare_command(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
