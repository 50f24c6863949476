"""Ctrl-C in a training run: :class:`TrainingInterrupted`, and the epoch's writes that it waits for."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Optional


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run. The files written so far are complete: `checkpoint` (None if no epoch had
    ended) holds `epochs_done` of `total_epochs` epochs, metrics.csv/json the same rows, and
    ``train(resume=checkpoint)`` continues the run (``fastprune train --resume RUN``). A KeyboardInterrupt,
    so code that catches that (or lets it end the program) behaves as before."""

    def __init__(self, checkpoint: Optional[Path], epochs_done: int, total_epochs: int, out_dir: Path):
        super().__init__(checkpoint, epochs_done, total_epochs, out_dir)
        self.checkpoint, self.epochs_done, self.total_epochs = checkpoint, epochs_done, total_epochs
        self.out_dir = out_dir

    def __str__(self) -> str:
        if self.checkpoint is None:
            return (
                f"no checkpoint written to {self.out_dir} yet (stopped in epoch {self.epochs_done + 1} of "
                f"{self.total_epochs})"
            )
        return (
            f"last complete checkpoint {self.checkpoint} (epoch {self.epochs_done} of {self.total_epochs}); "
            f"resume with --resume {self.checkpoint.parent}"
        )


@contextlib.contextmanager
def ctrl_c_deferred() -> Iterator[None]:
    """Runs the block to its end even if Ctrl-C arrives meanwhile; the KeyboardInterrupt is raised after it.
    Used around an epoch's writes, so that a Ctrl-C never leaves metrics.csv one row ahead of the
    checkpoint (each file is atomic on its own; this makes the pair so). A no-op outside the main thread
    or when SIGINT has a handler other than Python's default one."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt
