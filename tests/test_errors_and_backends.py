"""Bad input gets a clear error naming the argument; backend selection follows its stated precedence."""

from __future__ import annotations

import pytest
import torch
from conftest import CPU_BACKENDS

import fastprune
from fastprune.backends import BackendError, select_backend
from fastprune.ops import gm_scores, pairwise_distances

OPS = [pairwise_distances, gm_scores]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nonfinite_weights_are_rejected_naming_layer_and_filter(backend, op, bad) -> None:
    weights = [torch.randn(4, 3), torch.randn(5, 2)]
    weights[1][3, 1] = bad
    with pytest.raises(ValueError, match=r"layer 1, filter 3 contains NaN or Inf"):
        op(weights, backend=backend)


@pytest.mark.parametrize("op", OPS)
def test_filter_errors_name_the_argument(op) -> None:
    cases = [
        ([], ValueError, r"filters: expected at least one layer"),
        (torch.empty(0, 4), ValueError, r"filters: expected at least one filter"),
        ([torch.randn(3, 4), torch.empty(2, 0)], ValueError, r"filters\[1\]: expected at least one filter"),
        (
            torch.ones(3, 4, dtype=torch.int32),
            TypeError,
            r"filters: expected float32.*or float64.*got torch.int32",
        ),
        (torch.randn(3, 4, 5), ValueError, r"filters: expected a conv weight .* got shape \(3, 4, 5\)"),
        ([torch.randn(3, 4), "w"], TypeError, r"filters\[1\]: expected a tensor, got str"),
        ({"a": torch.randn(3, 4)}, TypeError, r"filters: expected a tensor or a list of tensors"),
    ]
    for filters, error, message in cases:
        with pytest.raises(error, match=message):
            op(filters)


@pytest.mark.parametrize("op", OPS)
def test_metric_and_backend_names_are_checked(op) -> None:
    x = torch.randn(3, 4)
    with pytest.raises(
        ValueError, match=r"metric: expected one of 'l2', 'l1', 'cosine', 'sqeuclidean', got 'l3'"
    ):
        op(x, "l3")
    with pytest.raises(
        ValueError, match=r"backend: expected one of cpu, cuda, triton, torch or 'auto', got 'gpu'"
    ):
        op(x, backend="gpu")


def test_mask_errors_name_the_argument() -> None:
    weights = [torch.randn(4, 3), torch.randn(5, 2)]
    good = [torch.ones(4, dtype=torch.bool), torch.ones(5, dtype=torch.bool)]
    cases = [
        ([good[0]], ValueError, r"mask: expected a list of 2 bool tensors .* of length 1"),
        (
            [good[0], torch.ones(4, dtype=torch.bool)],
            ValueError,
            r"mask\[1\]: expected shape \(5,\).* got \(4,\)",
        ),
        ([good[0], torch.ones(5)], TypeError, r"mask\[1\]: expected a bool tensor .* got torch.float32"),
        ([good[0], good[1].to("meta")], ValueError, r"mask\[1\]: expected a tensor on cpu .* got meta"),
    ]
    for mask, error, message in cases:
        with pytest.raises(error, match=message):
            gm_scores(weights, mask=mask)
    with pytest.raises(ValueError, match=r"mask: expected shape \(4,\)"):
        gm_scores(weights[0], mask=torch.ones(3, dtype=torch.bool))


def test_layers_on_different_devices_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"filters\[1\]: expected every layer on cpu, got meta"):
        gm_scores([torch.randn(3, 4), torch.randn(3, 4, device="meta")])


def test_refusing_backend_lists_every_backends_reasons() -> None:
    with pytest.raises(BackendError) as info:
        gm_scores(torch.randn(3, 4), backend="cuda")
    message = str(info.value)
    assert "backend 'cuda' (from backend argument) cannot run gm_scores on cpu tensors" in message
    for name in ("cpu:", "cuda:", "triton:", "torch:"):
        assert name in message


def test_backend_precedence(monkeypatch) -> None:
    monkeypatch.delenv("FASTPRUNE_BACKEND", raising=False)
    assert select_backend("auto", "cpu", "gm_scores") == "cpu"
    monkeypatch.setenv("FASTPRUNE_BACKEND", "torch")
    assert select_backend("auto", "cpu", "gm_scores") == "torch"
    with fastprune.use_backend("cpu"):
        assert select_backend("auto", "cpu", "gm_scores") == "cpu", "context manager beats the environment"
        assert select_backend("torch", "cpu", "gm_scores") == "torch", "per-call argument beats both"
    monkeypatch.setenv("FASTPRUNE_BACKEND", "cuda")
    with pytest.raises(BackendError, match="from FASTPRUNE_BACKEND environment variable"):
        select_backend("auto", "cpu", "gm_scores")
    monkeypatch.setenv("FASTPRUNE_BACKEND", "bogus")
    with pytest.raises(ValueError, match="FASTPRUNE_BACKEND environment variable: expected one of"):
        select_backend("auto", "cpu", "gm_scores")
    with pytest.raises(ValueError, match=r"use_backend\(name\): expected one of"):
        with fastprune.use_backend("bogus"):
            pass


def test_auto_prefers_native_cpu_and_results_agree() -> None:
    x = torch.randn(30, 17, generator=torch.Generator().manual_seed(21))
    assert "cpu" in fastprune.available_backends("cpu")
    torch.testing.assert_close(gm_scores(x), gm_scores(x, backend="torch"), rtol=1e-5, atol=0.0)


def test_auto_never_picks_the_unmeasured_gpu_masked_conv_kernels(monkeypatch) -> None:
    """On CUDA tensors "auto" runs masked_conv2d as cuDNN's convolution of W * M (fastprune's GPU kernels are
    estimated slower and not yet measured), says so in auto_fallbacks, and still picks the GPU kernels of the
    other ops; a backend named explicitly is not overridden."""
    from fastprune import backends

    monkeypatch.setattr(backends, "_triton_reason", lambda device_type: None)  # as on a machine with a GPU
    monkeypatch.setattr(backends._native, "cuda_unavailable_reason", lambda: None)
    assert select_backend("auto", "cuda", "masked_conv2d") == "torch"
    assert select_backend("auto", "cuda", "gm_scores") == "cuda"
    assert select_backend("triton", "cuda", "masked_conv2d") == "triton"
    assert "estimated slower than cuDNN" in backends.auto_fallbacks("cuda")["masked_conv2d"]
    assert "gm_scores" not in backends.auto_fallbacks("cuda")


def test_import_loads_no_native_code_and_does_not_initialise_cuda() -> None:
    """Importing the package and its ops must not load fastprune._C, import triton or touch CUDA (on a
    CPU-only torch the CUDA check is vacuous; the module checks are not)."""
    import subprocess
    import sys

    code = (
        "import sys, fastprune, fastprune.ops, torch; "
        "print(torch.cuda.is_initialized(), 'fastprune._C' in sys.modules, 'triton' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "False"]


@pytest.mark.parametrize("command", [[], ["demo"], ["train"], ["compact"], ["bench"], ["info"]])
def test_cli_help_works_for_every_command(command: list[str], capsys) -> None:
    """argparse formats help strings with %: a bare percent sign in one makes --help crash."""
    from fastprune.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: fastprune" in capsys.readouterr().out
