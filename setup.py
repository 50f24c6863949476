"""Builds fastprune's native parts with CMake (see CMakeLists.txt) into the package directory:

    fastprune/_C*.so                      pybind11 module (calls only the C ABI)
    fastprune/lib/libfastprune.so         the C library
    fastprune/include/fastprune/*.h       the C ABI header
    fastprune/lib/cmake/fastprune/        CMake package config for find_package(fastprune)

Environment: FASTPRUNE_CUDA=0/1 (default: compile CUDA kernels when nvcc is found),
FASTPRUNE_CUDA_ARCHS (default "80-real;90"), FASTPRUNE_NATIVE=1 to tune for the build machine's CPU
(local experiments only: the library then runs only on CPUs like it; the default is portable),
CMAKE_BUILD_PARALLEL_LEVEL for build jobs.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


class CMakeExtension(Extension):
    def __init__(self, name: str) -> None:
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext: Extension) -> None:
        ext_path = Path(self.get_ext_fullpath(ext.name)).resolve()
        # Editable / in-place builds install into the source package and reuse one CMake tree, so
        # rebuilds are incremental; other builds install next to the extension in build_lib.
        in_source = self.inplace or getattr(self, "editable_mode", False)
        package_dir = ROOT / "fastprune" if in_source else ext_path.parent
        build_dir = ROOT / "build" / "cmake" if in_source else Path(self.build_temp).resolve() / "cmake"
        build_dir.mkdir(parents=True, exist_ok=True)
        args = [
            f"-DCMAKE_INSTALL_PREFIX={package_dir}",
            "-DCMAKE_INSTALL_LIBDIR=lib",
            "-DCMAKE_INSTALL_INCLUDEDIR=include",
            "-DCMAKE_BUILD_TYPE=Release",
            "-DFASTPRUNE_PYTHON=ON",
            f"-DPython_EXECUTABLE={sys.executable}",
        ]
        try:
            import pybind11

            args.append(f"-Dpybind11_DIR={pybind11.get_cmake_dir()}")
        except ImportError:
            pass
        if os.environ.get("FASTPRUNE_NATIVE") == "1":
            args.append("-DFASTPRUNE_NATIVE=ON")
        jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 1))
        subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build_dir), *args], check=True)
        subprocess.run(["cmake", "--build", str(build_dir), "-j", jobs], check=True)
        subprocess.run(["cmake", "--install", str(build_dir)], check=True, stdout=subprocess.DEVNULL)
        built = package_dir / ext_path.name
        if built != ext_path:  # setuptools collects the module from its own output path
            ext_path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(built, ext_path)


setup(
    # Found, never listed by hand (tests/test_wheel.py checks the wheel against the source): fastprune and
    # every package under it, and the top-level triton_kernels/ (subpackages included) as
    # fastprune.triton_kernels.
    packages=find_packages(include=["fastprune", "fastprune.*"])
    + ["fastprune." + name for name in find_packages(include=["triton_kernels", "triton_kernels.*"])],
    package_dir={"fastprune.triton_kernels": "triton_kernels"},
    package_data={"fastprune.data": ["digits.csv.gz", "*.txt"]},
    ext_modules=[CMakeExtension("fastprune._C")],
    cmdclass={"build_ext": CMakeBuild},
    zip_safe=False,
)
