"""The C library as other frameworks use it: a C program finds the installed package with CMake
(find_package(fastprune)), links libfastprune, calls the C ABI and checks results and error codes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from fastprune import cpu_capability
from fastprune.cli import cmake_prefix

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "c_abi"


def _build_and_run(source: Path, build: Path, program: str) -> subprocess.CompletedProcess:
    """Configures `source` against the installed package (find_package(fastprune)), builds it and runs
    `program`; asserts a zero exit status."""
    subprocess.run(
        ["cmake", "-S", str(source), "-B", str(build), f"-DCMAKE_PREFIX_PATH={cmake_prefix()}"],
        check=True,
        capture_output=True,
        text=True,
    )
    subprocess.run(["cmake", "--build", str(build)], check=True, capture_output=True, text=True)
    run = subprocess.run([str(build / program)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    return run


@pytest.mark.skipif(
    shutil.which("cmake") is None or shutil.which("cc") is None, reason="needs cmake and a C compiler"
)
def test_c_program_finds_package_calls_abi_and_checks_results(tmp_path: Path) -> None:
    run = _build_and_run(EXAMPLE, tmp_path / "build", "fastprune_c_abi_example")
    assert "all checks passed" in run.stdout
    capability = cpu_capability()
    assert (
        f"CPU kernels {capability.name} (built: {','.join(capability.built)}): {capability.reason}"
        in run.stdout
    )
    # Error paths answered with a status and a message naming the argument.
    assert "null batch -> FP_ERR_INVALID_ARGUMENT: filters: expected a fp_ragged_batch pointer" in run.stdout
    assert "negative rows -> FP_ERR_INVALID_ARGUMENT: filters->num_rows[1]: expected 1 <=" in run.stdout
    assert "NaN weight -> FP_ERR_NONFINITE: filters: layer 0, filter 1 contains NaN or Inf" in run.stdout
    assert "n = 8 -> FP_ERR_INVALID_ARGUMENT: n: expected 1 <= n <= 7, got 8" in run.stdout
    assert (
        "kernel of 5 weights -> FP_ERR_INVALID_ARGUMENT: kernels->row_dims[0]: expected k * k" in run.stdout
    )


CONV2D_PROGRAM = r"""
#include <fastprune/fastprune.h>
#include <stdio.h>
#include <string.h>

int main(void) {
  const fp_exec cpu = {FP_DEVICE_CPU, NULL};
  /* A 3x3 input of ones, a 3x3 kernel of ones, padding 1: corners 4, edges 6, centre 9. */
  const fp_conv2d_shape shape = {1, 1, 3, 3, 1, 3, 3, 1, 1, 1, 1, 1, 1};
  float x[9], w[9], y[9];
  const float bias = -5.f;
  for (int i = 0; i < 9; ++i) x[i] = w[i] = 1.f;
  const float plain[9] = {4, 6, 4, 6, 9, 6, 4, 6, 4};
  const float relu[9] = {0, 1, 0, 1, 4, 1, 0, 1, 0};
  int failures = 0;
  fp_status s = fp_conv2d_forward(&shape, x, w, NULL, 0, cpu, y);
  printf("plain: %s", fp_status_name(s));
  for (int i = 0; i < 9; ++i) printf(" %g", y[i]);
  printf("\n");
  failures += s != FP_OK || memcmp(y, plain, sizeof y) != 0;
  s = fp_conv2d_forward(&shape, x, w, &bias, 1, cpu, y);
  printf("bias relu: %s", fp_status_name(s));
  for (int i = 0; i < 9; ++i) printf(" %g", y[i]);
  printf("\n");
  failures += s != FP_OK || memcmp(y, relu, sizeof y) != 0;
  for (int i = 0; i < 9; ++i) y[i] = 42.f;
  s = fp_conv2d_forward(&shape, NULL, w, &bias, 1, cpu, y);
  printf("null x -> %s: %s\n", fp_status_name(s), fp_last_error());
  failures += s != FP_ERR_INVALID_ARGUMENT || strstr(fp_last_error(), "x") == NULL || y[0] != 42.f;
  const fp_conv2d_shape bad = {1, 1, 3, 3, 1, 3, 3, 1, 0, 1, 1, 1, 1};
  s = fp_conv2d_forward(&bad, x, w, NULL, 0, cpu, y);
  printf("stride_w 0 -> %s: %s\n", fp_status_name(s), fp_last_error());
  failures += s != FP_ERR_INVALID_ARGUMENT;
  const fp_exec gpu = {FP_DEVICE_CUDA, NULL};
  s = fp_conv2d_forward(&shape, x, w, NULL, 0, gpu, y);
  printf("cuda exec -> %s: %s\n", fp_status_name(s), fp_last_error());
  failures += s != FP_ERR_UNAVAILABLE || y[0] != 42.f;
  if (failures) {
    printf("%d conv2d checks failed\n", failures);
    return 1;
  }
  printf("conv2d checks passed\n");
  return 0;
}
"""


@pytest.mark.skipif(
    shutil.which("cmake") is None or shutil.which("cc") is None, reason="needs cmake and a C compiler"
)
def test_c_program_calls_conv2d_forward(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "main.c").write_text(CONV2D_PROGRAM)
    (source / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.18)\n"
        "project(fastprune_conv2d_check LANGUAGES C)\n"
        "find_package(fastprune 0.1 REQUIRED CONFIG)\n"
        "add_executable(conv2d_check main.c)\n"
        "target_link_libraries(conv2d_check PRIVATE fastprune::fastprune)\n"
    )
    run = _build_and_run(source, tmp_path / "build", "conv2d_check")
    assert "conv2d checks passed" in run.stdout
    assert "plain: FP_OK 4 6 4 6 9 6 4 6 4" in run.stdout
    assert "bias relu: FP_OK 0 1 0 1 4 1 0 1 0" in run.stdout
    assert "null x -> FP_ERR_INVALID_ARGUMENT: x: expected N * C * H * W floats, got NULL" in run.stdout
    assert "stride_w 0 -> FP_ERR_INVALID_ARGUMENT: shape->stride_w: expected 1 <=" in run.stdout
    assert "cuda exec -> FP_ERR_UNAVAILABLE: exec.device:" in run.stdout
