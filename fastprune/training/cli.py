"""`fastprune train`: every TrainConfig field as a command-line option (--epochs, --criterion, ...)."""

from __future__ import annotations

import argparse
import dataclasses
import typing

from fastprune.training.config import TrainConfig

HELP = {
    "arch": "model: resnet20/32/44/56/110, vgg16 or mobilenet_v2 (CIFAR layout) or resnet18/34/50 "
    "(ImageNet layout)",
    "dataset": "digits (embedded), cifar10, cifar100 or tinyimagenet (these need --data-dir)",
    "data_dir": "folder (or archive) holding the data set files",
    "out_dir": "run folder: config.json, checkpoint.pt, metrics.csv/json, model.pt",
    "init_from": "start from the weights of this run's model.pt or checkpoint.pt (prune a trained net)",
    "method": "filter (soft filter pruning), kernel (eigenvalue-based kernel pruning) or none",
    "criterion": "filter criterion: l1, l2, fpgm, fpgm_he, fpgm_mix or a registered one",
    "criterion_options": 'JSON options of the criterion, e.g. \'{"metric": "l1"}\'',
    "rate": "share of filters pruned per layer, in [0, 1)",
    "mode": "soft (SFP: pruned filters keep training) or hard (gradients and momentum masked)",
    "candidates": "criteria to switch between at every step (MFP-style), e.g. l1 l2 fpgm",
    "attribute": "how switching rates candidates: loss (held-out batch) or diversity",
    "prune_every": "epochs between pruning steps",
    "kernel_criterion": "kernel criterion (method kernel): spectral_norm, weight, det, min_eig, ...",
    "kernel_mode": "threshold, contrib or sorted",
    "kernel_threshold": "global threshold t of the threshold mode",
    "l1_penalty": "L1 penalty on conv kernels (default 1e-4 for method kernel, else 0)",
    "finetune_epochs": "epochs of fine-tuning after the pruning is made final, masks kept",
    "finetune_lr": "learning rate of the fine-tuning epochs: starts there, times gamma at 50%% and 75%% of "
    "them, whatever the main schedule reached (None: the main schedule goes on)",
    "optimizer": "sgd (Nesterov) or adam (default: sgd for filter pruning, adam for kernel)",
    "milestones": "epochs at which the learning rate is multiplied by gamma",
    "device": "cpu or cuda",
    "threads": "CPU threads of torch and of fastprune's kernels for the run (torch.set_num_threads); None "
    "leaves them as they are (OMP_NUM_THREADS)",
    "backend": "fastprune backend of the scoring kernels (auto, cpu, cuda, triton, torch)",
    "masked_conv": "train held-zero convs (fine-tuning, hard mode) on fastprune.nn.MaskedConv2d, skipping "
    "the pruned filters/kernels (off by default: ~3%% faster end to end on the demo's ResNet-20)",
    "amp": "mixed precision (torch.autocast): --amp alone is bfloat16 on the CPU, float16 with a gradient "
    "scaler on CUDA; or name bfloat16 / float16. Weights, optimizer and checkpoints stay float32",
    "progress": "show progress bars (--no-progress: only the one-line summary per epoch)",
    "quiet": "print nothing: no bars, no per-epoch lines, no final line (errors still go to stderr)",
    "max_batches": "stop each epoch after this many batches (smoke tests)",
}


EPILOG = (
    "Progress: a bar per epoch (batches, running loss and accuracy, pruned shares of filters and kernels) "
    "and one summary line per epoch (--no-progress: the lines only; --quiet: nothing). The run folder "
    "holds config.json (the resolved config), metrics.csv/json (per epoch: lr used, losses, accuracies, "
    "test accuracy before each pruning step, pruned filters and kernels, MACs, params, criterion, MFP "
    "attributes, scoring and final-prune seconds), checkpoint.pt and model.pt. Ctrl-C stops the run with "
    "exit status 130: the last complete checkpoint and the metrics rows written so far stay intact, and "
    "--resume RUN continues it."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    defaults = TrainConfig()
    hints = typing.get_type_hints(TrainConfig)
    for field in dataclasses.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        default = getattr(defaults, field.name)
        hint = hints[field.name]
        text = HELP.get(field.name, field.name.replace("_", " "))
        if field.name == "amp":  # a bare --amp picks the device's usual dtype
            parser.add_argument(
                flag,
                nargs="?",
                const="auto",
                default=None,
                choices=["auto", "bfloat16", "float16"],
                help=text,
            )
        elif hint is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=text)
        elif field.name == "criterion_options":
            parser.add_argument(flag, type=_json_object, default={}, help=text)
        elif "list" in str(hint):
            item = int if "int" in str(hint) else str
            parser.add_argument(flag, nargs="+", type=item, default=None, help=text)
        else:
            base = next((t for t in (int, float, str) if t in typing.get_args(hint) or t is hint), str)
            parser.add_argument(flag, type=base, default=None, help=f"{text} (default: {default})")
    parser.add_argument(
        "--resume", metavar="CHECKPOINT", help="continue the run saved in this checkpoint or run folder"
    )
    parser.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="let --resume / --init-from fully unpickle a file the safe loader refuses (it can run code)",
    )


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    values = {}
    for field in dataclasses.fields(TrainConfig):
        value = getattr(args, field.name)
        if value is not None:
            values[field.name] = value
    return TrainConfig(**values)


def _json_object(text: str) -> dict:
    import json

    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r} ({error})") from error
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value
