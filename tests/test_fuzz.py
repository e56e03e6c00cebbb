"""A short fuzz run of the C++ CPU kernels under AddressSanitizer and UBSan: CMake's AEVB_FAST_FUZZ
build option makes the aevb_fuzz driver (csrc/fuzz/fuzz_cpu.cpp), which calls every kernel with
random dtypes, shapes, thread counts and values on buffers of exactly the size each may touch; any
out-of-bounds access or undefined behaviour aborts it with the sanitizer's report. Bounded in time
for CI: AEVB_FAST_FUZZ_SECONDS (default 20) and AEVB_FAST_FUZZ_SEED (default 0)."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(
    shutil.which("cmake") is None or shutil.which("c++") is None, reason="needs cmake and a C++ compiler"
)


def test_cpu_kernels_fuzz_clean_under_asan_and_ubsan(tmp_path):
    build = tmp_path / "build"
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    configure = subprocess.run(
        ["cmake", "-S", str(ROOT), "-B", str(build), *generator, "-DAEVB_FAST_FUZZ=ON", "-DCMAKE_BUILD_TYPE=Debug"],
        capture_output=True,
        text=True,
    )
    assert configure.returncode == 0, configure.stdout[-3000:] + configure.stderr[-3000:]
    compiled = subprocess.run(
        ["cmake", "--build", str(build), "-j", str(os.cpu_count() or 1)], capture_output=True, text=True
    )
    assert compiled.returncode == 0, compiled.stdout[-3000:] + compiled.stderr[-3000:]
    seconds, seed = os.environ.get("AEVB_FAST_FUZZ_SECONDS", "20"), os.environ.get("AEVB_FAST_FUZZ_SEED", "0")
    run = subprocess.run(
        [str(build / "aevb_fuzz"), seconds, seed],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0", "UBSAN_OPTIONS": "print_stacktrace=1"},
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-6000:]
    assert "clean" in run.stdout and int(run.stdout.split()[1]) > 100, run.stdout
