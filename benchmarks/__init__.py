"""aevb_fast's benchmarks: the runner (python -m benchmarks: run.py over cases.py, overhead.py and
train_step.py, checked by targets.py, written by report.py, optionally beside load.py's busy
process), the pytest-benchmark micro-benchmarks (pytest benchmarks/ --benchmark-only), scaling.py
and the prepared GPU check (gpu_check.sh)."""
