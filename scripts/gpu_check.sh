#!/usr/bin/env bash
# One short check on a lent GPU machine (about 4 minutes): the GPU's name, the
# benchmark on facades, and a 5-epoch CUDA training run printing val L1 and
# seconds per epoch. The caller copies facades to gpu_data/facades first and
# sets OUT to the folder that comes back; the log is $OUT/gpu_check.log.
#
#   OUT=/some/folder bash scripts/gpu_check.sh
#
# Settings (environment):
#   DATA=gpu_data/facades  the dataset folder (train/ and val/)
#   EPOCHS=5               epochs of the training run
#   BENCH_ARGS=            more benchmark.py arguments, e.g. --quick
#   TRAIN_ARGS=            more train.py settings, e.g. --image_size=32
#   REQUIRE_GPU=1          0 skips nvidia-smi and the CUDA check: a CPU dry run
# CPU dry run on a tiny synthetic set:
#   OUT=/tmp/gpu_check DATA=/tmp/tiny EPOCHS=1 REQUIRE_GPU=0 BENCH_ARGS=--quick \
#     TRAIN_ARGS='--image_size=32 --width=4 --batch_size=4' bash scripts/gpu_check.sh
set -euo pipefail
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the folder for the results}"
DATA=${DATA:-gpu_data/facades}
EPOCHS=${EPOCHS:-5}
mkdir -p "$OUT"

check() {
    # a fresh machine may lack the packages; where torch is there, keep its build
    python -c 'import torch' 2>/dev/null || python -m pip install -q -r requirements.txt
    if [ "${REQUIRE_GPU:-1}" = 1 ]; then
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
        python -c 'import torch; assert torch.cuda.is_available(), "no CUDA"; print(torch.__version__, torch.cuda.get_device_name())'
    fi

    echo "== benchmark"
    python benchmark.py --data "$DATA" --out "$OUT/benchmark_gpu.json" ${BENCH_ARGS:-}

    echo "== training, $EPOCHS epochs"
    run=$(mktemp -d)
    python train.py --dataset="$DATA" --num_epochs="$EPOCHS" --save_every="$EPOCHS" \
        --checkpoint_dir="$run/checkpoints" --train_results_dir="$run/train_results" \
        --val_results_dir="$run/val_results" --cache_dir="$run/cache" ${TRAIN_ARGS:-}
    echo "== metrics (val_l1 on [-1, 1]; seconds per epoch)"
    cat "$run/checkpoints/metrics.csv"
    rm -rf "$run"
}

check 2>&1 | tee "$OUT/gpu_check.log"
