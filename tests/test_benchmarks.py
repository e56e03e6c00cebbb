"""The benchmarks keep working: the prepared GPU check (benchmarks/gpu_check.sh) in its CPU dry run,
which runs the benchmark runner at tiny sizes, the pytest-benchmark micro-benchmarks at tiny sizes
with timing off, and the streaming reader's measurement (benchmarks/scaling.py) on full MNIST."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT.parent / "shared" / "data" / "mnist"


def test_gpu_check_dry_run(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable}
    run = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run", str(tmp_path)], env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    report = (tmp_path / "gpu_check.md").read_text()
    assert "dry run on the CPU" in report
    for title in ("## Environment", "## Tests (a sample)", "## Benchmarks"):
        assert title in report
    assert report.count("exit status 0") == 3
    for name in ("results.md", "results.csv", "time_float32.png", "train_step.png"):
        assert (tmp_path / name).is_file()
    results = (tmp_path / "results.md").read_text()
    for case in ("bernoulli [64, 300]", "gaussian [64, 300]", "reparameterize [128, 20]"):
        assert case in results


def test_micro_benchmarks_run():
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "benchmarks",
                          "--bench-sizes", "tiny", "--benchmark-disable"], cwd=ROOT, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert " passed" in run.stdout


@pytest.mark.skipif(not MNIST.is_dir(), reason="../shared/data/mnist is not beside this checkout")
def test_reader_benchmark_runs(tmp_path):
    from benchmarks import scaling

    text = scaling.reader(str(MNIST), tmp_path, passes=2)
    assert "| reader, first pass |" in text and (tmp_path / "reader.md").read_text() == text
