"""The training loop: resume equivalence, atomic checkpoints, DDP mask agreement, end-to-end on digits."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from conftest import TINY_TRAIN, die_while_writing_epoch

from fastprune.training import TrainConfig, load_checkpoint, save_atomic, train
from fastprune.training import loop as training_loop

TINY = TINY_TRAIN


def _masks(result) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in result.pruner.masks.items()}


def test_resume_continues_exactly(tmp_path, monkeypatch):
    config = TrainConfig(epochs=3, out_dir=str(tmp_path / "straight"), **TINY)
    straight = train(config)

    # Interrupted run: the process "dies" while writing the metrics of epoch 3, so the last checkpoint
    # holds 2 epochs; resuming must reproduce the uninterrupted run bit for bit.
    interrupted = TrainConfig(epochs=3, out_dir=str(tmp_path / "interrupted"), **TINY)
    die_while_writing_epoch(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        train(interrupted)
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "interrupted")["epochs_done"] == 2
    resumed = train(resume=tmp_path / "interrupted" / "checkpoint.pt")

    assert [m.epoch for m in resumed.metrics] == [1, 2, 3]
    for name, mask in _masks(straight).items():
        assert torch.equal(mask, resumed.pruner.masks[name]), name
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert straight.final_test_acc == resumed.final_test_acc
    assert [m.test_loss for m in straight.metrics] == [m.test_loss for m in resumed.metrics]


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_atomic({"epochs_done": 1}, path)

    def torn_save(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(OSError):
        save_atomic({"epochs_done": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["epochs_done"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary left behind


def test_killed_process_keeps_a_loadable_checkpoint(tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "fastprune", "train", "--epochs", "8", "--batch-size", "16",
               "--max-batches", "2", "--no-progress", "--out-dir", str(out)]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not (out / "checkpoint.pt").exists():
        assert process.poll() is None, process.stderr.read().decode()
        assert time.time() < deadline, "no checkpoint written within 120 s"
        time.sleep(0.05)
    time.sleep(0.7)  # kill at some moment of a later epoch (possibly mid-write)
    assert process.poll() is None, "the run ended before it could be killed: lengthen it"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    state = load_checkpoint(out)
    assert 1 <= state["epochs_done"] <= 8
    assert state["pruner"]["steps"] == state["epochs_done"]
    done = state["epochs_done"]
    resumed = train(resume=out)
    assert len(resumed.metrics) == 8 and resumed.metrics[done - 1].epoch == done


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    result = train(
        TrainConfig(epochs=2, out_dir=out, seed=rank, **TINY)
    )  # different seeds per rank on purpose
    torch.save(_masks(result), Path(out) / f"masks_rank{rank}.pt")


def test_ddp_two_processes_agree_on_masks(tmp_path):
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    masks = [torch.load(tmp_path / f"masks_rank{r}.pt") for r in range(2)]
    assert masks[0].keys() == masks[1].keys()
    for name in masks[0]:
        assert torch.equal(masks[0][name], masks[1][name]), name
    assert sum(int((~m).sum()) for m in masks[0].values()) > 0


def test_demo_end_to_end_on_digits(tmp_path):
    from fastprune.demo import run_demo

    report = run_demo(tmp_path, epochs=3, prune_epochs=1, finetune_epochs=1, progress=False)
    saved = torch.load(tmp_path / "pruned" / "model.pt", weights_only=False)
    assert saved["arch"] == "resnet20"
    assert int(saved["filter_masks"]["conv1"].sum()) == 16 - 6  # floor(16 * 0.4) = 6 filters pruned
    assert int(saved["filter_masks"]["layer3.2.conv2"].sum()) == 64 - 25
    assert saved["final_test_acc"] > 0.4  # chance is 0.1
    text = report.read_text()
    assert "soft FPGM 40%" in text and "MACs" in text and "plain PyTorch" in text
    assert (tmp_path / "accuracy.png").stat().st_size > 0 and (tmp_path / "kept_filters.png").exists()
    rows = (tmp_path / "pruned" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 and rows[2].split(",")[1] == "finetune"


def test_kernel_pipeline_prunes_once_and_keeps_masks_while_fine_tuning(tmp_path):
    # Threshold high enough that the L1-trained kernels lose a visible share at the single prune.
    config = TrainConfig(method="kernel", epochs=2, finetune_epochs=2, kernel_threshold=0.05,
                         out_dir=str(tmp_path), **TINY)  # fmt: skip
    result = train(config)
    assert [m.phase for m in result.metrics] == ["train", "train", "finetune", "finetune"]
    assert [m.criterion for m in result.metrics] == [None, "spectral_norm", None, None]
    masks = result.kernel_masks
    modules = dict(result.model.named_modules())
    removed = 0
    for name, keep in masks.items():
        weight = modules[name].weight.detach()
        assert keep.shape == weight.shape[:2]
        assert torch.all(weight[~keep] == 0), name  # still exactly zero after two fine-tuning epochs
        removed += int((~keep).sum())
    assert removed > 0
    kernels = sum(m.numel() for m in masks.values())
    assert result.metrics[-1].pruned_kernels == pytest.approx(removed / kernels)
    assert "conv1" in masks  # the CIFAR stem is 3x3, so it is pruned too (only a 7x7 stem is excluded)


def test_held_zero_convs_train_as_masked_convs(tmp_path, monkeypatch):
    """Hard filter pruning (after its first step) and fine-tuning run the pruned convs as MaskedConv2d,
    and the plain model comes back for evaluation and checkpoints."""
    converted = []
    real_convert = training_loop.convert

    def spy(model, masks, backend="auto"):
        converted.append(sorted(masks))
        out = real_convert(model, masks, backend=backend)
        assert any(type(m).__name__ == "MaskedConv2d" for m in model.modules())
        return out

    monkeypatch.setattr(training_loop, "convert", spy)
    config = TrainConfig(
        mode="hard", epochs=3, finetune_epochs=1, masked_conv=True, out_dir=str(tmp_path), **TINY
    )
    result = train(config)
    assert len(converted) == 3  # epochs 2 and 3 (hard mode after step 1) and the fine-tuning epoch
    assert "conv1" in converted[0] and len(converted[0]) == 19
    assert all(type(m).__name__ != "MaskedConv2d" for m in result.model.modules())
    modules = dict(result.model.named_modules())
    for name, keep in result.pruner.masks.items():
        assert torch.all(modules[name].weight[~keep] == 0), name
    state = load_checkpoint(tmp_path)["model"]
    assert not any(key.endswith(".mask") for key in state)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(rate=1.0), "rate"),
        (dict(rate=-0.1), "rate"),
        (dict(method="magic"), "method"),
        (dict(epochs=0), "epochs"),
        (dict(optimizer="rmsprop"), "optimizer"),
    ],
)
def test_bad_config_is_rejected(tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        train(TrainConfig(out_dir=str(tmp_path), **{**TINY, **change}))


def test_unknown_arch_and_criterion(tmp_path):
    with pytest.raises(ValueError, match="resnet56"):
        train(TrainConfig(out_dir=str(tmp_path), **{**TINY, "arch": "alexnet"}))
    with pytest.raises(ValueError, match="criterion"):
        train(TrainConfig(out_dir=str(tmp_path), criterion="magic", **TINY))


def test_resume_from_a_foreign_file(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="checkpoint"):
        train(resume=tmp_path)
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        train(resume=tmp_path / "nothing")
