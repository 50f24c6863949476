"""`fastprune evaluate RUN_OR_MODEL`: test accuracy, loss, size and pruned shares of a trained network.

    fastprune evaluate RUN_OR_MODEL [--dataset D] [--data-dir P] [--device cpu] [--batch-size B]
                                    [--max-batches N] [--json] [--trust-checkpoint]

RUN_OR_MODEL is a `fastprune train` run folder (its model.pt, else its checkpoint.pt: a run stopped or
still going), a model.pt or a checkpoint.pt. Files are read as `train --init-from` reads them: tensors
and plain containers only (`--trust-checkpoint` unpickles fully a file you trust that needs it).

The network is evaluated as saved (no masks applied on top of its weights) on the test split of the run's
data set, which the file's config names (checkpoint.pt; model.pt since it holds one), else config.json or
checkpoint.pt beside it; `--dataset`, `--data-dir` and `--batch-size` override. Printed as a small table:
accuracy, loss, MACs per sample and parameters (`fastprune.count_flops`: channels zero for certain
removed; the dense network's for comparison), pruned filters and pruned kernels (as in metrics.csv:
masked or all-zero, over the convs the file has masks for; every conv if none). `--json` prints one JSON
object with the same values instead. User mistakes (a missing or foreign file, an unknown data set, a
network that does not fit it) print one line and exit with status 2.

Examples: `fastprune evaluate runs/a` (a run folder), `fastprune evaluate runs/a/model.pt --json`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Optional


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``evaluate`` subcommand to a ``parser.add_subparsers()`` object."""
    parser = subparsers.add_parser(
        "evaluate", help="test accuracy, loss, MACs, params and pruned shares of a run or model (see --help)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    add_saved_model_arguments(parser, "path")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the run's (else 128)")
    parser.add_argument("--max-batches", type=int, default=None, help="evaluate only this many batches")
    parser.add_argument("--json", action="store_true", help="print a JSON object instead of the table")
    return parser


def add_saved_model_arguments(parser: argparse.ArgumentParser, dest: str) -> None:
    """The arguments of a command reading a saved network and its run's data (evaluate, compare): the
    RUN_OR_MODEL positional (as `dest`), --dataset, --data-dir, --device and --trust-checkpoint."""
    parser.add_argument(dest, type=Path, metavar="RUN_OR_MODEL", help="run folder, model.pt or checkpoint.pt")
    parser.add_argument("--dataset", default=None, help="data set (default: the run's)")
    parser.add_argument(
        "--data-dir", default=None, help="folder (or archive) of its files (default: the run's)"
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="allow a full unpickle of a file the safe loader refuses (it can run code: trusted files only)",
    )


def evaluate_command(args: argparse.Namespace) -> int:
    """Run `fastprune evaluate` (see the module docstring)."""
    result = evaluate_file(
        args.path, dataset=args.dataset, data_dir=args.data_dir, device=args.device,
        batch_size=args.batch_size, max_batches=args.max_batches, trust=args.trust_checkpoint,
    )  # fmt: skip
    print(json.dumps(result, indent=1) if args.json else format_table(result))
    return 0


def evaluate_file(
    path: Path,
    *,
    dataset: Optional[str] = None,
    data_dir: Optional[str] = None,
    device: str = "cpu",
    batch_size: Optional[int] = None,
    max_batches: Optional[int] = None,
    trust: bool = False,
) -> dict[str, Any]:
    """What `fastprune evaluate` prints, as a dict (see the module docstring). User mistakes raise
    ValueError or FileNotFoundError with a one-line message."""
    import torch
    from torch.utils.data import DataLoader

    from fastprune import data
    from fastprune.training.loop import evaluate
    from fastprune.training.metrics import pruned_shares
    from fastprune.training.saved_model import load_saved_model

    model, state, config, file = load_saved_model(Path(path), trust=trust, what="evaluate")
    arch = config["arch"]
    dataset = dataset or config.get("dataset")
    if dataset is None:
        raise ValueError(
            f"evaluate: {file} does not name its data set (no config in or beside it); pass --dataset"
        )
    batch_size = batch_size or config.get("batch_size") or 128
    for name, value in (("--batch-size", batch_size), ("--max-batches", max_batches)):
        if value is not None and value < 1:
            raise ValueError(f"{name}: expected an integer >= 1, got {value}")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: needs a CUDA GPU and torch sees none; use --device cpu")
    test_set = data.load(dataset, data_dir=data_dir or config.get("data_dir"), train=False, augment=False)
    if config["num_classes"] != test_set.num_classes:
        raise ValueError(
            f"evaluate: the network in {file} has {config['num_classes']} classes, data set {dataset} "
            f"{test_set.num_classes}; pass the run's --dataset"
        )
    model.to(device)
    loader = DataLoader(test_set, batch_size=batch_size)
    loss, accuracy = evaluate(model, loader, torch.device(device), max_batches)
    filter_masks = state.get("filter_masks") or (state.get("pruner") or {}).get("masks") or {}
    kernel_masks = state.get("kernel_masks") or state.get("kept_masks") or {}
    pruned_filters, pruned_kernels = pruned_shares(model, {**filter_masks, **kernel_masks})
    images = len(test_set) if max_batches is None else min(len(test_set), max_batches * batch_size)
    result: dict[str, Any] = {
        "file": str(file), "arch": arch,
        "dataset": dataset, "images": images, "epochs_done": state.get("epochs_done"),
        "accuracy": accuracy, "loss": loss, "macs": None, "dense_macs": None, "params": None,
        "dense_params": None, "pruned_filters": pruned_filters, "pruned_kernels": pruned_kernels,
    }  # fmt: skip
    result.update(_size(model.eval(), test_set.input_shape))
    return result


def format_table(result: dict[str, Any]) -> str:
    """The small table `fastprune evaluate` prints."""
    epochs = "" if result["epochs_done"] is None else f", checkpoint after epoch {result['epochs_done']}"
    rows = [
        ("accuracy", f"{result['accuracy']:.4f}"),
        ("loss", f"{result['loss']:.4f}"),
        ("MACs / sample", _with_dense(result["macs"], result["dense_macs"])),
        ("parameters", _with_dense(result["params"], result["dense_params"])),
        ("pruned filters", f"{100 * result['pruned_filters']:.1f}%"),
        ("pruned kernels", f"{100 * result['pruned_kernels']:.1f}%"),
    ]
    head = f"{result['file']}: {result['arch']} on the {result['dataset']} test set"
    head += f" ({result['images']:,} images{epochs})"
    return "\n".join([head, *(f"  {name:<15} {value}" for name, value in rows)])


def _with_dense(count: Optional[int], dense: Optional[int]) -> str:
    if count is None or dense is None:
        return "- (count_flops cannot count this model)"
    fewer = 100 * (1 - count / dense) if dense else 0.0
    return f"{count:,} (dense {dense:,}: {fewer:.1f}% fewer)"


def _size(model, input_shape) -> dict[str, Optional[int]]:
    from fastprune.pruning.flops import count_flops

    try:
        report = count_flops(model, input_shape)
    except (ValueError, ImportError):
        return {}
    return {
        "macs": report.macs, "dense_macs": report.dense_macs,
        "params": report.params, "dense_params": report.dense_params,
    }  # fmt: skip
