"""The C library as other frameworks use it: a C program finds the installed package with CMake
(find_package(fastprune)), links libfastprune, calls the C ABI and checks results and error codes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from fastprune.cli import cmake_prefix

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "c_abi"


@pytest.mark.skipif(
    shutil.which("cmake") is None or shutil.which("cc") is None, reason="needs cmake and a C compiler"
)
def test_c_program_finds_package_calls_abi_and_checks_results(tmp_path: Path) -> None:
    build = tmp_path / "build"
    subprocess.run(
        ["cmake", "-S", str(EXAMPLE), "-B", str(build), f"-DCMAKE_PREFIX_PATH={cmake_prefix()}"],
        check=True,
        capture_output=True,
        text=True,
    )
    subprocess.run(["cmake", "--build", str(build)], check=True, capture_output=True, text=True)
    run = subprocess.run([str(build / "fastprune_c_abi_example")], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "all checks passed" in run.stdout
    # Error paths answered with a status and a message naming the argument.
    assert "null batch -> FP_ERR_INVALID_ARGUMENT: filters: expected a fp_ragged_batch pointer" in run.stdout
    assert "negative rows -> FP_ERR_INVALID_ARGUMENT: filters->num_rows[1]: expected 1 <=" in run.stdout
    assert "NaN weight -> FP_ERR_NONFINITE: filters: layer 0, filter 1 contains NaN or Inf" in run.stdout
    assert "n = 8 -> FP_ERR_INVALID_ARGUMENT: n: expected 1 <= n <= 7, got 8" in run.stdout
    assert (
        "kernel of 5 weights -> FP_ERR_INVALID_ARGUMENT: kernels->row_dims[0]: expected k * k" in run.stdout
    )
