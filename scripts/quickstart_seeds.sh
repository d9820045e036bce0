#!/usr/bin/env bash
# The quickstart's figures as a user will see them: configs/quickstart.yaml trained with
# several training seeds (the same synthetic data), each evaluated on clumpsim_val at the
# config's operating point, with min / median / max rows (tools/batch_eval.py --summary).
#
#   bash scripts/quickstart_seeds.sh            # SEEDS="7 1 2 3" by default (7: the config's)
#
# Resumable: a seed whose model_final.pth exists is not trained again; batch evaluation skips
# finished units. Writes output/quickstart_seeds/batch/batch_results.{md,csv} and
# docs/benchmark/quickstart_seeds.md. About 8 min per seed on a 2-core CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-output/quickstart_seeds}
SEEDS=${SEEDS:-7 1 2 3}
CFG=configs/quickstart.yaml
PAIRS=()
for s in $SEEDS; do
    d=$OUT/seed_$s
    # DATASETS.TEST (): no evaluation inside training; batch_eval evaluates every seed alike.
    [ -f "$d/model_final.pth" ] ||
        $PY tools/train_net.py --config-file $CFG --resume SEED "$s" OUTPUT_DIR "$d" \
            DATASETS.TEST "()"
    PAIRS+=(--pair "seed_$s" $CFG "$d/model_final.pth")
done
$PY tools/batch_eval.py "${PAIRS[@]}" --dataset clumpsim_val --summary \
    --output-dir "$OUT/batch"
mkdir -p docs/benchmark
{
    echo "Written by \`bash scripts/quickstart_seeds.sh\` (SEEDS=\"$SEEDS\") on $(nproc)-core" \
         "$(uname -m) CPU, $($PY -c 'import torch; print("GPU" if torch.cuda.is_available() else "no GPU")'):" \
         "configs/quickstart.yaml, each training seed evaluated on clumpsim_val at the config's" \
         "operating point (TEST.CLUMP_EVAL.SCORE_THRESH), IoU >= 0.5."
    echo
    cat "$OUT/batch/batch_results.md"
} > docs/benchmark/quickstart_seeds.md
cat docs/benchmark/quickstart_seeds.md
