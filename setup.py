"""Builds aevb_fast._C with CMake (CMakeLists.txt); torch is not needed to build."""

import os
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


class CMakeExtension(Extension):
    def __init__(self, name):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        import pybind11

        out_dir = Path(self.get_ext_fullpath(ext.name)).resolve().parent
        build_dir = Path(self.build_temp).resolve()
        build_dir.mkdir(parents=True, exist_ok=True)
        configure = [
            "cmake",
            "-S",
            str(ROOT),
            "-B",
            str(build_dir),
            "-G",
            "Ninja",
            "-DCMAKE_BUILD_TYPE=Release",
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={out_dir}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
            f"-DAEVB_FAST_CUDA={os.environ.get('AEVB_FAST_CUDA', 'auto')}",
            f"-DAEVB_FAST_WERROR={os.environ.get('AEVB_FAST_WERROR', '0')}",
        ]
        if "AEVB_FAST_CUDA_ARCHITECTURES" in os.environ:
            configure.append(f"-DAEVB_FAST_CUDA_ARCHITECTURES={os.environ['AEVB_FAST_CUDA_ARCHITECTURES']}")
        subprocess.run(configure, check=True)
        subprocess.run(["cmake", "--build", str(build_dir), "-j", str(os.cpu_count() or 1)], check=True)


setup(ext_modules=[CMakeExtension("aevb_fast._C")], cmdclass={"build_ext": CMakeBuild})
