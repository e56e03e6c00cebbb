"""The prepared GPU check (benchmarks/gpu_check.sh) in its CPU dry run, so that the script a lent
GPU machine runs cannot rot between loans."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_run(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable}
    run = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run", str(tmp_path)], env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    report = (tmp_path / "gpu_check.md").read_text()
    assert "dry run on the CPU" in report
    for title in ("## Environment", "## Tests (a sample)", "## Benchmarks, float32"):
        assert title in report
    assert report.count("exit status 0") == 3
    assert "aevb_fast backend triton" in report
    assert "| Bernoulli log-likelihood [64, 300] |" in report and "| reparameterize + KL [128, 20] |" in report
