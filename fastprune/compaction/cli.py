"""`fastprune compact CHECKPOINT -o OUT`: compact a trained, pruned network; compare it with the masked one.

CHECKPOINT is a ``model.pt`` written by ``fastprune train`` (keys "arch", "num_classes", "model",
"filter_masks", "kernel_masks") or a training ``checkpoint.pt`` ("config", "model", "pruner" with its
masks, "kernel_masks"). The masks are applied to the weights (pruned filters and kernels zeroed; BN is left
as it is, its constants are folded by compaction), the network is compacted, a before/after table is
printed (parameters, MACs per sample, median latency at batch 1 and 64 measured interleaved, for the
compact network as saved and, for ResNets, for its inference form ``for_inference()``: BN folded, ReLU
fused, convs on fastprune's kernel; other networks show the compact one there) and the compact network is
written to OUT (:func:`fastprune.save_compact`; read it
back with ``load_compact``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:  # torch is imported when the command runs, not when the CLI is built
    import torch
    from torch import nn


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``compact`` subcommand to a ``parser.add_subparsers()`` object."""
    parser = subparsers.add_parser(
        "compact", help="turn a pruned model.pt/checkpoint.pt into a smaller dense network (see --help)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("checkpoint", type=Path, help="model.pt or checkpoint.pt of a `fastprune train` run")
    parser.add_argument("-o", "--out", type=Path, required=True, help="where to write the compact network")
    parser.add_argument(
        "--batch-sizes", type=int, nargs="*", default=[1, 64], help="latency batches (default 1 64)"
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per model and batch (median)")
    parser.add_argument(
        "--input-size", type=int, default=None, help="input height = width (default per family)"
    )
    parser.add_argument("--report", action="store_true", help="also print the per-layer compaction report")
    parser.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="allow a full unpickle of a file the safe loader refuses (it can run code: trusted files only)",
    )
    return parser


def _load(path: Path, trust: bool = False) -> dict[str, Any]:
    from fastprune.serialization import load_torch_file

    if path.is_dir():
        path = path / "model.pt"
    state = load_torch_file(path, trust=trust, what="compact")
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise ValueError(f"compact: {path} is not a fastprune model.pt/checkpoint.pt (no 'model' state dict)")
    return state


def masked_model_from_checkpoint(state: dict[str, Any]) -> nn.Module:
    """The pruned network a model.pt / checkpoint.pt describes, masks applied, in eval mode."""
    from fastprune import models
    from fastprune.compaction import apply_masks

    weights = state["model"]
    config = state.get("config") or {}
    arch = state.get("arch") or config.get("arch")
    if arch is None:
        raise ValueError("compact: the checkpoint names no architecture ('arch' or config['arch'])")
    if str(arch).lower() not in models.names():
        raise ValueError(f"compact: unknown architecture {arch!r}; valid names: {', '.join(models.names())}")
    heads = [key for key, value in weights.items() if key.endswith(".weight") and value.dim() == 2]
    if state.get("num_classes") is None and not heads:
        raise ValueError("compact: the checkpoint gives no num_classes and its state dict no linear layer")
    num_classes = int(state.get("num_classes") or weights[heads[-1]].shape[0])
    small_input = None
    if arch.lower() in ("resnet18", "resnet34", "resnet50") and "conv1.weight" in weights:
        small_input = tuple(weights["conv1.weight"].shape[2:]) == (3, 3)
    model = models.create(arch, num_classes=num_classes, small_input=small_input)
    model.load_state_dict(weights)
    filter_masks = state.get("filter_masks")
    if filter_masks is None and isinstance(state.get("pruner"), dict):
        filter_masks = state["pruner"].get("masks")
    apply_masks(model, filter_masks, state.get("kernel_masks"))
    return model.eval()


def _latency_ms(models: list[nn.Module], x: torch.Tensor, repeats: int) -> list[float]:
    import torch

    from fastprune.benchmarks.common import interleaved_medians

    with torch.no_grad():
        return [1e3 * t for t in interleaved_medians([lambda m=m: m(x) for m in models], repeats)]


def compact_command(args: argparse.Namespace) -> int:
    """Run `fastprune compact` (see the module docstring)."""
    import torch

    from fastprune.compaction import compact, count_compact_flops, save_compact

    state = _load(args.checkpoint, trust=args.trust_checkpoint)
    masked = masked_model_from_checkpoint(state)
    small, report = compact(masked, return_report=True)
    shape = report.input_shape
    if args.input_size is not None:
        shape = (shape[0] if shape else 3, args.input_size, args.input_size)
    before, after = count_compact_flops(masked, shape), count_compact_flops(small, shape)
    fused = small.for_inference() if hasattr(small, "for_inference") else small  # ResNets have one
    params = (f"{before.params:,}", f"{after.params:,}", "same")
    macs = (f"{before.macs:,}", f"{after.macs:,}", "same")
    rows: list[tuple[str, ...]] = [
        ("parameters", *params, f"{before.params / max(after.params, 1):.2f}x", ""),
        ("MACs / sample", *macs, f"{before.macs / max(after.macs, 1):.2f}x", ""),
    ]
    for batch in args.batch_sizes:
        x = torch.randn(batch, *shape)
        t_masked, t_small, t_fused = _latency_ms([masked, small, fused], x, max(1, args.repeats))
        rows.append((
            f"latency ms, batch {batch}", f"{t_masked:.2f}", f"{t_small:.2f}", f"{t_fused:.2f}",
            f"{t_masked / t_small:.2f}x", f"{t_masked / t_fused:.2f}x",
        ))  # fmt: skip
    with torch.no_grad():
        x = torch.randn(2, *shape)
        ref = masked(x)
        errors = [float((ref - m(x)).abs().max() / ref.abs().max().clamp_min(1e-30)) for m in (small, fused)]
    if args.report:
        print(report, end="\n\n")
    print(f"{masked.arch}, input {tuple(shape)}, torch threads {torch.get_num_threads()}")
    print(
        f"{'':<24}{'masked':>14}{'compact':>14}{'inference':>14}{'compact':>10}{'inference':>11}\n"
        f"{'':<24}{'':>14}{'':>14}{'form':>14}{'ratio':>10}{'ratio':>11}"
    )
    for name, a, b, c, r1, r2 in rows:
        print(f"{name:<24}{a:>14}{b:>14}{c:>14}{r1:>10}{r2:>11}")
    print(
        f"max relative output difference to the masked model (batch 2): compact {errors[0]:.2e}, "
        f"inference form {errors[1]:.2e}"
    )
    save_compact(small, args.out)  # atomic: a Ctrl-C never leaves a torn OUT
    print(f"wrote {args.out}")
    return 0


def main(argv: Optional[list[str]] = None) -> int:  # `python -m fastprune.compaction.cli ...`
    parser = argparse.ArgumentParser(prog="fastprune")
    register(parser.add_subparsers(dest="command", required=True))
    return compact_command(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
