#!/usr/bin/env bash
# The CUDA checks in one go, for the workplace's GPU machine (the device tool's nvidia-h100-x1 or
# nvidia-h200: no network; python3 there is Python 3.12 with torch 2.11, torchvision, numpy,
# scipy, scikit-learn, pytest and pytest-xdist, but not hydra, faiss, optuna, record-keeper or
# pytorch-metric-learning, which travel as wheels in .whl/). About 9 minutes at most.
#
# 1. Here (network): bash scripts/fetch_gpu_wheels.sh        # fills .whl/ (about 24 MB)
# 2. The device call (one, about 11 minutes of device time with the machine's start):
#      run  command:   bash scripts/gpu_check.sh
#           carry:     [".whl"]
#           timeout_s: 600
#    The script's own steps stop after GPU_CHECK_BUDGET_S (540) seconds, so it ends, with its
#    summary, inside the call's limit. What comes back (6 files; the tool returns 8 at most):
#      $OUT/summary.md         one row per step, the environment, every benchmark's tables
#      $OUT/gpu_check.log      every step's whole output, one after the other
#      $OUT/bench_*.json       each benchmark's figures, raw timings and environment (4 files)
#
# Steps: the wheels into /tmp/site (the project itself is imported from this tree through
# PYTHONPATH, hydra_plugins/ included, so no `pip install -e` and no metric-run command); the
# environment (nvidia-smi, versions, an nvJPEG decode); a 1-GPU torchrun run of the digits; the
# loss benchmark at batch 1024; the data benchmark, whose "decoded on the device" column is
# nvJPEG; one training epoch, fp32 and AMP; last, the tests that run on TEST_DEVICE (losses,
# miners, utils, testers), the batch-decoding tests, and the CLI and training tests (their runs
# take device=auto, so CUDA there), with TEST_DEVICE=cuda on 8 workers, with whatever time is
# left (at least 3.5 minutes).
#
# GPU_CHECK_DRY=1 bash scripts/gpu_check.sh   # here, no GPU: the same command lines on the CPU
#     with tiny sizes, the tests only collected, the .venv's python, output in ./gpu_check_out
set -uo pipefail
cd "$(dirname "$0")/.."

DRY=${GPU_CHECK_DRY:-0}
BUDGET_S=${GPU_CHECK_BUDGET_S:-540}
OUT=${OUT:-gpu_check_out}
WORK=$(mktemp -d /tmp/gpu_check.XXXXXX)  # run folders and benchmark files that do not come back
SUMMARY=$OUT/summary.md
LOG=$OUT/gpu_check.log
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg PIP_ROOT_USER_ACTION=ignore
mkdir -p "$OUT"
: >"$LOG"

if [ "$DRY" = 1 ]; then
    PYTHON=${PYTHON:-.venv/bin/python}
    DEVICE=cpu
    export OMP_NUM_THREADS=1
    TEST_FLAGS=(--collect-only)
    LOSS_SIZES=(--batch-sizes 32 --repeats 1 --only TripletMarginLoss MultiSimilarityMiner)
    DATA_SIZES=(--images 24 --workers 0 --batch-size 8 --repeats 1)
    EPOCH_SIZES=(--repeats 1)
    RUN_SIZES=(epochs=1 max_batches_per_epoch=2)
else
    PYTHON=${PYTHON:-python3}
    DEVICE=cuda
    TEST_FLAGS=(-n 8 --durations=15)
    LOSS_SIZES=(--batch-sizes 1024 --repeats 3 --max-seconds 2)
    DATA_SIZES=(--images 1000 --workers 8 --batch-size 64 --repeats 3)
    EPOCH_SIZES=(--repeats 3)
    RUN_SIZES=(epochs=2)
fi

{
    echo "# gpu_check $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null)"
    echo
    echo "| step | exit | seconds | last line |"
    echo "|---|---|---|---|"
} >"$SUMMARY"

step() {  # step NAME LIMIT_S COMMAND...: run within the budget, log it, add a summary row
    local name=$1 limit=$2 left code last start=$SECONDS
    shift 2
    left=$((BUDGET_S - SECONDS - 5))
    if [ "$left" -lt 20 ]; then
        echo "| $name | skipped | 0 | the ${BUDGET_S} s budget is spent |" | tee -a "$SUMMARY"
        return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "===== $name (limit ${limit} s): $*" >>"$LOG"
    if declare -F "$1" >/dev/null; then
        set -- bash -c "$*"  # a function of this script (exported below): timeout runs programs
    fi
    # SIGINT first: pytest and the benchmarks then print what they have before they stop.
    timeout -s INT -k 15 "$limit" "$@" 2>&1 | tee "$WORK/$name.log" >>"$LOG"
    code=${PIPESTATUS[0]}
    [ "$code" = 124 ] && code="124 (timeout)"
    last=$(grep -v '^\s*$' "$WORK/$name.log" | tail -n 1 | cut -c1-160 | tr '|' '/')
    echo "| $name | $code | $((SECONDS - start)) | $last |" | tee -a "$SUMMARY"
}

bench() {  # bench NAME LIMIT_S SCRIPT ARGS...: a benchmark step; its PATH.json stays in $OUT
    local name=$1 limit=$2
    shift 2
    step "$name" "$limit" "$PYTHON" "$@" --out "$OUT/$name"
    # Its PATH.md waits outside $OUT (only 8 files come back) for the summary's end.
    [ -f "$OUT/$name.md" ] && mv "$OUT/$name.md" "$WORK/$name.md"
}

append_tables() {  # append_tables NAME: a benchmark's markdown tables at the summary's end
    if [ -f "$WORK/$1.md" ]; then
        printf '\n---\n\n' >>"$SUMMARY"
        sed 's/^#/##/' "$WORK/$1.md" >>"$SUMMARY"
    fi
}

install_wheels() {
    if [ "$DRY" = 1 ]; then
        echo "dry run: $PYTHON's own packages (the wheels are cp312; scripts/fetch_gpu_wheels.sh --check installs them)"
    elif [ -d .whl ]; then
        "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/site .whl/*.whl &&
            echo "$(ls .whl | wc -l) wheels installed into /tmp/site"
    else
        echo "no .whl/ folder: run scripts/fetch_gpu_wheels.sh here and carry .whl" >&2
        return 1
    fi
}

environment() {
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv ||
        echo "no nvidia-smi"
    "$PYTHON" - "$DEVICE" <<'EOF'
import importlib.metadata
import platform
import sys

import torch
import torchvision
from torchvision.io import decode_jpeg, encode_jpeg

device = torch.device(sys.argv[1])
print(f"python {platform.python_version()} at {sys.executable}")
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN "
      f"{torch.backends.cudnn.version()}, torchvision {torchvision.__version__}")
if device.type == "cuda":
    properties = torch.cuda.get_device_properties(device)
    print(f"{torch.cuda.device_count()} GPU(s): {properties.name}, "
          f"{properties.total_memory / 2**30:.0f} GiB, {properties.multi_processor_count} SMs, "
          f"capability {properties.major}.{properties.minor}")
for name in ("numpy", "faiss-cpu", "hydra-core", "omegaconf", "optuna", "record-keeper",
             "pytorch-metric-learning", "scikit-learn", "pytest", "pytest-xdist"):
    try:
        print(f"{name} {importlib.metadata.version(name)}")
    except importlib.metadata.PackageNotFoundError:
        print(f"{name} MISSING")
import faiss  # noqa: E402  (after the versions: a broken wheel should not hide them)

print(f"faiss GPUs: {faiss.get_num_gpus()}")
image = torch.randint(0, 256, (3, 48, 64), dtype=torch.uint8)
encoded = encode_jpeg(image, quality=95)
on_cpu = decode_jpeg(encoded)
on_device = decode_jpeg([encoded], device=device)[0]
difference = (on_device.cpu().int() - on_cpu.int()).abs().max().item()
print(f"decode_jpeg on {device}: {tuple(on_device.shape)}, at most {difference} levels from the CPU's")
EOF
}

run_section() {  # the step's whole output as a block of the summary
    printf '\n---\n\n## %s\n\n```\n' "$1" >>"$SUMMARY"
    cat "$WORK/$1.log" >>"$SUMMARY"
    printf '```\n' >>"$SUMMARY"
}

export DRY PYTHON DEVICE
export -f install_wheels environment
step install 45 install_wheels
if [ "$DRY" = 1 ]; then
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
else
    export PYTHONPATH=/tmp/site:$PWD
fi
step environment 40 environment
GPUS=$("$PYTHON" -c "import torch; print(max(torch.cuda.device_count(), 1))" 2>/dev/null || echo 1)

step torchrun 50 "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node="$GPUS" \
    -m metric_runner "${RUN_SIZES[@]}" device="$DEVICE" hydra.run.dir="$WORK/torchrun_run"
bench bench_losses 75 scripts/bench_losses.py --device "$DEVICE" "${LOSS_SIZES[@]}"
bench bench_data 50 scripts/bench_data.py "${DATA_SIZES[@]}"
bench bench_epoch_fp32 30 scripts/bench_runner.py device="$DEVICE" amp=false "${EPOCH_SIZES[@]}"
bench bench_epoch_amp 30 scripts/bench_runner.py device="$DEVICE" amp=true "${EPOCH_SIZES[@]}"

if "$PYTHON" -c "import pytest_timeout" 2>/dev/null; then
    TEST_FLAGS+=(--timeout 150)  # one hung test must not take the whole step
fi
step tests_cuda "$BUDGET_S" env TEST_DEVICE="$DEVICE" OMP_NUM_THREADS=2 \
    "$PYTHON" -m pytest -q -p no:cacheprovider "${TEST_FLAGS[@]}" \
    tests/losses tests/miners tests/utils tests/testers tests/runner/callbacks \
    tests/datasets/test_batch_decode.py tests/runner/test_batch_decoding_run.py \
    tests/runner/test_cli.py tests/runner/test_train.py

run_section environment
for benchmark in bench_losses bench_data bench_epoch_fp32 bench_epoch_amp; do
    append_tables "$benchmark"
done
rm -rf "$WORK"
cat "$SUMMARY"
echo "files: $(ls "$OUT" | tr '\n' ' ')"
