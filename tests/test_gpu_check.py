"""`make gpu-check` (tools/gpu_check.sh): every GPU check in one call. Without a GPU the dry run prints the
plan and runs each step's CPU stand-in; the budget stops it cleanly; bad arguments are refused."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tools" / "gpu_check.sh"
STEPS = [
    "devices", "build", "cuda and triton tests", "compute-sanitizer memcheck", "compute-sanitizer racecheck",
    "bench scoring (cuda)", "bench conv (cuda vs cuDNN)", "bench spectral", "bench compact",
]  # fmt: skip


def _run(*args: str) -> subprocess.CompletedProcess:
    command = ["bash", str(SCRIPT), "--python", sys.executable, *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_dry_run_prints_the_plan_and_runs_the_stand_ins(tmp_path):
    done = _run("--dry-run", "--budget", "300", "--out", str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    log = (tmp_path / "gpu-check.log").read_text()
    for name in STEPS:
        assert f"== {name} (" in log and f"-- {name}: ok" in log, name
    assert "compute-sanitizer --tool memcheck" in log and "bench conv --backend cuda" in log
    assert "tests collected" in log  # the test selection, collected on the CPU
    assert "failed: none; not run: none" in log


def test_budget_stops_cleanly(tmp_path):
    done = _run("--dry-run", "--budget", "3", "--out", str(tmp_path))
    assert done.returncode == 0
    log = (tmp_path / "gpu-check.log").read_text()
    assert all(f"== {name}: not run (budget of 3s spent)" in log for name in STEPS)


def test_bad_arguments_are_refused(tmp_path):
    assert _run("--budget", "soon").returncode == 2
    assert "unknown argument --fast" in _run("--fast").stderr
