"""Ctrl-C: a run stops with one line naming its last complete checkpoint (exit status 130, no traceback
unless --debug), every file written so far stays complete, and `--resume` finishes the run."""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TINY_TRAIN

from fastprune.cli import main
from fastprune.training import TrainConfig, TrainingInterrupted, load_checkpoint, save_atomic, train
from fastprune.training import loop as training_loop
from fastprune.training.metrics import EpochMetrics, write_metrics

TINY = TINY_TRAIN
TINY_ARGS = ["--batch-size", "16", "--max-batches", "2", "--no-progress"]
MESSAGE = re.compile(
    r"fastprune train: interrupted: last complete checkpoint (?P<checkpoint>\S+) "
    r"\(epoch (?P<epoch>\d+) of (?P<total>\d+)\); resume with --resume (?P<run>\S+)"
)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def default_sigint():
    """Python's own SIGINT handler (KeyboardInterrupt), whatever the test runner installed."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _interrupt_in_epoch(monkeypatch, epoch: int, before=None) -> None:
    """Ctrl-C after the first batch of training epoch `epoch` (1-based); `before()` runs just before."""
    real = training_loop._train_epoch
    calls = []

    def train_epoch(model, loader, *args):
        calls.append(1)
        if len(calls) < epoch:
            return real(model, loader, *args)
        if before is not None:
            before()

        def one_batch_then_ctrl_c():
            for i, batch in enumerate(loader):
                if i == 1:
                    raise KeyboardInterrupt
                yield batch

        return real(model, one_batch_then_ctrl_c(), *args)

    monkeypatch.setattr(training_loop, "_train_epoch", train_epoch)


def _csv_rows(path: Path) -> list[dict]:
    data = path.read_bytes()
    assert data.endswith(b"\n"), "the last row is cut"
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header, *rows = list(reader)
    assert all(len(row) == len(header) for row in rows), rows
    return [dict(zip(header, row)) for row in rows]


def _no_temporaries(folder: Path) -> None:
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")], list(folder.iterdir())


def test_ctrl_c_mid_epoch_leaves_the_previous_checkpoint_byte_identical(tmp_path, monkeypatch):
    out = tmp_path / "run"
    snapshot = {}

    def remember():
        snapshot.update({name: (out / name).read_bytes() for name in ("checkpoint.pt", "metrics.csv")})

    _interrupt_in_epoch(monkeypatch, 2, before=remember)
    with pytest.raises(TrainingInterrupted) as interrupted:
        train(TrainConfig(epochs=3, out_dir=str(out), **TINY))
    assert isinstance(interrupted.value, KeyboardInterrupt)  # code that catches that still does
    assert (interrupted.value.checkpoint, interrupted.value.epochs_done) == (out / "checkpoint.pt", 1)
    assert str(interrupted.value).endswith(f"(epoch 1 of 3); resume with --resume {out}")
    for name, data in snapshot.items():
        assert (out / name).read_bytes() == data, name
    assert not (out / "model.pt").exists()
    _no_temporaries(out)

    monkeypatch.undo()
    resumed = train(resume=out)
    assert [m.epoch for m in resumed.metrics] == [1, 2, 3]
    assert [int(r["epoch"]) for r in _csv_rows(out / "metrics.csv")] == [1, 2, 3]


def test_ctrl_c_while_an_epoch_is_written_takes_effect_once_it_is(tmp_path, monkeypatch, default_sigint):
    """A Ctrl-C between metrics.csv and checkpoint.pt would leave the CSV one row ahead: it waits."""
    out = tmp_path / "run"
    real = training_loop.write_metrics

    def ctrl_c_then_write(metrics, out_dir):
        if len(metrics) == 2:
            os.kill(os.getpid(), signal.SIGINT)  # delivered now: Python would raise at the next line
        real(metrics, out_dir)

    monkeypatch.setattr(training_loop, "write_metrics", ctrl_c_then_write)
    with pytest.raises(TrainingInterrupted) as interrupted:
        train(TrainConfig(epochs=3, out_dir=str(out), **TINY))
    assert interrupted.value.epochs_done == 2
    assert load_checkpoint(out)["epochs_done"] == 2
    assert [int(r["epoch"]) for r in _csv_rows(out / "metrics.csv")] == [1, 2]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler put back
    _no_temporaries(out)


def test_ctrl_c_before_the_first_checkpoint(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    _interrupt_in_epoch(monkeypatch, 1)
    assert main(["train", "--epochs", "2", *TINY_ARGS, "--out-dir", str(out)]) == 130
    err = capsys.readouterr().err
    assert (
        err == f"fastprune train: interrupted: no checkpoint written to {out} yet (stopped in epoch 1 of 2)\n"
    )


def test_cli_prints_one_line_and_exits_130_or_raises_with_debug(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    _interrupt_in_epoch(monkeypatch, 2)
    assert main(["train", "--epochs", "3", *TINY_ARGS, "--out-dir", str(out)]) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    match = MESSAGE.fullmatch(err.strip())
    assert match and match["checkpoint"] == str(out / "checkpoint.pt") and match["run"] == str(out), err
    assert (match["epoch"], match["total"]) == ("1", "3")

    monkeypatch.undo()
    _interrupt_in_epoch(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):  # the traceback: Python prints it
        main(["--debug", "train", "--resume", str(out)])


def test_bench_and_demo_say_what_was_not_written(tmp_path, monkeypatch, capsys):
    from fastprune import demo
    from fastprune.benchmarks import scoring

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(scoring, "run", ctrl_c)
    assert main(["bench", "scoring", "--out", str(tmp_path)]) == 130
    assert capsys.readouterr().err == (
        "fastprune bench scoring: interrupted: no rows written "
        "(a suite writes its CSV rows when it completes)\n"
    )

    def demo_ctrl_c(*args, **kwargs):  # in the baseline run's third epoch
        raise TrainingInterrupted(tmp_path / "baseline" / "checkpoint.pt", 2, 6, tmp_path / "baseline")

    monkeypatch.setattr(demo, "run_demo", demo_ctrl_c)
    assert main(["demo", "--out", str(tmp_path)]) == 130
    err = capsys.readouterr().err
    assert err.startswith("fastprune demo: interrupted: no report written; last complete checkpoint ")
    assert f"`fastprune train --resume {tmp_path / 'baseline'}` continues that run alone" in err
    assert err.count("\n") == 1


def test_atomic_writes_survive_ctrl_c_and_keep_the_usual_permissions(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_atomic({"epochs_done": 1}, path)
    write_metrics([EpochMetrics(1, "train", 0.1, 1.0, 0.5)], tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def ctrl_c(fd):  # once the temporary file is written, before it replaces the old one
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        save_atomic({"epochs_done": 2}, path)
    with pytest.raises(KeyboardInterrupt):
        write_metrics([EpochMetrics(1, "train", 0.1, 1.0, 0.5)] * 2, tmp_path)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no temporary left either
    umask = os.umask(0o022)
    os.umask(umask)
    for name in before:  # as open() would create them, not mkstemp's 0600
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


def test_ctrl_c_on_the_command_line_then_resume(tmp_path):
    """The real thing: SIGINT to `python -m fastprune train` once its first checkpoint exists."""
    run = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "fastprune", "train", "--epochs", "8", "--batch-size", "16",
               "--max-batches", "2", "--out-dir", str(run)]  # fmt: skip
    # Python turns SIGINT into KeyboardInterrupt unless it starts with SIGINT ignored (as background jobs
    # of a non-interactive shell do): give the child the default disposition, as a terminal would.
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    deadline = time.time() + 120
    while not (run / "checkpoint.pt").exists():
        assert process.poll() is None, process.communicate()[1]
        assert time.time() < deadline, "no checkpoint written within 120 s"
        time.sleep(0.02)
    assert process.poll() is None, "the run ended before it could be interrupted: lengthen it"
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)

    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr, stderr
    last = stderr.rstrip("\n").split("\n")[-1].split("\r")[-1]  # after the (cleared) progress bar
    match = MESSAGE.fullmatch(last)
    assert match, stderr[-2000:]
    assert stderr.count("interrupted") == 1
    assert (match["checkpoint"], match["run"], match["total"]) == (str(run / "checkpoint.pt"), str(run), "8")
    done = int(match["epoch"])
    state = load_checkpoint(run)
    assert state["epochs_done"] == done and state["pruner"]["steps"] == done
    rows = _csv_rows(run / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == list(range(1, done + 1))
    assert f"epoch {done}/8 " in stdout
    _no_temporaries(run)

    resumed = subprocess.run(
        [sys.executable, "-m", "fastprune", "train", "--resume", str(run)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0 and "Traceback" not in resumed.stderr, resumed.stderr
    assert [int(r["epoch"]) for r in _csv_rows(run / "metrics.csv")] == list(range(1, 9))
    assert load_checkpoint(run)["epochs_done"] == 8 and (run / "model.pt").exists()
