"""`python -m fastprune bench conv`: the rows it writes, and clear errors for a backend this machine cannot
time (no GPU here: the cuda and triton runs against cuDNN need one)."""

from __future__ import annotations

import csv

import pytest
import torch
from conftest import requires_cuda

from fastprune.benchmarks import masked_conv
from fastprune.cli import main


@pytest.fixture
def tiny_layers(monkeypatch):
    """One small layer and two masks: the run's shape, in a second."""
    monkeypatch.setattr(masked_conv, "LAYERS", [("tiny 3x3", 2, 8, 8, 6, 3)])
    monkeypatch.setattr(masked_conv, "MASKS", [("filter", 0.5), ("kernel", 0.9)])


def _rows(path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_cpu_run_writes_one_row_per_mask_and_pass(tiny_layers, tmp_path) -> None:
    masked_conv.run(tmp_path, reps=2)
    rows = _rows(tmp_path / "masked_conv.csv")
    assert [(r["mask"], r["pass"]) for r in rows] == [
        ("filter", "forward"),
        ("filter", "forward+backward"),
        ("kernel", "forward"),
        ("kernel", "forward+backward"),
    ]
    for r in rows:
        assert r["backend"] == "cpu" and r["layer"] == "tiny 3x3"
        assert float(r["dense_ms"]) > 0 and float(r["masked_ms"]) > 0 and float(r["speedup"]) > 0


@requires_cuda
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_gpu_run_against_cudnn(tiny_layers, tmp_path, backend: str) -> None:
    masked_conv.run(tmp_path, reps=2, backend=backend)
    rows = _rows(tmp_path / "masked_conv.csv")
    assert len(rows) == 4 and all(r["backend"] == backend and "cuDNN" in r["machine"] for r in rows)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without a GPU")
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_gpu_backend_without_gpu_is_a_clear_error(tmp_path, capsys, backend: str) -> None:
    assert main(["bench", "conv", "--backend", backend, "--out", str(tmp_path)]) == 2
    assert f"--backend {backend}: cannot run on cuda tensors here: no CUDA GPU" in capsys.readouterr().err
    assert not (tmp_path / "masked_conv.csv").exists()


def test_unknown_backend_is_a_clear_error(tmp_path, capsys) -> None:
    assert main(["bench", "conv", "--backend", "torch", "--out", str(tmp_path)]) == 2
    assert "expected 'cpu', 'cuda' or 'triton' for bench conv, got 'torch'" in capsys.readouterr().err


def test_results_folder_is_created(tmp_path):
    """`python -m fastprune bench ... --out results` with no such folder yet: created, rows written."""
    from fastprune.benchmarks.common import append_csv

    path = tmp_path / "new" / "nested" / "rows.csv"
    append_csv(path, ["a", "b"], [{"a": 1, "b": 2}])
    append_csv(path, ["a", "b"], [{"a": 3, "b": 4}])
    lines = path.read_text().splitlines()
    assert lines[0].startswith("a,b,cpu_capability") and len(lines) == 3 and lines[2].startswith("3,4,")
