"""Every documented command line runs, and every subcommand's --help.

The commands are read from the documentation itself, so a newly documented one is picked up: README.md
and docs/**/*.md (shell lines of fenced blocks, `$(...)` inside any block, inline code in prose, also
when it wraps a line) and the module docstrings of fastprune/**/cli*.py, fastprune/benchmarks/*.py and
fastprune/demo.py (usage lines and inline code). A command is `python -m fastprune ...`, `fastprune ...`,
`torchrun ... -m fastprune ...`, `bench <suite> ...` (as the README names GPU runs) or `make <target>`.
The program name alone (`fastprune`) names the tool and is not a command.

Each one runs as a subprocess (`python -m fastprune ...`, OMP_NUM_THREADS=1 so that two of them at a
time do not spin on a shared 2-core machine) in a scratch folder that holds a tiny finished run at
runs/a (what the README's examples train first), and must exit 0 without a traceback. Commands that
would run long get size-shrinking options, by rule per subcommand (`SMALL`):

* train: 2 epochs of 2 batches of 16 (`--epochs 2 --max-batches 2 --batch-size 16`), and data sets that
  need files (`--dataset cifar10 --data-dir ~/data`) replaced by the embedded digits;
* reproduce: `--scale tiny` (filter also `--seeds 0 1 --criteria l1 fpgm`), data sets as for train;
* demo: `--epochs 1 --max-batches 2`;  compact: `--batch-sizes 1 --repeats 1`;  evaluate: `--max-batches 2`;
* bench: only ResNet-56 (`--networks resnet56`) and, as the benchmark runners have no size options, run
  through `BENCH_SMOKE`: the same `fastprune.cli.main(argv)` with one timed round per contender, one conv
  layer and two masks, 1e3 small matrices, three convs per scored network (the existing bench tests
  shrink the same module constants in-process).

Without a GPU, a command that needs one (`--device cuda`, `--backend cuda|triton`) must print one
"no/needs a CUDA GPU" line and exit with status 2. Commands with placeholders (`...`, `CHECKPOINT`) are
run as their entry in `MAPPED`; `make` targets run their Makefile recipe's fastprune lines (never make
itself: it would rebuild), except those in `NOT_RUN`, with the reason. A documented command that none
of this covers fails `test_every_documented_command_is_covered`: map it, or give it a rule.
"""

from __future__ import annotations

import ast
import concurrent.futures
import contextlib
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
HAS_CUDA = torch.cuda.is_available()
TIMEOUT_S = 300

# Size-shrinking options appended per subcommand (argparse: a later option wins over the documented one).
SMALL = {
    "train": ["--epochs", "2", "--max-batches", "2", "--batch-size", "16"],
    "demo": ["--epochs", "1", "--max-batches", "2"],
    "compact": ["--batch-sizes", "1", "--repeats", "1"],
    "evaluate": ["--max-batches", "2"],
    "compare": [
        "--max-batches",
        "1",
        "--batch-size",
        "16",
        "--rates",
        "0.3",
        "--filter-criteria",
        "l1",
        "random",
        "--kernel-criteria",
        "spectral_norm",
    ],
}
SMALL["reproduce"] = ["--scale", "tiny"]  # filter: also two seeds and two criteria (_fastprune_run)
GPU_ERROR = re.compile(r"(needs a|no) CUDA GPU")

# Documented commands with placeholders, and what runs for them (through the rules above, unless a
# `Run` is given). Keys are the documented text, normalised (`fastprune` for `python -m fastprune`).
MAPPED: dict[str, object] = {
    # DDP on two CPU processes: --standalone takes a free port (others may run torchrun at the same time).
    "torchrun --nproc_per_node 2 -m fastprune train ...": (
        "torchrun --standalone --nproc_per_node 2 -m fastprune train"
    ),
    # "`fastprune --debug ...` shows the traceback instead" (of the one-line error): a missing file.
    "fastprune --debug ...": None,  # filled in below (a Run: exit status 1 and a traceback expected)
    "fastprune compact CHECKPOINT -o OUT": "fastprune compact runs/a/model.pt -o small.pt",
    "fastprune compact": "fastprune compact runs/a/model.pt -o small.pt",  # the subcommand named in prose
    "fastprune compare RUN_OR_MODEL": "fastprune compare runs/a",
    "fastprune reproduce kernel|filter": "fastprune reproduce kernel",  # the README section's title
    "fastprune bench ...": "fastprune bench --help",  # "the runners behind `python -m fastprune bench ...`"
    "fastprune evaluate RUN_OR_MODEL": "fastprune evaluate runs/a",  # its docstring's usage line
}
# Documented commands that this file does not run, and why.
NOT_RUN = {
    "make demo": "~1 min; its recipe `fastprune demo --out runs/demo` is `fastprune demo` (run here, small)",
    "make test": "runs the whole test suite, this file included",
    "make bench-pytest": "the pytest-benchmark suites: minutes; bench/ tests them",
    "make gpu-check": "needs a GPU; its dry run is tests/test_gpu_check.py",
    "make gpu-check DRY_RUN=1": "tests/test_gpu_check.py runs tools/gpu_check.sh --dry-run",
    "make aarch64-check": "cross-compiles and installs Debian packages; tests/test_aarch64.py",
    "make sanitize": "make test runs it after the test suite (a ~4 min instrumented build)",
    "make fuzz": "long by design; its two parts run briefly in tests/test_fuzz_ops.py and test_capi_check.py",
}

# The bench runners have no size options: shrink their module constants, then run the CLI as documented.
BENCH_SMOKE = """
import sys, time
from fastprune.benchmarks import compaction, ecosystem, masked_conv, scoring, spectral

def once(fn, min_runs=3, budget_s=2.0):  # median_seconds: one warm-up, one timed run
    fn()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start

rounds = compaction.interleaved_times
for module in (scoring, spectral):
    module.median_seconds = once
for module in (compaction, ecosystem, masked_conv):
    module.interleaved_times = lambda fns, repeats: rounds(fns, 1)
matmul = scoring.matmul_gflops
scoring.matmul_gflops = lambda size=2048: matmul(256)
spectral_run = spectral.run
spectral.run = lambda sizes, networks, out_dir=None: spectral_run([1000], networks, out_dir)
masked_conv.LAYERS = masked_conv.LAYERS[:1]
masked_conv.MASKS = [("filter", 0.5), ("kernel", 0.9)]
for module in (scoring, spectral):  # the networks' first three convs
    module.NETWORKS = {name: shapes[:3] for name, shapes in module.NETWORKS.items()}
compaction.CASES = [case for case in compaction.CASES if case[3] == 1]  # batch 1
compaction.VARIANTS = compaction.VARIANTS[:1]
from fastprune.cli import main
sys.exit(main(sys.argv[1:]))
"""


@dataclass(frozen=True)
class Run:
    """One subprocess: `argv` after the interpreter; the exit status and stderr it must give."""

    argv: tuple[str, ...]
    status: int = 0
    stderr_has: Optional[re.Pattern] = None
    traceback: bool = False  # a traceback is expected (--debug)
    program: Optional[str] = None  # instead of this Python interpreter

    @property
    def id(self) -> str:
        words = [w for w in self.argv if w not in ("-m", "-c", BENCH_SMOKE)]
        return " ".join([Path(self.program).name, *words] if self.program else words)[:80]


MAPPED["fastprune --debug ..."] = Run(
    ("-m", "fastprune", "--debug", "compact", "missing.pt", "-o", "small.pt"),
    status=1,
    stderr_has=re.compile(r"FileNotFoundError"),
    traceback=True,
)


# --- finding the documented commands --------------------------------------------------------------------


def _normalise(text: str) -> Optional[str]:
    """The command in a piece of documentation (prefix `fastprune`), or None if it is not one."""
    text = " ".join(text.replace("\\\n", " ").split())
    text = re.sub(r"^\$ ", "", text)
    text = re.sub(r"^python3? -m fastprune(?=\s|$)", "fastprune", text)
    if re.match(r"bench (scoring|spectral|compact|conv|ecosystem)\b", text):
        text = "fastprune " + text
    if re.match(r"fastprune\s+\S", text) or re.match(r"make\s+[\w-]+", text):
        return text
    if re.match(r"torchrun\s.*-m fastprune(\s|$)", text):
        return text
    return None


def _inline_code(text: str) -> list[str]:
    return [a or b for a, b in re.findall(r"``(.+?)``|`([^`]+)`", text, flags=re.S)]


def _from_markdown(path: Path) -> list[tuple[str, str]]:
    found = []
    prose: list[str] = []
    fence: Optional[str] = None
    pending = ""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        where = f"{path.relative_to(ROOT)}:{number}"
        if line.lstrip().startswith("```"):
            fence = None if fence is not None else (line.strip()[3:].strip() or "unlabelled")
            prose.append("")
            continue
        if fence is None:
            prose.append(line)
            continue
        prose.append("")
        for inner in re.findall(r"\$\((.+?)\)", line):  # command substitutions, any language
            if _normalise(inner):
                found.append((_normalise(inner), where))
        if fence not in ("bash", "sh", "shell", "console", "unlabelled"):  # ```text: a program's output
            continue
        pending += line.rstrip("\\") + " " if line.endswith("\\") else line
        if line.endswith("\\"):
            continue
        command, pending = re.sub(r"\s#.*$", "", pending), ""
        if _normalise(command):
            found.append((_normalise(command), where))
    text = "\n".join(prose)
    for match in re.finditer(r"``(.+?)``|`([^`]+)`", text, flags=re.S):
        command = _normalise(match.group(1) or match.group(2))
        if command:
            found.append((command, f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, match.start()) + 1}"))
    return found


def _from_docstring(path: Path) -> list[tuple[str, str]]:
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    where = str(path.relative_to(ROOT))
    found = []
    for line in doc.splitlines():
        command = _normalise(re.sub(r"\[[^\]]*\]", "", line))  # usage lines; [optional parts] left out
        if command:
            found.append((command, where))
    found += [(c, where) for c in map(_normalise, _inline_code(doc)) if c]
    return found


def documented_commands() -> dict[str, list[str]]:
    """{command: [where it is documented]}, in order of first appearance."""
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
    modules = sorted({*ROOT.glob("fastprune/**/cli*.py"), *ROOT.glob("fastprune/benchmarks/*.py")})
    found = [hit for path in docs if path.exists() for hit in _from_markdown(path)]
    found += [hit for path in [*modules, ROOT / "fastprune" / "demo.py"] for hit in _from_docstring(path)]
    commands: dict[str, list[str]] = {}
    for command, where in found:
        commands.setdefault(command, []).append(where)
    return commands


# --- what runs for each ----------------------------------------------------------------------------------


def _make_recipe(target: str) -> list[str]:
    """The recipe lines of a Makefile target, `$(PY)` replaced by `python`."""
    lines, inside = [], False
    for line in (ROOT / "Makefile").read_text().splitlines():
        if re.match(rf"{re.escape(target)}\s*:", line):
            inside = True
        elif inside and line.startswith("\t"):
            lines.append(line.strip().replace("$(PY)", "python"))
        elif inside:
            break
    return lines


def _option(args: list[str], name: str, default: Optional[str] = None) -> Optional[str]:
    """The last value given to option `name` (argparse keeps the last)."""
    values = [args[i + 1] for i, word in enumerate(args[:-1]) if word == name]
    return values[-1] if values else default


def _fastprune_run(args: list[str]) -> Run:
    """A `fastprune ARGS` command with the rules of the module docstring applied."""
    sub = next((a for a in args if not a.startswith("-")), None)
    if "--help" in args or "-h" in args or sub == "info":
        return Run(("-m", "fastprune", *args))
    if sub in ("train", "demo", "compact", "evaluate", "compare", "reproduce"):
        args = [*args, *SMALL[sub]]
        if sub == "reproduce" and "filter" in args:
            args += ["--seeds", "0", "1", "--criteria", "l1", "fpgm"]
        if sub in ("train", "reproduce") and _option(args, "--dataset", "digits") != "digits":
            args += ["--dataset", "digits"]  # data sets that need files: the embedded one
        if (
            sub in ("train", "reproduce")
            and not HAS_CUDA
            and _option(args, "--device", "cpu").startswith("cuda")
        ):
            return Run(("-m", "fastprune", *args), status=2, stderr_has=GPU_ERROR)
        return Run(("-m", "fastprune", *args))
    if sub == "bench":
        suite = args[args.index("bench") + 1]
        if suite != "conv" and "--networks" not in args:
            args = [*args, "--networks", "resnet56"]
        backend = _option(args, "--backend", "cpu")
        if backend in ("cuda", "triton") and not HAS_CUDA:
            return Run(("-c", BENCH_SMOKE, *args), status=2, stderr_has=GPU_ERROR)
        return Run(("-c", BENCH_SMOKE, *args))
    raise LookupError(f"no rule for subcommand {sub!r}")


def runs_for(command: str) -> list[Run]:
    """What runs for one documented command; LookupError if nothing covers it."""
    if command in NOT_RUN:
        return []
    if command in MAPPED:
        target = MAPPED[command]
        if isinstance(target, Run):
            return [target]
        command = str(target)
    words = shlex.split(command)
    if words[0] == "make":
        if any("=" in w for w in words[2:]):
            raise LookupError("a make target with variables: add it to NOT_RUN or MAPPED")
        recipe = _make_recipe(words[1])
        if not recipe or not all(line.startswith("python -m fastprune ") for line in recipe):
            raise LookupError(f"recipe {recipe} is not fastprune commands: add it to NOT_RUN or MAPPED")
        return [run for line in recipe for run in runs_for(_normalise(line))]
    if any(w == "..." or re.fullmatch(r"[A-Z][A-Z_]+", w) or "RUN/" in w for w in words):
        raise LookupError("it has placeholders: add it to MAPPED")
    if words[0] == "torchrun":
        at = words.index("fastprune")
        launcher = ("-m", "torch.distributed.run", *words[1 : at - 1], "-m", "fastprune")
        run = _fastprune_run(words[at + 1 :])
        return [Run((*launcher, *run.argv[2:]), run.status, run.stderr_has)]
    return [_fastprune_run(words[1:])]


def _plan() -> tuple[dict[Run, list[str]], dict[str, str]]:
    """({run: documented commands it covers}, {uncovered command: why})."""
    runs: dict[Run, list[str]] = {}
    uncovered = {}
    for command, where in documented_commands().items():
        try:
            for run in runs_for(command):
                runs.setdefault(run, []).append(f"{command}  ({', '.join(where)})")
        except LookupError as error:
            uncovered[command] = f"{error} ({', '.join(where)})"
    return runs, uncovered


def _subcommands() -> list[str]:
    from fastprune.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main(["--help"])
    return re.search(r"\{([\w,-]+)\}", out.getvalue()).group(1).split(",")


PLAN, UNCOVERED = _plan()
# `fastprune ...` as the README writes it: the installed entry point, where there is one.
SCRIPT = Path(sys.executable).parent / "fastprune"
if SCRIPT.exists():
    PLAN.setdefault(Run(("info", "--cmake-prefix"), program=str(SCRIPT)), ["the console script"])
HELP_RUNS = [Run(("-m", "fastprune", "--help"))] + [
    Run(("-m", "fastprune", s, "--help")) for s in _subcommands()
]


# --- running them ----------------------------------------------------------------------------------------


def _execute(run: Run, cwd: Path, seed: Path) -> subprocess.CompletedProcess:
    if any("runs/a" in word for word in run.argv):
        shutil.copytree(seed / "runs", cwd / "runs")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(
        [run.program or sys.executable, *run.argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )


@pytest.fixture(scope="module")
def results(request, tmp_path_factory):
    """Starts the selected tests' runs, two at a time, as soon as the first test asks; {run: future}."""
    from fastprune.training import TrainConfig, train

    selected = [
        item.callspec.params["run"]
        for item in request.session.items
        if getattr(item, "module", None) is sys.modules[__name__] and hasattr(item, "callspec")
    ]
    seed = tmp_path_factory.mktemp("seed")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        config = TrainConfig(
            epochs=2, batch_size=16, max_batches=2, progress=False, out_dir=str(seed / "runs/a")
        )
        train(config)
    finally:
        torch.set_num_threads(threads)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=2)
    futures = {run: pool.submit(_execute, run, tmp_path_factory.mktemp("cmd"), seed) for run in selected}
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)


def _check(run: Run, done: subprocess.CompletedProcess, what: str) -> None:
    shown = ["BENCH_SMOKE" if word == BENCH_SMOKE else word for word in done.args]
    context = (
        f"{what}\n$ {shlex.join(shown)}\n--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"
    )
    assert done.returncode == run.status, context
    assert ("Traceback" in done.stderr) == run.traceback, context
    if run.stderr_has is not None:
        assert run.stderr_has.search(done.stderr), context
    if run.status == 2:  # a user's mistake or a missing GPU: one line
        assert len(done.stderr.strip().splitlines()) == 1, context
    if run.status == 0:
        assert done.stdout.strip(), context


@pytest.mark.parametrize("run", HELP_RUNS, ids=lambda run: run.id)
def test_help(run: Run, results) -> None:
    done = results[run].result()
    _check(run, done, "--help")
    assert done.stdout.startswith("usage: fastprune")


@pytest.mark.parametrize("run", [run for run in PLAN if run not in HELP_RUNS], ids=lambda run: run.id)
def test_documented_command(run: Run, results) -> None:
    _check(run, results[run].result(), "documented as:\n  " + "\n  ".join(PLAN[run]))


def test_every_documented_command_is_covered() -> None:
    assert not UNCOVERED, "documented commands that no rule, MAPPED or NOT_RUN entry covers:\n" + "\n".join(
        f"  {command}: {why}" for command, why in UNCOVERED.items()
    )


def test_the_extraction_finds_the_known_commands() -> None:
    """A guard on the parser itself: commands in a fenced block, a continuation line, prose wrapped across
    lines, a `$(...)`, a docstring usage line and a make target are all found."""
    found = documented_commands()
    for command in (
        "fastprune train --resume runs/a",
        "fastprune train --arch resnet56 --dataset cifar10 --data-dir ~/data --epochs 200 --criterion fpgm "
        "--rate 0.4 --device cuda --out-dir runs/r56",
        "fastprune bench conv",
        "fastprune info --cmake-prefix",
        "fastprune bench ecosystem",
        "make demo",
    ):
        assert command in found, command


def test_mapped_and_skipped_commands_are_still_documented() -> None:
    found = documented_commands()
    stale = [command for command in [*MAPPED, *NOT_RUN] if command not in found]
    assert not stale, f"no longer documented, remove from MAPPED / NOT_RUN: {stale}"
