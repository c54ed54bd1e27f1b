"""Builds fusekit._C by driving CMake + Ninja (the pybind11 cmake_example pattern).

Environment:
  FUSEKIT_CUDA=0|1        force the CUDA kernels off / on (on fails loudly without nvcc)
  FUSEKIT_CUDA_ARCHS=...  CMake CUDA_ARCHITECTURES list, e.g. "75;90"
  FUSEKIT_WERROR=1        warnings are errors (CI)
  FUSEKIT_BUILD_TYPE=...  CMake build type (default Release)
"""
import os
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class CMakeExtension(Extension):
    def __init__(self, name: str) -> None:
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext: CMakeExtension) -> None:
        import pybind11

        src = Path(__file__).parent.resolve()
        out = Path(self.get_ext_fullpath(ext.name)).parent.resolve()
        build = Path(self.build_temp).resolve() / ext.name
        build.mkdir(parents=True, exist_ok=True)
        cfg = os.environ.get("FUSEKIT_BUILD_TYPE", "Release")
        args = [
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={out}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
            f"-DCMAKE_BUILD_TYPE={cfg}",
            "-GNinja",
        ]
        cuda = os.environ.get("FUSEKIT_CUDA")
        if cuda is not None:
            args.append(f"-DFUSEKIT_CUDA={'ON' if cuda == '1' else 'OFF'}")
        if os.environ.get("FUSEKIT_CUDA_ARCHS"):
            args.append(f"-DFUSEKIT_CUDA_ARCHS={os.environ['FUSEKIT_CUDA_ARCHS']}")
        if os.environ.get("FUSEKIT_WERROR") == "1":
            args.append("-DFUSEKIT_WERROR=ON")
        jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))
        subprocess.run(["cmake", str(src), *args], cwd=build, check=True)
        subprocess.run(["cmake", "--build", ".", "-j", jobs], cwd=build, check=True)


setup(ext_modules=[CMakeExtension("fusekit._C")], cmdclass={"build_ext": CMakeBuild})
