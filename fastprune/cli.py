"""`fastprune` / `python -m fastprune`: demo, train, evaluate, compare, reproduce, compact, bench, info."""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import sys
from pathlib import Path
from typing import Optional, Sequence

PACKAGE_DIR = Path(__file__).resolve().parent


def cmake_prefix() -> Path:
    """Prefix to put on CMAKE_PREFIX_PATH so that find_package(fastprune) finds the installed library."""
    return PACKAGE_DIR


def _version_of(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def info() -> int:
    from fastprune import __version__, _native
    from fastprune.backends import auto_fallbacks, cpu_capability, refusal_reasons

    print(f"fastprune {__version__}")
    reason = _native.unavailable_reason()
    if reason is None:
        build = _native.native().build_info()
        archs = build["cuda_archs"] or "-"
        print(
            f"  native library: C ABI v{build['abi_version']}, CUDA compiled: {build['cuda_compiled']} "
            f"(archs {archs}), OpenMP max threads: {build['openmp_max_threads']}"
        )
        print(f"  cmake prefix (find_package(fastprune)): {cmake_prefix()}")
        capability = cpu_capability()
        print(
            f"  CPU kernels: {capability.name} (built: {', '.join(capability.built)}): {capability.reason}; "
            "FASTPRUNE_CPU_CAPABILITY=default|avx2|avx512 lowers the choice"
        )
        for op, why in auto_fallbacks("cpu").items():
            print(f"    auto uses torch for {op}: {why}")
    else:
        print(f"  native library: unavailable: {reason}")
    print(f"  torch {_version_of('torch')}, triton {_version_of('triton')}")
    for device_type in ("cpu", "cuda"):
        print(f"  backends for {device_type} tensors:")
        for name, why in refusal_reasons(device_type).items():
            print(f"    {name:<7} {'available' if why is None else 'unavailable: ' + why}")
    for op, why in auto_fallbacks("cuda").items():
        print(f"  on cuda tensors auto uses torch for {op}: {why}")
    return 0


_DEFAULT_NETWORKS = ["resnet56", "resnet50"]


def bench(args: argparse.Namespace) -> int:
    if args.suite == "ecosystem":
        networks = None if args.networks == _DEFAULT_NETWORKS else args.networks
        importlib.import_module("fastprune.benchmarks.ecosystem").run(args.out, networks)
        return 0
    others = sorted(set(args.networks) - set(_DEFAULT_NETWORKS))
    if others:
        raise ValueError(f"--networks: {', '.join(others)} only for ecosystem")
    if args.suite == "compact":
        importlib.import_module("fastprune.benchmarks.compaction").run(args.out, args.networks)
        return 0
    if args.suite == "conv":  # a backend this machine cannot time raises BackendError: one line, see main
        importlib.import_module("fastprune.benchmarks.masked_conv").run(args.out, backend=args.backend)
        return 0
    if args.suite == "spectral":
        from fastprune.benchmarks import spectral

        spectral.run([10_000, 100_000, 1_000_000], args.networks, out_dir=args.out)
        return 0
    from fastprune.benchmarks import scoring

    if args.backend in ("cuda", "triton"):  # before the benchmark spends a minute on its CPU rows
        import torch

        if not torch.cuda.is_available():
            raise ValueError(
                f"--backend {args.backend}: cannot run on cuda tensors here: no CUDA GPU "
                "(torch.cuda.is_available() is False)"
            )
    scoring.run(args.networks, backend=args.backend, with_scipy=not args.no_scipy, out_dir=args.out)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="fastprune", description=__doc__)
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback of an error instead of one line"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    info_parser = commands.add_parser(
        "info", help="version, build facts, backends and why any is unavailable"
    )
    info_parser.add_argument("--cmake-prefix", action="store_true", help="print only the CMake prefix path")
    bench_parser = commands.add_parser("bench", help="benchmarks")
    bench_parser.add_argument(
        "suite",
        choices=["scoring", "spectral", "compact", "conv", "ecosystem"],
        help="scoring: whole-network gm_scores; spectral: small-matrix ops; ecosystem: inside Torch-Pruning",
    )
    bench_parser.add_argument(
        "--networks",
        nargs="+",
        default=_DEFAULT_NETWORKS,
        choices=["resnet56", "resnet50", "vgg16", "mobilenet_v2"],
        help="networks to time (ecosystem: all four unless given)",
    )
    bench_parser.add_argument(
        "--backend",
        default="cpu",
        help="fastprune backend to time (default cpu; conv: cuda or triton time a GPU against cuDNN)",
    )
    bench_parser.add_argument("--no-scipy", action="store_true", help="skip the (slow) SciPy baseline")
    bench_parser.add_argument(
        "--out", type=Path, default=None, help="append rows to OUT/scoring.csv (make bench: bench/results)"
    )
    train_parser = commands.add_parser("train", help="train a ResNet with pruning (see --help)")
    from fastprune.training.cli import add_arguments

    add_arguments(train_parser)
    importlib.import_module("fastprune.training.cli_evaluate").register(commands)
    demo_parser = commands.add_parser(
        "demo", help="the main job: soft FPGM pruning of a ResNet-20 on the embedded digits, with a report"
    )
    demo_parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="report folder")
    demo_parser.add_argument("--epochs", type=int, default=6, help="epochs of the baseline run")
    demo_parser.add_argument(
        "--max-batches", type=int, default=None, help="stop each epoch after this many batches (smoke tests)"
    )
    importlib.import_module("fastprune.compaction.cli").register(commands)
    importlib.import_module("fastprune.research.command").register(commands)
    importlib.import_module("fastprune.research.reproduce_command").register(commands)
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except USER_ERRORS as error:  # a user's mistake (bad file, argument, model): one line, exit status 2
        if args.debug:
            raise
        command = " ".join(part for part in (args.command, getattr(args, "suite", None)) if part)
        print(f"fastprune {command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:  # Ctrl-C: what was written stays complete; one line, status 130
        if args.debug:
            raise
        command = " ".join(part for part in (args.command, getattr(args, "suite", None)) if part)
        print(f"fastprune {command}: {_interrupted(args, interrupt)}", file=sys.stderr)
        return 130


# What a user's input can raise (a missing or unsafe file, a bad value, an unsupported model): reported in
# one line; anything else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


def _interrupted(args: argparse.Namespace, interrupt: KeyboardInterrupt) -> str:
    """The line printed after Ctrl-C: what is on disk and how to go on."""
    from_training = getattr(interrupt, "epochs_done", None) is not None  # training.TrainingInterrupted
    if args.command == "train" and from_training:
        return f"interrupted: {interrupt}"
    if args.command == "demo":
        if from_training and interrupt.checkpoint is not None:
            return (
                f"interrupted: no report written; last complete checkpoint {interrupt.checkpoint} (epoch "
                f"{interrupt.epochs_done} of {interrupt.total_epochs}); `fastprune demo` starts over, "
                f"`fastprune train --resume {interrupt.checkpoint.parent}` continues that run alone"
            )
        return "interrupted: no report written; `fastprune demo` starts over"
    if args.command == "bench":
        return "interrupted: no rows written (a suite writes its CSV rows when it completes)"
    if args.command == "compact":
        return f"interrupted: {args.out} not written"
    if args.command == "evaluate":
        return "interrupted (evaluate writes no files)"
    if args.command == "compare":
        return "interrupted: results.csv in the output folder holds the settings done"
    if args.command == "reproduce":
        return "interrupted: the completed training runs are kept; the same command goes on from them"
    return "interrupted"


def _run(args: argparse.Namespace) -> int:
    if args.command == "compact":
        return importlib.import_module("fastprune.compaction.cli").compact_command(args)
    if args.command == "evaluate":
        return importlib.import_module("fastprune.training.cli_evaluate").evaluate_command(args)
    if args.command == "compare":
        return importlib.import_module("fastprune.research.command").compare_command(args)
    if args.command == "reproduce":
        return importlib.import_module("fastprune.research.reproduce_command").reproduce_command(args)

    if args.command == "info":
        if args.cmake_prefix:
            print(cmake_prefix())
            return 0
        return info()
    if args.command == "bench":
        return bench(args)
    if args.command == "train":
        return train(args)
    from fastprune.demo import run_demo

    run_demo(args.out, epochs=args.epochs, max_batches=args.max_batches)
    return 0


def train(args: argparse.Namespace) -> int:
    from fastprune.training import train as run_training
    from fastprune.training.cli import config_from_args

    result = run_training(
        None if args.resume else config_from_args(args),
        resume=args.resume,
        trust_checkpoint=args.trust_checkpoint,
    )
    if not result.config.quiet:
        print(f"final test accuracy {result.final_test_acc:.4f}; run folder: {result.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
