"""Mixed-precision training (`fastprune train --amp`, TrainConfig.amp): autocast forward, float32 weights,
optimizer and checkpoints, exact resume; float16 with a gradient scaler on CUDA."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from conftest import TINY_TRAIN, die_while_writing_epoch

from fastprune import models
from fastprune.training import TrainConfig, load_checkpoint, train

TINY = TINY_TRAIN


def _conv_output_dtypes(model: torch.nn.Module) -> list[torch.dtype]:
    """Records the dtype of the first conv's output at every forward that computes (not the shape-only
    pass on meta tensors that counts the MACs of the metrics)."""
    seen: list[torch.dtype] = []
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))

    def hook(module, args, out) -> None:  # returns None: the output stays as it is
        if not out.is_meta:
            seen.append(out.dtype)

    conv.register_forward_hook(hook)
    return seen


def test_bfloat16_autocast_on_cpu_keeps_float32_state(tmp_path) -> None:
    model = models.create("resnet20", num_classes=10)
    seen = _conv_output_dtypes(model)
    result = train(TrainConfig(epochs=2, amp="auto", out_dir=str(tmp_path), **TINY), model=model)
    assert set(seen) == {torch.bfloat16}  # training, pruning-free evaluation: all under autocast
    assert all(p.dtype is torch.float32 for p in result.model.parameters())
    state = load_checkpoint(tmp_path)
    assert state["config"]["amp"] == "bfloat16" and state["scaler"] is None
    assert all(t.dtype is torch.float32 for t in state["model"].values() if t.is_floating_point())
    assert all(torch.isfinite(torch.tensor([m.train_loss, m.test_loss])).all() for m in result.metrics)


def test_without_amp_nothing_is_autocast(tmp_path) -> None:
    model = models.create("resnet20", num_classes=10)
    seen = _conv_output_dtypes(model)
    train(TrainConfig(epochs=1, out_dir=str(tmp_path), **TINY), model=model)
    assert seen and set(seen) == {torch.float32}


def test_amp_resume_continues_exactly(tmp_path, monkeypatch) -> None:
    straight = train(TrainConfig(epochs=3, amp="bfloat16", out_dir=str(tmp_path / "straight"), **TINY))
    die_while_writing_epoch(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(epochs=3, amp="bfloat16", out_dir=str(tmp_path / "cut"), **TINY))
    monkeypatch.undo()
    resumed = train(resume=tmp_path / "cut" / "checkpoint.pt")
    assert resumed.config.amp == "bfloat16"
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert [m.test_loss for m in straight.metrics] == [m.test_loss for m in resumed.metrics]


@pytest.mark.parametrize(
    ("amp", "device", "message"),
    [
        ("float16", "cpu", "amp: float16 mixed precision is for CUDA"),
        ("half", "cpu", "amp: expected one of None, 'auto', 'bfloat16', 'float16', got 'half'"),
    ],
)
def test_bad_amp_is_refused(tmp_path, amp: str, device: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        train(TrainConfig(epochs=1, amp=amp, device=device, out_dir=str(tmp_path), **TINY))


def test_cli_amp_flag(tmp_path) -> None:
    run = [
        sys.executable,
        "-m",
        "fastprune",
        "train",
        "--epochs",
        "1",
        "--max-batches",
        "1",
        "--batch-size",
        "8",
    ]
    bad = subprocess.run(
        [*run, "--amp", "float16", "--out-dir", str(tmp_path / "a")], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "amp: float16 mixed precision is for CUDA" in bad.stderr
    assert "Traceback" not in bad.stderr
    ok = subprocess.run(
        [*run, "--amp", "--no-progress", "--out-dir", str(tmp_path / "b")], capture_output=True
    )
    assert ok.returncode == 0, ok.stderr
    assert load_checkpoint(tmp_path / "b")["config"]["amp"] == "bfloat16"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_float16_on_cuda_uses_a_grad_scaler(tmp_path) -> None:
    model = models.create("resnet20", num_classes=10)
    seen = _conv_output_dtypes(model)
    train(TrainConfig(epochs=2, amp="auto", device="cuda", out_dir=str(tmp_path), **TINY), model=model)
    assert set(seen) == {torch.float16}
    state = load_checkpoint(tmp_path)
    assert state["config"]["amp"] == "float16" and state["scaler"]["scale"] > 0
