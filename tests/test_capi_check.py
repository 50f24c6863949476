"""The C ABI tested from C (tests/c): fastprune_capi_check calls every fp_* entry point with valid arguments
(against naive float64 references) and invalid ones (documented status, message naming the argument);
fastprune_capi_fuzz runs a seeded fuzz campaign. Both are built against the installed package with CMake
(find_package(fastprune)), as tests/test_c_abi.py builds the example."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from test_c_abi import _build_and_run

SOURCE = Path(__file__).resolve().parent / "c"

needs_toolchain = pytest.mark.skipif(
    shutil.which("cmake") is None or shutil.which("cc") is None, reason="needs cmake and a C compiler"
)


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One build folder for both programs: the second configure and build find everything up to date."""
    return tmp_path_factory.mktemp("capi") / "build"


@needs_toolchain
def test_every_entry_point_against_references_and_error_contracts(build_dir: Path) -> None:
    run = _build_and_run(SOURCE, build_dir, "fastprune_capi_check")
    assert "FAILED" not in run.stdout
    assert re.search(r"^all checks passed \(\d+ checks\)$", run.stdout, re.MULTILINE), run.stdout


@needs_toolchain
def test_fuzz_2000_iterations_seed_1(build_dir: Path) -> None:
    # The program's defaults: 2000 iterations of seed 1 (fastprune_capi_fuzz [iterations] [seed] [first]).
    run = _build_and_run(SOURCE, build_dir, "fastprune_capi_fuzz")
    summary = re.search(
        r"^fuzz: 2000 iterations, seed 1: (\d+) calls, (\d+) FP_OK, "
        r"rejected: FP_ERR_INVALID_ARGUMENT (\d+), FP_ERR_NONFINITE (\d+), .*; (\d+) in child processes; "
        r"0 failures$",
        run.stdout,
        re.MULTILINE,
    )
    assert summary, run.stdout
    calls, ok, invalid, nonfinite, children = (int(g) for g in summary.groups())
    # Both sides of every contract are exercised: successes compared with references, and rejections.
    assert calls >= 1500 and ok >= 500 and invalid >= 500 and nonfinite >= 5 and children >= 10, run.stdout
