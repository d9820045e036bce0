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
#   MODELS="sdss_lite0=zoo:sdss_lite0 sdss_lite0_st=zoo:sdss_lite0_st" bash scripts/real_clumps_eval.sh
#   FINETUNE=1 MODELS=... bash scripts/real_clumps_eval.sh   # also fine-tuned on the coadds
#
# FINETUNE=1: each model also fine-tuned on each coadd fold as the docs' S82 fine-tunes are
# (configs/RealData/finetune_sdss_lite0_gzh_s82.yaml: the fold's 12 galaxies + 36 simulated
# catalogue galaxies, 300 iterations; scripts/s82_finetune.sh) with the four half-split
# fine-tunes that cross-fit its threshold -> $E/finetune/<name>/; evaluated on the other fold
# as above -> $E/gzh_s82c_ft_pooled/real_eval_folds.md and $E/gzh_s82c_ft_paper/paper_eval.md.
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
if [ -n "${FINETUNE:-}" ]; then
    FT_CFG=${FT_CFG:-configs/RealData/finetune_sdss_lite0_gzh_s82.yaml}
    [ -f datasets/sdsscatmix/annotations/train.json ] ||
        $PY tools/eval_real.py simulate --preset catalogue --out datasets/sdsscatmix \
            --num-train 36 --num-val 0 --seed 1
    # shellcheck source=scripts/s82_finetune.sh
    . scripts/s82_finetune.sh
    for m in $MODELS; do
        name=${m%%=*} weights=${m#*=} root=$E/finetune/${m%%=*}
        s82_finetune "$FT_CFG" "$root/on_train" train test MODEL.WEIGHTS "$weights"
        s82_finetune "$FT_CFG" "$root/on_test" test train MODEL.WEIGHTS "$weights"
        s82_finetune_halves "$FT_CFG" "$root" MODEL.WEIGHTS "$weights"
    done
    # ft_args TUNE: the fine-tuned models of fold split TUNE (or the template {tune}), each
    # with its cross-fitted threshold
    ft_args() {
        FT_ARGS=()
        for m in $MODELS; do
            s82_xfit_args "${m%%=*}_ft" "$E/finetune/${m%%=*}" "$1"
            FT_ARGS+=(--model "${m%%=*}_ft=$E/finetune/${m%%=*}/on_$1/model_final.pth" "${XFIT[@]}")
        done
    }
    for fold in train:test test:train; do
        tune=${fold%%:*} test=${fold##*:}
        o=$E/gzh_s82c_ft_${tune}_to_${test}
        ft_args "$tune"
        [ -f "$o/real_eval.json" ] ||
            $PY tools/eval_real.py evaluate --dataset gzh_s82c --config "$CFG" \
                --tune-split "$tune" --test-split "$test" --baseline-colour 0 "${FT_ARGS[@]}" \
                --output-dir "$o" TEST.CLUMP_EVAL.MATCH distance
    done
    [ -f "$E/gzh_s82c_ft_pooled/real_eval_folds.md" ] ||
        $PY tools/eval_real.py pool --fold "train→test=$E/gzh_s82c_ft_train_to_test" \
            --fold "test→train=$E/gzh_s82c_ft_test_to_train" --output-dir "$E/gzh_s82c_ft_pooled"
    ft_args "{tune}"
    [ -f "$E/gzh_s82c_ft_paper/paper_eval.md" ] ||
        $PY tools/eval_real.py paper --dataset gzh_s82c --config "$CFG" --baseline-colour 0 \
            "${FT_ARGS[@]}" --flag-pct 3 1.2 calibrated --output-dir "$E/gzh_s82c_ft_paper" \
            TEST.CLUMP_EVAL.MATCH distance
    echo "fine-tuned on the coadds: $E/gzh_s82c_ft_pooled/real_eval_folds.md, $E/gzh_s82c_ft_paper/paper_eval.md"
fi
for ds in $DATASETS; do
    echo "$ds, pooled: $E/${ds}_pooled/real_eval_folds.md; paper's definition: $E/${ds}_paper/paper_eval.md"
done
