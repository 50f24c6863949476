"""Packaging (slow: builds the native library once, about half a minute on 2 cores): the wheel `pip wheel .`
makes, installed (not editable) into a fresh venv, imports every module it ships and runs fastprune end to
end from there.

The wheel is built from a copy of the source tree holding only the files git knows (tracked or untracked,
not ignored): the editable build leaves its artefacts in the checkout (fastprune/_C*.so, fastprune/lib,
fastprune/include, build/), and building from the checkout itself would ship them and hide a package or
data file the wheel does not install. The venv sees the test interpreter's site-packages (torch, numpy,
triton) through a .pth file, which adds the directories without running their .pth files, so an editable
install of fastprune there stays invisible: the child imports fastprune from the wheel only, and checks it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import site
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parents[1]
# Ignored by the fallback copy when there is no git checkout (an sdist, an exported tree).
_NOT_SOURCE = (
    ".git",
    ".venv",
    "build",
    "dist",
    "runs",
    "*.egg-info",
    "__pycache__",
    "*.so",
    "*.so.*",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
    ".benchmarks",
)
BUILD_TIMEOUT_S = 1800
# Files the wheel must ship besides the Python modules.
REQUIRED_FILES = (
    "fastprune/lib/libfastprune.so",
    "fastprune/include/fastprune/fastprune.h",
    "fastprune/lib/cmake/fastprune/fastpruneConfig.cmake",
    "fastprune/data/digits.csv.gz",
    "fastprune/data/DIGITS_LICENSE.txt",
)


def _run(cmd, *, timeout, **kwargs) -> subprocess.CompletedProcess:
    """Runs cmd; on failure the assertion shows the command and the end of its output."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    assert proc.returncode == 0, (
        f"{' '.join(map(str, cmd))} exited with {proc.returncode}\n"
        f"--- stdout (end) ---\n{proc.stdout[-6000:]}\n--- stderr (end) ---\n{proc.stderr[-6000:]}"
    )
    return proc


def _copy_source(dest: Path) -> None:
    """The source tree without build artefacts: git's files (tracked and untracked-not-ignored, as they
    are in the working tree), or without git everything but the ignored patterns."""
    git = shutil.which("git")
    if git and (ROOT / ".git").exists():
        listing = _run(
            [git, "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT, timeout=60
        ).stdout
        for rel in filter(None, listing.split("\0")):
            src = ROOT / rel
            if src.is_file():  # tracked files deleted in the working tree are listed too
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / rel)
        return

    patterns = shutil.ignore_patterns(*_NOT_SOURCE)

    def ignore(directory: str, names: list[str]) -> set[str]:
        ignored = set(patterns(directory, names))
        if Path(directory).resolve() == ROOT / "fastprune":  # the in-place build's install prefix
            ignored |= {"lib", "include"} & set(names)
        return ignored

    shutil.copytree(ROOT, dest, ignore=ignore, dirs_exist_ok=True)


def _expected_modules(source: Path) -> dict[str, str]:
    """{module name: path in the wheel} for every .py file of the package's source folders:
    fastprune/ as is and triton_kernels/ installed as fastprune.triton_kernels."""
    expected = {}
    for folder, package in (("fastprune", "fastprune"), ("triton_kernels", "fastprune.triton_kernels")):
        for path in sorted((source / folder).rglob("*.py")):
            rel = path.relative_to(source / folder)
            parts = rel.with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            expected[".".join((package, *parts))] = "/".join((*package.split("."), *rel.parts))
    return expected


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(wheel path, source copy) for the wheel built from a clean copy of the tree."""
    source = tmp_path_factory.mktemp("source")
    _copy_source(source)
    out = tmp_path_factory.mktemp("wheel")
    # CUDA off: packaging is what this test checks, and compiling the CUDA kernels (when nvcc is found)
    # would take most of its time; the rest of the suite tests them in the editable build.
    env = dict(os.environ, FASTPRUNE_CUDA="0")
    env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 1))
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-build-isolation",
            "--no-deps",
            "--no-index",
            "-w",
            str(out),
            str(source),
        ],
        cwd=source,
        env=env,
        timeout=BUILD_TIMEOUT_S,
    )
    wheels = list(out.glob("fastprune-*.whl"))
    assert len(wheels) == 1, f"expected one fastprune wheel in {out}, found {os.listdir(out)}"
    return wheels[0], source


def _dependency_dirs() -> list[str]:
    """Folders the child venv reads after its own site-packages: this interpreter's site-packages and
    wherever it finds fastprune's dependencies (torch, numpy, tqdm; triton, optional).

    Not --system-site-packages: when this test runs in a venv, that gives the base interpreter's packages,
    not the venv's (torch is not found), and where it works it runs their .pth files, an editable
    fastprune's among them. A line of a .pth file only appends its folder to sys.path; .pth files in that
    folder are not run."""
    dirs = list(site.getsitepackages())
    if site.ENABLE_USER_SITE:
        dirs.append(site.getusersitepackages())
    for name in ("torch", "numpy", "tqdm", "triton"):
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin:  # .../site-packages/torch/__init__.py
            dirs.append(str(Path(spec.origin).parents[1]))
    return [d for d in dict.fromkeys(dirs) if os.path.isdir(d)]


@pytest.fixture(scope="module")
def installed(built, tmp_path_factory):
    """(python of a fresh venv with the wheel installed, venv folder)."""
    venv = pytest.importorskip("venv", reason="the venv module is not available (e.g. python3-venv missing)")
    wheel, _ = built
    env_dir = tmp_path_factory.mktemp("venv")
    # No pip inside (ensurepip may be missing): the test's pip installs into it with --python.
    venv.EnvBuilder(with_pip=False, symlinks=True).create(env_dir)
    python = env_dir / "bin" / "python"
    child_site = _run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], timeout=60
    ).stdout.strip()
    Path(child_site, "_test_parent_site.pth").write_text("".join(f"{d}\n" for d in _dependency_dirs()))
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "--no-index",
            "--no-warn-script-location",
            str(wheel),
        ],
        timeout=600,
    )
    return python, env_dir


def test_wheel_contents(built):
    wheel, source = built
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    missing = sorted(set(_expected_modules(source).values()) - names)
    assert not missing, f"source modules not in the wheel (a package left out of setup.py?): {missing}"
    missing = [f for f in REQUIRED_FILES if f not in names]
    assert not missing, f"native library, header, CMake config or data files not in the wheel: {missing}"
    assert any(n.startswith("fastprune/_C.") and n.endswith(".so") for n in names), sorted(names)
    top = {n.split("/")[0] for n in names}
    stray = sorted(t for t in top if t != "fastprune" and not t.startswith("fastprune-"))
    assert not stray, f"the wheel installs top-level names besides fastprune: {stray}"


# Runs in the venv, from a folder outside the source tree. argv: venv folder, expected-modules JSON.
CHILD = textwrap.dedent(
    r"""
    import importlib
    import importlib.util
    import json
    import pkgutil
    import sys
    import traceback
    from pathlib import Path

    venv = Path(sys.argv[1]).resolve()
    expected = set(json.loads(Path(sys.argv[2]).read_text()))


    def inside_venv(path):
        return venv in Path(path).resolve().parents


    import fastprune

    assert inside_venv(fastprune.__file__), f"fastprune imported from {fastprune.__file__}, not from {venv}"
    assert fastprune.__version__

    # Every module the wheel ships imports. Left out: __main__ (runs the CLI when imported; run below) and,
    # without triton (an optional dependency), the Triton kernels.
    broken = []
    found = {"fastprune"} | {
        m.name
        for m in pkgutil.walk_packages(
            fastprune.__path__, "fastprune.", onerror=lambda name: broken.append(traceback.format_exc())
        )
    }
    assert not broken, "packages that fail to import:\n" + "\n".join(broken)
    assert found == expected, (
        f"installed modules differ from the source: missing {sorted(expected - found)}, "
        f"extra {sorted(found - expected)}"
    )
    has_triton = importlib.util.find_spec("triton") is not None
    failures = {}
    imported = []
    for name in sorted(found):
        if name == "fastprune.__main__" or (name.startswith("fastprune.triton_kernels") and not has_triton):
            continue
        try:
            module = importlib.import_module(name)
        except Exception:
            failures[name] = traceback.format_exc()
            continue
        assert inside_venv(module.__file__), f"{name} imported from {module.__file__}"
        imported.append(name)
    assert not failures, "modules that fail to import:\n" + "\n".join(failures.values())

    # The native library: the extension and libfastprune.so both load from the venv.
    from fastprune import _native

    assert _native.unavailable_reason() is None, _native.unavailable_reason()
    from fastprune import _C

    assert inside_venv(_C.__file__), _C.__file__
    assert _C.build_info()["cuda_compiled"] is False, _C.build_info()  # built with FASTPRUNE_CUDA=0
    maps = Path("/proc/self/maps")
    if maps.exists():
        libs = {line.split()[-1] for line in maps.read_text().splitlines() if "libfastprune" in line}
        assert libs and all(inside_venv(p) for p in libs), f"libfastprune loaded from {libs}"
    assert "cpu" in fastprune.available_backends("cpu"), fastprune.available_backends("cpu")

    # Package data.
    from fastprune.data.digits import read_digits

    images, labels = read_digits()
    assert len(images) == len(labels) == 1797, (len(images), len(labels))

    import torch
    import torch.nn.functional as F
    from torch import nn

    torch.manual_seed(0)
    model = fastprune.models.create("resnet20", num_classes=10).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # non-trivial BatchNorm statistics, so compaction has constants to fold
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(0.5 * torch.randn(m.num_features, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=gen))
                m.weight.copy_(1 + 0.3 * torch.randn(m.num_features, generator=gen))
                m.bias.copy_(0.3 * torch.randn(m.num_features, generator=gen))
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    dense = fastprune.count_flops(model, (3, 32, 32))

    # Score: FPGM's geometric-median scores on the native CPU kernel against float64 distance sums.
    weight = convs[1][1].weight.detach().clone()
    scores = fastprune.ops.gm_scores(weight, "l2", backend="cpu")
    rows = weight.double().flatten(1)
    reference = (rows[:, None, :] - rows[None, :, :]).norm(dim=-1).sum(dim=1)
    assert torch.allclose(scores.double(), reference, rtol=1e-4, atol=0), (scores, reference)

    # Prune: soft FPGM at 40%, made final; each conv loses floor(0.4 N) filters, the lowest-scored ones.
    pruner = fastprune.SoftFilterPruner(model, criterion="fpgm", rate=0.4, backend="cpu")
    pruner.step()
    pruner.finalize()
    for name, conv in convs:
        zero = conv.weight.detach().flatten(1).abs().sum(dim=1) == 0
        assert int(zero.sum()) == int(0.4 * conv.out_channels), (name, int(zero.sum()))
    zero = convs[1][1].weight.detach().flatten(1).abs().sum(dim=1) == 0
    pruned = set(torch.nonzero(zero).flatten().tolist())
    assert pruned == set(torch.argsort(reference)[: len(pruned)].tolist()), pruned

    # Count FLOPs: fewer MACs than dense, and at most what dropping only the pruned filters leaves.
    flops = fastprune.count_flops(model, (3, 32, 32))
    shapes = {}
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: shapes.__setitem__(n, o.shape)) for n, m in convs]
    with torch.no_grad():
        model(torch.zeros(1, 3, 32, 32))
    for h in hooks:
        h.remove()
    by_hand = sum(m.weight[0].numel() * shapes[n][1:].numel() for n, m in convs)
    assert dense.conv_macs == dense.dense_conv_macs == flops.dense_conv_macs == by_hand, (dense, by_hand)
    upper = sum(
        (m.out_channels - int(0.4 * m.out_channels)) * m.weight[0].numel() * shapes[n][2:].numel()
        for n, m in convs
    )
    assert 0 < flops.conv_macs <= upper < by_hand, (flops.conv_macs, upper, by_hand)

    # Compact: a smaller dense network with the masked network's outputs and count_flops' MACs.
    small, report = fastprune.compact(model, return_report=True)
    x = torch.randn(4, 3, 32, 32, generator=gen)
    with torch.no_grad():
        expected_out, got = model(x), small(x)
        fused = small.for_inference()(x)  # BN folded, convs on fastprune's native conv2d
    assert got.shape == expected_out.shape == (4, 10), got.shape
    scale = float(expected_out.abs().max())
    for what, out in (("compact", got), ("inference form", fused)):
        err = float((out - expected_out).abs().max())
        assert err <= 1e-5 * scale, f"{what}: max abs error {err} (output scale {scale})"
    assert report.macs_after == flops.macs, (report.macs_after, flops.macs)
    assert sum(p.numel() for p in small.parameters()) == flops.params < dense.params

    # Masked convolution: the native kernel against F.conv2d of the masked weight in float64.
    xc = torch.randn(2, 16, 12, 12, generator=gen)
    wc = torch.randn(24, 16, 3, 3, generator=gen)
    bias = torch.randn(24, generator=gen)
    mask = torch.rand(24, 16, generator=gen) < 0.3  # kernel mask (O, C), 30% kept
    mask[5] = False  # one filter fully pruned: outputs its bias
    out = fastprune.ops.masked_conv2d(xc, wc, mask, bias, stride=1, padding=1, backend="cpu")
    wm = wc.double() * mask[:, :, None, None].double()
    reference = F.conv2d(xc.double(), wm, bias.double(), stride=1, padding=1)
    assert out.dtype == torch.float32 and out.shape == reference.shape == (2, 24, 12, 12), out.shape
    # Stated tolerance: 1e-5 relative + 1e-5 absolute (float32 sums of <= 144 products of O(1) values).
    err = float((out.double() - reference).abs().max())
    assert torch.allclose(out.double(), reference, rtol=1e-5, atol=1e-5), err
    assert torch.equal(out[:, 5], bias[5].expand(2, 12, 12))

    print(json.dumps({"imported": imported}))
    """
)


def test_installed_wheel_end_to_end(built, installed, tmp_path):
    _, source = built
    python, env_dir = installed
    expected = {*_expected_modules(source), "fastprune._C"}  # the Python modules and the extension
    (tmp_path / "expected.json").write_text(json.dumps(sorted(expected)))
    (tmp_path / "child.py").write_text(CHILD)
    # Not the source tree, nor anything that points at it.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "FASTPRUNE_BACKEND")}
    proc = _run(
        [str(python), str(tmp_path / "child.py"), str(env_dir), str(tmp_path / "expected.json")],
        cwd=tmp_path,
        env=env,
        timeout=600,
    )
    imported = json.loads(proc.stdout.strip().splitlines()[-1])["imported"]
    assert "fastprune.compaction.resnet" in imported and "fastprune.models" in imported, imported

    # The console script and `python -m fastprune` of the installed package.
    script = env_dir / "bin" / "fastprune"
    for cmd in ([str(script), "info"], [str(python), "-m", "fastprune", "info"]):
        out = _run(cmd, cwd=tmp_path, env=env, timeout=300).stdout
        assert "native library: C ABI" in out, out
        assert str(env_dir.resolve()) in out, f"cmake prefix not in the venv:\n{out}"
