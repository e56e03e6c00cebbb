#!/usr/bin/env bash
# The one prepared GPU check (docs/design.md), sized for a 15-minute lease of a fresh machine, build
# included. In this order, each step appending to one markdown report as it finishes:
#   1. the build of the extension with its CUDA kernels;
#   2. a short benchmark: each op at the paper's and the large sizes (the fused heads included), the
#      per-call overhead and the training step, float32 and bfloat16, at most 300 s (stopped there,
#      the runner writes what it measured);
#   3. the tests, with the Triton kernels compiled and the CUDA kernels on CUDA tensors;
#   4. whole training runs of full MNIST side by side (benchmarks/training.py: plain PyTorch with
#      and without the weight prior, aevb-fast train; M = 100 and 1000), then a short training run
#      under torchrun (nccl, bfloat16 autocast, torch.compile);
#   5. the CUDA kernels' tests under compute-sanitizer's memcheck.
# The benchmark runs first: GPU timings are what only this machine gives, and a lease that ends
# early still leaves them.
#
#   [GPU_CHECK_BUDGET_S=780] [GPU_CHECK_STEPS="benchmarks tests training memcheck"] \
#       bash benchmarks/gpu_check.sh [--dry-run] [OUT_DIR]
#
# GPU_CHECK_BUDGET_S (default 780) bounds the whole check: a step starts only if the time left
# covers the least it needs, and runs under `timeout` with at most what is left (SIGTERM, then
# SIGKILL 10 s later; exit status 124); the report says which steps were skipped or stopped.
# GPU_CHECK_STEPS picks the steps after the build (all by default), GPU_CHECK_TESTS the pytest
# arguments (default: tests), GPU_CHECK_ROUNDS the benchmark's rounds (default: 5).
#
# The GPU machine has no network and no ../shared: the training step reads full MNIST (the four IDX
# .gz files) from AEVB_FAST_MNIST, else from data/mnist inside the repository (ignored by git; copy
# the files there and carry that folder to the machine), else from ../shared/data/mnist.
#
# OUT_DIR defaults to benchmarks/results/<device name>; the report is OUT_DIR/gpu_check.md (the
# benchmark runner's results.md, CSVs and figures beside it). --dry-run runs the steps that need no
# GPU on the CPU at tiny sizes, without the rebuild, so that CI keeps this script working.
set -euo pipefail
cd "$(dirname "$0")/.."

dry_run=0
if [ "${1:-}" = "--dry-run" ]; then
  dry_run=1
  shift
fi
python=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
budget=${GPU_CHECK_BUDGET_S:-780}
started=$(date +%s)

if [ "$dry_run" = 1 ]; then
  device_name=dry-run
else
  device_name=$("$python" -c "import torch; print(torch.cuda.get_device_name(0))" | tr -c 'A-Za-z0-9._\n-' '-')
fi
out=${1:-benchmarks/results/$device_name}
mkdir -p "$out"
report="$out/gpu_check.md"
skipped=()

# step TITLE LEAST CAP COMMAND...: runs COMMAND for at most CAP seconds and what is left of the
# budget, if at least LEAST seconds are left, its output into the report inside a code block.
step() {
  local title=$1 least=$2 cap=$3
  shift 3
  local left=$((budget - ($(date +%s) - started)))
  if [ "$left" -lt "$least" ] || [ "$left" -lt 1 ]; then  # timeout 0 would mean no limit
    printf '\n## %s\n\nskipped: %s s of the %s s budget left, the step needs at least %s s\n' \
      "$title" "$((left > 0 ? left : 0))" "$budget" "$least" >>"$report"
    skipped+=("$title")
    echo "$title: skipped ($left s left)"
    return 0
  fi
  local limit=$((cap < left ? cap : left))
  printf '\n## %s\n\n```\n$ %s\n' "$title" "$*" >>"$report"
  local begin status=0
  begin=$(date +%s)
  timeout -k 10 "$limit" "$@" >>"$report" 2>&1 || status=$?
  local note=""
  if [ "$status" = 124 ] || [ "$status" = 137 ]; then
    note=", stopped after $limit s: $([ "$limit" = "$cap" ] && echo "its cap" || echo "the end of the budget")"
  fi
  printf '```\n(%s s, exit status %s%s)\n' "$(($(date +%s) - begin))" "$status" "$note" >>"$report"
  echo "$title: exit status $status$note"
  return "$status"
}

# A copy of the working tree may travel without .git: then the commit is unknown.
commit=$(git rev-parse --short HEAD 2>/dev/null) || commit=unknown
if [ "$commit" != unknown ] && ! git diff --quiet HEAD 2>/dev/null; then
  commit="$commit (with local changes)"
fi
printf '# GPU check, %s\n\ncommit %s; %s; budget %s s\n' "$(date -u '+%Y-%m-%d %H:%M UTC')" "$commit" \
  "$([ "$dry_run" = 1 ] && echo 'dry run on the CPU' || echo "$device_name")" "$budget" >"$report"

steps=" ${GPU_CHECK_STEPS:-benchmarks tests training memcheck} "
wants() { [[ "$steps" == *" $1 "* ]]; }

status=0
if [ "$dry_run" = 1 ]; then
  export TRITON_INTERPRET=1
  step "Environment" 5 60 "$python" -m aevb_fast info || status=1
  if wants benchmarks; then
    step "Benchmarks" 20 300 "$python" -m benchmarks --device cpu --sizes tiny --rounds 1 --warmup 1 \
      --call-rounds 1 --out "$out" || status=1
  fi
  if wants tests; then
    step "Tests (a sample)" 20 300 "$python" -m pytest -q -p no:cacheprovider tests/test_triton.py \
      -k "block_table or interpreter" || status=1
  fi
else
  export TRITON_INTERPRET=0
  # pytest-xdist, where installed, spreads the tests over the machine's cores (they share the GPU).
  xdist=()
  if "$python" -c "import xdist" 2>/dev/null; then
    xdist=(-n 8)
  fi
  step "Device" 0 30 nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || true
  step "Build" 30 400 env AEVB_FAST_CUDA=1 "$python" -m pip install -q --no-build-isolation --no-deps -e . || exit 1
  step "Environment" 10 60 "$python" -m aevb_fast info || status=1
  if wants benchmarks; then
    step "Benchmarks (paper and large sizes)" 60 300 "$python" -m benchmarks --device cuda --dtype float32 bfloat16 \
      --sizes paper large --rounds "${GPU_CHECK_ROUNDS:-5}" --call-rounds 5 --out "$out" || status=1
  fi
  if wants tests; then
    # shellcheck disable=SC2086  # GPU_CHECK_TESTS is a list of pytest arguments
    step "Tests" 60 240 "$python" -m pytest -q -p no:cacheprovider -rfEs --durations=10 "${xdist[@]}" \
      ${GPU_CHECK_TESTS:-tests} || status=1
  fi
  mnist=${AEVB_FAST_MNIST:-data/mnist}
  if [ -z "${AEVB_FAST_MNIST:-}" ] && [ ! -d "$mnist" ]; then
    mnist=../shared/data/mnist
  fi
  if wants training && [ -d "$mnist" ]; then
    step "Training runs (plain PyTorch, aevb-fast train; M = 100 and 1000)" 30 120 "$python" -m benchmarks.training \
      --device cuda --data-path "$mnist" --samples 2e5 --warmup 2e4 --rounds 1 --out "$out" || status=1
    step "Training (torchrun, nccl, bfloat16, torch.compile)" 60 120 "$python" -m torch.distributed.run \
      --standalone --nproc_per_node 1 -m aevb_fast train --device cuda --dataset mnist --data-path "$mnist" \
      --precision bfloat16 --compile --batch-size 1000 --lr 0.1 --samples 3e5 --eval-every 1e5 --no-figures \
      --out "$out/training" || status=1
    if [ -f "$out/training/metrics.csv" ]; then
      step "Training metrics" 0 10 cat "$out/training/metrics.csv" || status=1
    fi
  elif wants training; then
    printf '\n## Training\n\nno MNIST at AEVB_FAST_MNIST, data/mnist or ../shared/data/mnist: the training step did not run\n' \
      >>"$report"
  fi
  sanitizer=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  if ! wants memcheck; then
    :
  elif [ -x "$sanitizer" ]; then
    # The tests that run the CUDA kernels on CUDA tensors; gradcheck's many small launches and
    # the 2^31-element cases would not fit the time.
    step "compute-sanitizer memcheck (CUDA kernels)" 20 100 "$sanitizer" --tool memcheck --error-exitcode 1 \
      "$python" -m pytest -q -p no:cacheprovider -x tests/test_ops.py tests/test_backends_agree.py tests/test_gpu.py \
      -k "(cuda-cuda or test_gpu) and not triton and not gradcheck and not opcheck" || status=1
  else
    printf '\n## compute-sanitizer\n\nnot found on this machine: the memcheck step did not run\n' >>"$report"
  fi
fi
if [ "${#skipped[@]}" -gt 0 ]; then
  printf '\nSkipped for the %s s budget:\n\n' "$budget" >>"$report"
  printf -- '- %s\n' "${skipped[@]}" >>"$report"
fi
printf '\nTotal: %s s\n' "$(($(date +%s) - started))" >>"$report"
echo "report: $report"
exit "$status"
