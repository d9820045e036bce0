#!/usr/bin/env bash
# The README's real-data evaluation, end to end: data, the simulation-only model, the
# fine-tuned models of both folds (and the half-split ones that cross-fit their thresholds),
# both matching rules, the pooled tables and the detectability census.
#
#   bash scripts/real_eval.sh [path/to/gzh_s82_clumps]     # default ../shared/realdata/...
#
# ~75 min on 2 CPU cores from nothing (the simulation-only model is 40 of them). A step whose
# output exists is skipped, so a rerun only redoes what is missing (delete an output folder
# to redo it). Results: output/realdata/eval_xfit_folds_{distance,iou}/real_eval_folds.md,
# output/realdata/detectability/ and, at the paper's definition,
# output/realdata/paper_{distance,iou}/paper_eval.md.
set -euo pipefail
cd "$(dirname "$0")/.."
GZH=${1:-../shared/realdata/gzh_s82_clumps}
PY=${PYTHON:-.venv/bin/python}
R=output/realdata
FT=configs/RealData/finetune_catalogue_gzh_s82.yaml
SIM=configs/RealData/sim_catalogue_r18.yaml

[ -f datasets/gzh_s82c/annotations/test_b.json ] ||
    $PY tools/eval_real.py prepare --gzh "$GZH" --out datasets/gzh_s82c
[ -f datasets/sdsscat/annotations/train.json ] ||
    $PY tools/eval_real.py simulate --preset catalogue --out datasets/sdsscat --num-train 1500
[ -f datasets/sdsscatmix/annotations/train.json ] ||
    $PY tools/eval_real.py simulate --preset catalogue --out datasets/sdsscatmix \
        --num-train 36 --num-val 0 --seed 1

# shellcheck source=scripts/s82_finetune.sh
. scripts/s82_finetune.sh
[ -f $R/sim_catalogue/model_final.pth ] ||
    $PY tools/train_net.py --config-file $SIM OUTPUT_DIR $R/sim_catalogue
s82_finetune $FT $R/finetune_catalogue train test
s82_finetune $FT $R/finetune_catalogue_swap test train
s82_finetune_halves $FT $R/finetune_catalogue_xfit

evaluate() {  # tuning split, test split, fine-tuned model dir, output dir, extra arguments
    local tune=$1 test=$2 ft=$3 out=$4; shift 4
    s82_xfit_args finetuned_xfit $R/finetune_catalogue_xfit "$tune"
    $PY tools/eval_real.py evaluate --config $SIM --tune-split "$tune" --test-split "$test" \
        --baseline-colour 0 --output-dir "$out" \
        --model sim_only=$R/sim_catalogue/model_final.pth \
        --model finetuned=$ft/model_final.pth --model finetuned_xfit=$ft/model_final.pth \
        "${XFIT[@]}" "$@"
}
for rule in distance iou; do
    if [ $rule = distance ]; then extra=(TEST.CLUMP_EVAL.MATCH distance); else extra=(--psf-boxes); fi
    evaluate train test $R/finetune_catalogue $R/eval_xfit_$rule "${extra[@]}"
    evaluate test train $R/finetune_catalogue_swap $R/eval_xfit_swap_$rule "${extra[@]}"
    $PY tools/eval_real.py pool --fold "train→test=$R/eval_xfit_$rule" \
        --fold "test→train=$R/eval_xfit_swap_$rule" --output-dir $R/eval_xfit_folds_$rule
done
$PY tools/eval_real.py detectability --dataset gzh_s82c_all --output-dir $R/detectability

# The paper's definition (u-band flux fraction >= 3 % and >= 1 %, off-centre: fainter and
# central catalogue clumps are ignore regions), both folds pooled, network and baselines side
# by side, with the giant-flag target: $R/paper_{distance,iou}/paper_eval.md. The model
# fine-tuned on each fold's tuning split is finetune_on_{tune} (links to the runs above).
ln -sfn finetune_catalogue $R/finetune_on_train
ln -sfn finetune_catalogue_swap $R/finetune_on_test
s82_xfit_args finetuned_xfit $R/finetune_catalogue_xfit "{tune}"
for rule in distance iou; do
    if [ $rule = distance ]; then extra=(TEST.CLUMP_EVAL.MATCH distance); else extra=(--psf-boxes); fi
    $PY tools/eval_real.py paper --config $SIM --baseline-colour 0 --output-dir $R/paper_$rule \
        --model sim_only=$R/sim_catalogue/model_final.pth \
        --model "finetuned_xfit=$R/finetune_on_{tune}/model_final.pth" "${XFIT[@]}" \
        "${extra[@]}"
done
