#!/usr/bin/env bash
# The one prepared GPU check (DESIGN.md): rebuild the extension with its CUDA kernels, run every
# test with the Triton kernels compiled for the GPU and the CUDA kernels, a short data-parallel
# training run, then the GPU benchmark rows, then the CUDA kernels' tests under compute-sanitizer's
# memcheck, and write it all to one
# markdown file (the benchmark runner's results.md, results.csv and figures beside it). Meant to
# finish in well under 8 minutes on an H100/H200.
#
#   [GPU_CHECK_STEPS="tests training benchmarks memcheck"] bash benchmarks/gpu_check.sh [--dry-run] [OUT_DIR]
#
# GPU_CHECK_STEPS picks the steps after the build (all by default), so that a short device lease can
# split the check over two calls; GPU_CHECK_TESTS the pytest arguments (default: tests) and
# GPU_CHECK_ROUNDS the benchmark rounds (default: 5). The training step trains full MNIST
# (AEVB_FAST_MNIST, default ../shared/data/mnist) under torchrun with nccl, bfloat16 autocast and
# torch.compile.
#
# OUT_DIR defaults to benchmarks/results/<device name>; the results land in OUT_DIR/gpu_check.md
# (and the pytest log beside it). --dry-run runs the same steps on the CPU at tiny sizes, without
# the rebuild, so that CI keeps this script working on machines with no GPU.
set -euo pipefail
cd "$(dirname "$0")/.."

dry_run=0
if [ "${1:-}" = "--dry-run" ]; then
  dry_run=1
  shift
fi
python=${PYTHON:-python3}
export PYTHONUNBUFFERED=1

if [ "$dry_run" = 1 ]; then
  device_name=dry-run
else
  device_name=$("$python" -c "import torch; print(torch.cuda.get_device_name(0))" | tr -c 'A-Za-z0-9._\n-' '-')
fi
out=${1:-benchmarks/results/$device_name}
mkdir -p "$out"
report="$out/gpu_check.md"
started=$(date +%s)

step() {  # step TITLE COMMAND...: runs COMMAND, its output into the report inside a code block
  local title=$1
  shift
  printf '\n## %s\n\n```\n$ %s\n' "$title" "$*" >>"$report"
  local begin=$(date +%s) status=0
  "$@" >>"$report" 2>&1 || status=$?
  printf '```\n(%s s, exit status %s)\n' "$(($(date +%s) - begin))" "$status" >>"$report"
  echo "$title: exit status $status"
  return "$status"
}

# A copy of the working tree may travel without .git: then the commit is unknown.
commit=$(git rev-parse --short HEAD 2>/dev/null) || commit=unknown
if [ "$commit" != unknown ] && ! git diff --quiet HEAD 2>/dev/null; then
  commit="$commit (with local changes)"
fi
printf '# GPU check, %s\n\ncommit %s; %s\n' "$(date -u '+%Y-%m-%d %H:%M UTC')" "$commit" \
  "$([ "$dry_run" = 1 ] && echo 'dry run on the CPU' || echo "$device_name")" >"$report"

steps=" ${GPU_CHECK_STEPS:-tests training benchmarks memcheck} "
wants() { [[ "$steps" == *" $1 "* ]]; }
# pytest-xdist, where installed, spreads the tests over the machine's cores (they share the GPU).
xdist=()
if "$python" -c "import xdist" 2>/dev/null; then
  xdist=(-n 8)
fi

status=0
if [ "$dry_run" = 1 ]; then
  export TRITON_INTERPRET=1
  step "Environment" "$python" -m aevb_fast info || status=1
  step "Tests (a sample)" "$python" -m pytest -q -p no:cacheprovider tests/test_triton.py -k "block_table or interpreter" \
    || status=1
  step "Benchmarks" "$python" -m benchmarks --device cpu --sizes tiny --rounds 1 --warmup 1 --out "$out" \
    || status=1
else
  export TRITON_INTERPRET=0
  step "Device" nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || true
  step "Build" env AEVB_FAST_CUDA=1 "$python" -m pip install -q --no-build-isolation --no-deps -e . || exit 1
  step "Environment" "$python" -m aevb_fast info || status=1
  if wants tests; then
    # shellcheck disable=SC2086  # GPU_CHECK_TESTS is a list of pytest arguments
    step "Tests" timeout 240 "$python" -m pytest -q -p no:cacheprovider -rfEs --durations=10 "${xdist[@]}" \
      ${GPU_CHECK_TESTS:-tests} || status=1
  fi
  mnist=${AEVB_FAST_MNIST:-../shared/data/mnist}
  if wants training && [ -d "$mnist" ]; then
    step "Training (torchrun, nccl, bfloat16, torch.compile)" timeout 120 "$python" -m torch.distributed.run \
      --standalone --nproc_per_node 1 -m aevb_fast train --device cuda --dataset mnist --data-path "$mnist" \
      --precision bfloat16 --compile --batch-size 1000 --lr 0.1 --samples 3e5 --eval-every 1e5 --no-figures \
      --out "$out/training" || status=1
    step "Training metrics" cat "$out/training/metrics.csv" || status=1
  elif wants training; then
    printf '\n## Training\n\n%s is missing: the training step did not run\n' "$mnist" >>"$report"
  fi
  if wants benchmarks; then
    step "Benchmarks" "$python" -m benchmarks --device cuda --dtype float32 bfloat16 --rounds "${GPU_CHECK_ROUNDS:-5}" --out "$out" \
      || status=1
  fi
  sanitizer=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  if ! wants memcheck; then
    :
  elif [ -x "$sanitizer" ]; then
    # The tests that run the CUDA kernels on CUDA tensors; gradcheck's many small launches and
    # the 2^31-element cases would not fit the time.
    step "compute-sanitizer memcheck (CUDA kernels)" timeout 100 "$sanitizer" --tool memcheck --error-exitcode 1 \
      "$python" -m pytest -q -p no:cacheprovider -x tests/test_ops.py tests/test_backends_agree.py tests/test_gpu.py \
      -k "(cuda-cuda or test_gpu) and not triton and not gradcheck and not opcheck" || status=1
  else
    printf '\n## compute-sanitizer\n\nnot found on this machine: the memcheck step did not run\n' >>"$report"
  fi
fi
printf '\nTotal: %s s\n' "$(($(date +%s) - started))" >>"$report"
echo "report: $report"
exit "$status"
