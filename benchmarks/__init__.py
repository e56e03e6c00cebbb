"""aevb_fast's benchmarks: the runner (python -m benchmarks), the pytest-benchmark micro-benchmarks
(pytest benchmarks/ --benchmark-only) and the prepared GPU check (gpu_check.sh)."""
