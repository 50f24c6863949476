"""CPU capabilities: the native library holds the CPU kernels once per capability (default, avx2, avx512 on
x86-64; default alone elsewhere) and picks one at run time (csrc/cpu/dispatch.cpp).

- The choice follows the CPU (read independently from /proc/cpuinfo), FASTPRUNE_CPU_CAPABILITY lowers it
  and never raises it, and Python, the C ABI and `fastprune info` report the same.
- The numeric suites run once more for every other capability this CPU has, each in a subprocess with the
  variable set (this process already runs them with the capability it chose).
- The instructions in the linked library and in the build's objects match their capability: no ymm/zmm
  register in baseline or default code, no zmm in avx2 code. The check on the linked library also proves
  the link order right: where capability objects share a weak symbol (an inline function of the standard
  library), the copy the linker keeps must be one every CPU can run.
"""

from __future__ import annotations

import ctypes
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fastprune import cpu_capability
from fastprune.backends import MASKED_CONV_MAX_KEPT, auto_fallback, select_backend
from fastprune.cli import cmake_prefix
from fastprune.ops import masked_conv2d
from fastprune.ops.masked_conv2d import _cpu_slower

ROOT = Path(__file__).resolve().parents[1]
CAPABILITIES = ("default", "avx2", "avx512")
# What each capability's kernels are compiled for (CMakeLists.txt), as /proc/cpuinfo names the flags.
NEEDS = {
    "default": set(),
    "avx2": {"avx2", "fma", "f16c"},
    "avx512": {"avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512dq"},
}
# The suites whose results come from the CPU kernels (conv, masked conv, compaction's inference form
# included), run again per capability.
NUMERIC_SUITES = (
    "test_pairwise_distances.py",
    "test_gm_scores.py",
    "test_small_matrix_ops.py",
    "test_kernel_scores.py",
    "test_criteria.py",
    "test_conv2d.py",
    "test_masked_conv2d.py",
    "test_compact.py",
    "test_c_abi.py",
)
IS_X86_64 = platform.machine() in ("x86_64", "AMD64")


def _cpu_flags() -> set[str] | None:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    match = re.search(r"^flags\s*:\s*(.*)$", text, re.MULTILINE)
    return set(match.group(1).split()) if match else None


def _best_for_this_cpu() -> str:
    """The best capability this CPU has, from /proc/cpuinfo (independent of the library's detection)."""
    flags = _cpu_flags()
    if not IS_X86_64:
        return "default"
    if flags is None:
        pytest.skip("no /proc/cpuinfo to read the CPU's flags from")
    return next(cap for cap in reversed(CAPABILITIES) if NEEDS[cap] <= flags)


def _missing_reason(cap: str) -> str | None:
    """Why this machine cannot run `cap`'s kernels, or None."""
    if not IS_X86_64 and cap != "default":
        return f"{cap} kernels exist on x86-64 only, this is {platform.machine()}"
    if CAPABILITIES.index(cap) > CAPABILITIES.index(_best_for_this_cpu()):
        missing = sorted(NEEDS[cap] - (_cpu_flags() or set()))
        return f"this CPU lacks {', '.join(missing)}: the {cap} kernels compile here but cannot run"
    return None


def _child(code: str, capability: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "FASTPRUNE_CPU_CAPABILITY"}
    if capability is not None:
        env["FASTPRUNE_CPU_CAPABILITY"] = capability
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=False
    )


_REPORT = "import fastprune; c = fastprune.cpu_capability(); print(c.name); print(c.reason)"


def test_choice_follows_the_cpu() -> None:
    run = _child(_REPORT, None)
    assert run.returncode == 0, run.stderr
    name, reason = run.stdout.splitlines()
    assert name == _best_for_this_cpu()
    assert "lowered" not in reason and run.stderr == ""
    assert set(cpu_capability().built) == (set(CAPABILITIES) if IS_X86_64 else {"default"})


@pytest.mark.parametrize("cap", CAPABILITIES)
def test_environment_lowers_the_choice(cap: str) -> None:
    if (why := _missing_reason(cap)) is not None:
        pytest.skip(why)
    run = _child(_REPORT, cap)
    assert run.returncode == 0, run.stderr
    name, reason = run.stdout.splitlines()
    assert name == cap
    assert ("lowered by FASTPRUNE_CPU_CAPABILITY=" in reason) == (cap != _best_for_this_cpu())
    assert run.stderr == ""


def test_environment_never_raises_the_choice() -> None:
    best = _best_for_this_cpu()
    if best == CAPABILITIES[-1]:
        pytest.skip(f"this CPU has every capability ({best}): there is nothing to ask beyond it")
    higher = CAPABILITIES[CAPABILITIES.index(best) + 1]
    run = _child(_REPORT, higher)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[0] == best
    assert f"FASTPRUNE_CPU_CAPABILITY={higher} asks for more than this CPU supports" in run.stderr


def test_unknown_capability_warns_and_keeps_the_best() -> None:
    run = _child(_REPORT, "avx1024")
    assert run.returncode == 0, run.stderr
    name, reason = run.stdout.splitlines()
    assert name == _best_for_this_cpu()
    assert "FASTPRUNE_CPU_CAPABILITY=avx1024 is not one of default, avx2, avx512" in run.stderr
    assert "avx1024" in reason


def test_c_abi_and_cli_report_the_same_choice() -> None:
    library = ctypes.CDLL(str(cmake_prefix() / "lib" / "libfastprune.so"))
    for name in ("fp_cpu_capability", "fp_cpu_capability_reason", "fp_cpu_capabilities_built"):
        getattr(library, name).restype = ctypes.c_char_p
    chosen = cpu_capability()
    assert library.fp_cpu_capability().decode() == chosen.name
    assert library.fp_cpu_capability_reason().decode() == chosen.reason
    assert tuple(library.fp_cpu_capabilities_built().decode().split(",")) == chosen.built
    info = subprocess.run(
        [sys.executable, "-m", "fastprune", "info"], capture_output=True, text=True, timeout=120, check=True
    )
    assert f"CPU kernels: {chosen.name} (built: {', '.join(chosen.built)})" in info.stdout


def _kernel_mask(kept_fraction: float, seed: int = 0) -> torch.Tensor:
    """A (16, 16) kernel mask keeping exactly that fraction, not filter-uniform."""
    order = torch.randperm(256, generator=torch.Generator().manual_seed(seed))
    mask = torch.zeros(256, dtype=torch.bool)
    mask[order[: round(256 * kept_fraction)]] = True
    return mask.view(16, 16)


def test_auto_takes_torch_for_dense_kernel_masks() -> None:
    """Kernel masks keeping more than the capability's crossover go to torch under "auto" (same result as
    backend="torch"); filter masks and sparse kernel masks stay on the cpu kernels; a named backend runs."""
    limit = MASKED_CONV_MAX_KEPT.get(cpu_capability().name)
    half, sparse = _kernel_mask(0.5), _kernel_mask(0.1)
    filters = torch.arange(16) % 2 == 0
    assert _cpu_slower(filters, 16) is None
    assert _cpu_slower(filters[:, None].expand(16, 16).contiguous(), 16) is None  # uniform: a filter mask
    assert _cpu_slower(sparse, 16) is None
    why = _cpu_slower(half, 16)
    assert (why is not None) == (limit is not None and limit < 0.5)
    if why is not None:
        assert "keeps 50%" in why and f"{limit:.0%}" in why
    gen = torch.Generator().manual_seed(1)
    x, w = torch.randn(2, 16, 6, 6, generator=gen), torch.randn(16, 16, 3, 3, generator=gen)
    auto = masked_conv2d(x, w, half, None, 1, 1)
    expected = "torch" if why or auto_fallback("masked_conv2d") else "cpu"  # default: every mask to torch
    assert torch.equal(auto, masked_conv2d(x, w, half, None, 1, 1, backend=expected))
    named = masked_conv2d(x, w, half, None, 1, 1, backend="cpu")  # still runs when named
    torch.testing.assert_close(named, auto, rtol=1e-4, atol=1e-4)
    assert select_backend("auto", "cpu", "masked_conv2d", cpu_slower=lambda: "slower") == "torch"
    assert select_backend("cpu", "cpu", "masked_conv2d", cpu_slower=lambda: "slower") == "cpu"


def test_default_capability_routes_convolutions_to_torch() -> None:
    code = (
        "from fastprune.backends import auto_fallbacks, select_backend; f = auto_fallbacks(); "
        "print(sorted(f)); print(select_backend('auto', 'cpu', 'conv2d'), select_backend('auto', 'cpu', "
        "'gm_scores'))"
    )
    run = _child(code, "default")
    assert run.returncode == 0, run.stderr
    ops, chosen = run.stdout.splitlines()
    assert ops == str(["conv2d", "masked_conv2d"])
    assert chosen == "torch cpu"
    info = _child("from fastprune.cli import main; main(['info'])", "default")
    assert "auto uses torch for conv2d: the default CPU kernels of conv2d are slower" in info.stdout


def test_inference_form_follows_the_conv_fallback() -> None:
    """The compact inference form calls fastprune's conv kernel directly (no dispatcher): it must skip it
    where "auto" would, on the default capability."""
    code = (
        "import importlib, torch\n"
        "conv = importlib.import_module('fastprune.ops.conv2d')\n"  # the module, not the op
        "from fastprune import models\n"
        "from fastprune.compaction import compact\n"
        "calls, direct = [], conv.conv2d_cpu_inference\n"
        "conv.conv2d_cpu_inference = lambda *a: calls.append(1) or direct(*a)\n"
        "net = compact(models.create('resnet20', num_classes=10).eval()).for_inference()\n"
        "with torch.no_grad():\n"
        "    net(torch.randn(2, 3, 32, 32))\n"
        "print(len(calls) > 0)\n"
    )
    for cap, expected in (("default", "False"), (None, str(_best_for_this_cpu() != "default"))):
        run = _child(code, cap)
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip() == expected, f"FASTPRUNE_CPU_CAPABILITY={cap}"


@pytest.mark.parametrize("cap", CAPABILITIES)
def test_numeric_suites_per_capability(cap: str, tmp_path: Path) -> None:
    if (why := _missing_reason(cap)) is not None:
        pytest.skip(why)
    if cap == cpu_capability().name:
        pytest.skip(f"this process runs the numeric suites with {cap} already")
    env = {**os.environ, "FASTPRUNE_CPU_CAPABILITY": cap}
    suites = [str(ROOT / "tests" / name) for name in NUMERIC_SUITES]
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-x",
            "-p",
            "no:cacheprovider",
            f"--basetemp={tmp_path}",
            *suites,
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=1500,
        check=False,
    )
    assert run.returncode == 0, f"numeric suites with FASTPRUNE_CPU_CAPABILITY={cap}:\n{run.stdout[-6000:]}"
    assert re.search(r"\d+ passed", run.stdout)


# ---- instructions per capability (objdump) -------------------------------------------------------------

_FUNCTION = re.compile(r"^[0-9a-f]+ <(.+)>:$")
_YMM, _ZMM = re.compile(r"%ymm\d"), re.compile(r"%zmm\d")


def _wide_registers(path: Path) -> dict[str, tuple[int, int]]:
    """For each function in `path`'s code: how many instructions name a ymm and a zmm register."""
    out = subprocess.run(
        ["objdump", "-d", "-C", "--no-show-raw-insn", str(path)], capture_output=True, text=True, check=True
    ).stdout
    counts: dict[str, list[int]] = {}
    current = None
    for line in out.splitlines():
        if match := _FUNCTION.match(line):
            current = counts.setdefault(match.group(1), [0, 0])
        elif current is not None:
            current[1] += bool(_ZMM.search(line))
            current[0] += bool(_YMM.search(line)) and not _ZMM.search(line)
    return {name: (ymm, zmm) for name, (ymm, zmm) in counts.items()}


def _violations(functions: dict[str, tuple[int, int]], capability_of) -> list[str]:
    bad = []
    for name, (ymm, zmm) in functions.items():
        cap = capability_of(name)
        if cap == "avx512":
            continue
        if zmm or (ymm and cap != "avx2"):
            bad.append(f"{cap} code {name}: {ymm} ymm, {zmm} zmm instructions")
    return bad


requires_objdump_x86 = pytest.mark.skipif(
    shutil.which("objdump") is None or not IS_X86_64, reason="needs objdump and an x86-64 build"
)


@requires_objdump_x86
def test_linked_library_keeps_wide_code_in_its_capability() -> None:
    """Every function of libfastprune outside the capability namespaces (the C ABI, the dispatcher, the
    standard library's inline functions, whichever copy the linker kept) has no ymm/zmm instruction; the
    avx2 namespace has no zmm one."""
    functions = _wide_registers(cmake_prefix() / "lib" / "libfastprune.so")

    def capability_of(name: str) -> str:
        return "avx512" if "cap_avx512" in name else "avx2" if "cap_avx2" in name else "baseline"

    assert sum(1 for name in functions if "cap_avx512" in name) > 10  # the kernels are there
    assert any(zmm for name, (_, zmm) in functions.items() if "cap_avx512" in name)
    assert any(ymm for name, (ymm, _) in functions.items() if "cap_avx2" in name)
    assert _violations(functions, capability_of) == []


@requires_objdump_x86
def test_python_module_is_baseline_code() -> None:
    """fastprune._C (pybind11) is compiled without capability flags: no ymm/zmm instruction at all."""
    import fastprune._C as module

    functions = _wide_registers(Path(module.__file__))
    assert len(functions) > 10
    assert _violations(functions, lambda _name: "baseline") == []


def _build_objects() -> Path:
    """The object files of the in-place build (make build), where they are."""
    directory = ROOT / "build" / "cmake" / "CMakeFiles"
    if not (directory / "fastprune_cpu_default.dir").is_dir():
        pytest.skip(f"no in-place build objects under {directory} (a wheel or another build directory)")
    return directory


@requires_objdump_x86
def test_objects_hold_only_their_capabilitys_instructions() -> None:
    """Object by object: the dispatcher, the C ABI and the default kernels have no ymm/zmm instruction,
    the avx2 kernels no zmm one; and no capability object has a static initialiser (.init_array)."""
    directory = _build_objects()
    groups = {
        "baseline": sorted((directory / "fastprune.dir").rglob("*.o")),
        **{cap: sorted((directory / f"fastprune_cpu_{cap}.dir").rglob("*.o")) for cap in CAPABILITIES},
    }
    assert any(p.name.startswith("dispatch.cpp") for p in groups["baseline"])
    assert all(len(objects) >= 10 for cap, objects in groups.items() if cap != "baseline")
    bad = []
    for cap, objects in groups.items():
        for obj in objects:
            bad += [f"{obj.name}: {v}" for v in _violations(_wide_registers(obj), lambda _name, c=cap: c)]
            if cap != "baseline":
                headers = subprocess.run(
                    ["objdump", "-h", str(obj)], capture_output=True, text=True, check=True
                ).stdout
                if ".init_array" in headers:
                    bad.append(f"{cap}/{obj.name}: a static initialiser (.init_array)")
    assert bad == []
