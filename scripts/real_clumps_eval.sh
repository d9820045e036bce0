#!/usr/bin/env bash
# The recommended SDSS model (and any further models) on *real* catalogued clumps, as it is (no
# Stripe 82 training): the GZH Stripe 82 coadds (gzh_s82c) and the same galaxies degraded to
# single-epoch depth (gzh_s82_1e, `tools/eval_real.py degrade`), both with the classical
# finder and its colour cut beside (docs/real_clumps.md). Per dataset:
#   1. evaluate, each fold's thresholds chosen on the other fold (distance rule, the models'
#      config with its test-time augmentation) -> $E/<ds>_<tune>_to_<test>/real_eval.md;
#   2. pool both folds -> $E/<ds>_pooled/real_eval_folds.md;
#   3. the paper's definition (u-band flux fraction >= 3 % / 1 %) and the giant target, with
#      the flag at 3 %, 1.2 % and the JPEG calibration (PHOTOMETRY.DISPLAY_GIANT_CALIBRATION)
#      -> $E/<ds>_paper/paper_eval.md.
#
#   bash scripts/real_clumps_eval.sh
#   MODELS="sdss_lite0=zoo:sdss_lite0 st=output/realdata/sdss_realhosts_lite0_st/model_final.pth" \
#       E=output/sdss_domain/real24 bash scripts/real_clumps_eval.sh
#
# A step whose output exists is skipped (delete it to redo it). Needs datasets/gzh_s82c
# (scripts/real_eval.sh) and datasets/gzh_s82_1e (tools/eval_real.py degrade).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
CFG=${CFG:-configs/RealData/sdss_realhosts_lite0.yaml}
MODELS=${MODELS:-sdss_lite0=zoo:sdss_lite0}
E=${E:-output/sdss_domain/real_clumps}
DATASETS=${DATASETS:-gzh_s82c gzh_s82_1e}
model_args=()
for m in $MODELS; do model_args+=(--model "$m"); done

for ds in $DATASETS; do
    for fold in train:test test:train; do
        tune=${fold%%:*} test=${fold##*:}
        o=$E/${ds}_${tune}_to_${test}
        [ -f "$o/real_eval.json" ] ||
            $PY tools/eval_real.py evaluate --dataset "$ds" --config "$CFG" \
                --tune-split "$tune" --test-split "$test" --baseline-colour 0 \
                "${model_args[@]}" --output-dir "$o" TEST.CLUMP_EVAL.MATCH distance
    done
    [ -f "$E/${ds}_pooled/real_eval_folds.md" ] ||
        $PY tools/eval_real.py pool --fold "train→test=$E/${ds}_train_to_test" \
            --fold "test→train=$E/${ds}_test_to_train" --output-dir "$E/${ds}_pooled"
    [ -f "$E/${ds}_paper/paper_eval.md" ] ||
        $PY tools/eval_real.py paper --dataset "$ds" --config "$CFG" --baseline-colour 0 \
            "${model_args[@]}" --flag-pct 3 1.2 calibrated --output-dir "$E/${ds}_paper" \
            TEST.CLUMP_EVAL.MATCH distance
done
echo "coadds, pooled:          $E/gzh_s82c_pooled/real_eval_folds.md"
echo "single-epoch, pooled:    $E/gzh_s82_1e_pooled/real_eval_folds.md"
echo "paper's definition:      $E/<dataset>_paper/paper_eval.md"
