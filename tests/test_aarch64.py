"""aarch64 (NVIDIA Grace, AWS Graviton): libfastprune and the C ABI example cross-compile with Debian's
g++-aarch64-linux-gnu and the example passes under qemu-aarch64 (tools/aarch64_check.sh, which
`make aarch64-check` runs and which installs the toolchain when missing). Here it runs only where the
toolchain and qemu-user are installed already: the suite itself installs no system packages."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NEEDED = ("aarch64-linux-gnu-g++", "qemu-aarch64", "cmake", "file")


@pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in NEEDED) or shutil.which("dpkg") is None,
    reason=f"needs {', '.join(NEEDED)} (make aarch64-check installs them)",
)
def test_cross_compiled_c_abi_example_passes_under_qemu(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASTPRUNE_")}
    env.update(AARCH64_BUILD=str(tmp_path / "aarch64"), JOBS="2")
    run = subprocess.run(
        ["bash", str(ROOT / "tools" / "aarch64_check.sh")],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "ARM aarch64" in run.stdout
    assert "CPU kernels default (built: default): aarch64: NEON kernels" in run.stdout
    assert "all checks passed" in run.stdout
