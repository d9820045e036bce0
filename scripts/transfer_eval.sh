#!/usr/bin/env bash
# The transfer-learning comparison of docs/transfer.md at LR 0.0025, end to end: the real-host
# dataset (gz2hosts, Clump Scout depth), the two galaxy-pretrained encoders, and the grid of
# backbones {random, ImageNet, galaxy, ImageNet -> galaxy} x training hosts {100, 300, 880}.
#
#   bash scripts/transfer_eval.sh [path/to/gz2_sdss_1400/jpegs]
#
# Every step resumes: the dataset and each finished encoder are skipped, the pretraining
# continues after its last finished epoch, and the study skips finished runs (an interrupted
# run resumes from its last checkpoint). One torch thread per step (THREADS=N to change), so
# it can share the 2-core machine. Table: output/transfer_lr0.0025/transfer.md (copied to
# docs/transfer_table_lr0.0025.md), figure docs/figures/transfer_lr0.0025.png.
set -euo pipefail
cd "$(dirname "$0")/.."
HOSTS=${1:-../shared/realdata/gz2_sdss_1400/jpegs}
GZH=${GZH:-../shared/realdata/gzh_s82_clumps}
PY=${PYTHON:-.venv/bin/python}
THREADS=${THREADS:-1}
export OMP_NUM_THREADS=$THREADS

# The study's hosts: test hosts = the pretraining's held-out galaxies (fraction 0.3, seed 0).
[ -f datasets/gz2hosts/split.json ] ||
    $PY tools/make_real_hosts.py --hosts "$HOSTS" --out datasets/gz2hosts \
        --pretrain-holdout 0.3 --val 100
[ -f datasets/gzh_s82c/annotations/test_b.json ] ||
    $PY tools/eval_real.py prepare --gzh "$GZH" --out datasets/gzh_s82c

# The galaxy-pretrained encoders (docs/backbones.md): from random weights, and ImageNet ->
# galaxies. Each returns at once when its final encoder exists.
pretrain() {  # output dir, then pretrain_encoder.py arguments
    local out=$1; shift
    $PY tools/pretrain_encoder.py train --data "$HOSTS" --out "$out" \
        --arch tf_efficientnet_lite0 --size 64 --crop 0.5 --epochs 12 --batch-size 32 \
        --threads "$THREADS" "$@"
}
pretrain output/pretrain/lite0_gz2_64 --lr 0.002
pretrain output/pretrain/lite0_imagenet_gz2_64 --lr 0.0005 --init imagenet:efficientnet_lite0

$PY tools/transfer_study.py --output-dir output/transfer_lr0.0025 --max-iter 150 \
    --threads "$THREADS" --test-limit hosts=420 \
    --backbones random imagenet galaxy imagenet_galaxy --sizes 100 300 880 --seed 0 \
    --copy-table docs/transfer_table_lr0.0025.md --copy-figure docs/figures/transfer_lr0.0025.png \
    SOLVER.BASE_LR 0.0025
