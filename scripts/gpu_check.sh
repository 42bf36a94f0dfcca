#!/usr/bin/env bash
# The CUDA checks in one go, for a fresh GPU machine (about 10 minutes):
#
#   bash scripts/gpu_check.sh            # from the repository root
#
# 1. installs the project with the dev and gpu extras (the tested torch first, see constraints.txt)
# 2. runs the test suite on CUDA (TEST_DEVICE=cuda) and a 2-process torchrun run of the digits
#    (NCCL when 2 GPUs are visible, else 1 process: the same entry point)
# 3. runs the loss, evaluation, data and training-epoch benchmarks on CUDA, AMP on and off
# and prints one table of what passed and what each benchmark printed last. Each step's full
# output is kept in $OUT (or ./gpu_check_out), each benchmark's figures and environment (GPU,
# versions) also as $OUT/bench_*.json and .md, so one run answers every CUDA question.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu_check_out}"
mkdir -p "$OUT"
SUMMARY="$OUT/summary.md"
echo "| step | exit | seconds | last line |" > "$SUMMARY"
echo "|---|---|---|---|" >> "$SUMMARY"

step() {  # step NAME TIMEOUT_S COMMAND...: run, keep the log, add a table row
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    local code=$?
    local last
    last=$(grep -v '^\s*$' "$OUT/$name.log" | tail -n 1 | cut -c1-150 | tr '|' '/')
    echo "| $name | $code | $((SECONDS - start)) | $last |" >> "$SUMMARY"
}

if [ ! -d .venv ]; then
    python3 -m venv .venv
fi
. .venv/bin/activate
step install 400 bash -c 'pip install -q -c constraints.txt torch==2.14.1 torchvision==0.29.1 && pip install -q -c constraints.txt -e ".[dev,gpu]"'
step cuda_visible 30 python -c "import torch, faiss; print(torch.cuda.get_device_name(0), 'GPUs:', torch.cuda.device_count(), 'faiss GPUs:', faiss.get_num_gpus())"

step tests_cuda 420 env TEST_DEVICE=cuda pytest -q -x -n 4 -m "not slow" tests/losses tests/miners tests/distances tests/reducers tests/regularizers tests/utils tests/trainers

GPUS=$(python -c "import torch; print(min(torch.cuda.device_count(), 2))")
step torchrun 300 torchrun --nproc_per_node="$GPUS" -m metric_runner epochs=2 device=auto \
    hydra.run.dir="$OUT/torchrun_run"

step bench_losses 300 python scripts/bench_losses.py --device cuda --batch-sizes 1024 --repeats 5 --out "$OUT/bench_losses"
step bench_accuracy 300 python scripts/bench_accuracy.py --sizes 100000 1000000 --out "$OUT/bench_accuracy"
step bench_data 120 python scripts/bench_data.py --images 2000 --workers 8 --out "$OUT/bench_data"
step bench_epoch_fp32 120 python scripts/bench_runner.py device=cuda amp=false --out "$OUT/bench_epoch_fp32"
step bench_epoch_amp 120 python scripts/bench_runner.py device=cuda amp=true --out "$OUT/bench_epoch_amp"

cat "$SUMMARY"
