# Sourced by real_eval.sh and sdss_eval.sh (needs $PY): fine-tuning a model on the real GZH
# Stripe 82 galaxies, one fold's split at a time, and the cross-fitted thresholds.
#
# The galaxies are split in two folds (train, test), each also halved (train_a/train_b,
# test_a/test_b). A model fine-tuned on a fold's split is evaluated on the other fold; its
# score threshold is chosen by the models fine-tuned on the split's halves, each scored on the
# other half, so that no galaxy chooses a threshold for a model that was trained on it.

# s82_finetune CONFIG OUTPUT_DIR SPLIT EVAL_SPLIT [KEY VALUE ...]: CONFIG trained on
# gzh_s82c_SPLIT mixed with the 36 simulated catalogue galaxies (sdsscatmix), evaluated at the
# end on gzh_s82c_EVAL_SPLIT, with optional config overrides; skipped when
# OUTPUT_DIR/model_final.pth exists.
s82_finetune() {
    local cfg=$1 out=$2 on=$3 ev=$4; shift 4
    [ -f "$out/model_final.pth" ] ||
        $PY tools/train_net.py --config-file "$cfg" DATASETS.TRAIN "('gzh_s82c_$on','sdsscatmix_train')" \
            DATASETS.TEST "('gzh_s82c_$ev',)" OUTPUT_DIR "$out" "$@"
}

# s82_finetune_halves CONFIG ROOT [KEY VALUE ...]: the four half-split runs that choose the
# thresholds, ROOT/{train_a,train_b,test_a,test_b}.
s82_finetune_halves() {
    local cfg=$1 root=$2 pair; shift 2
    for pair in train_a:train_b train_b:train_a test_a:test_b test_b:test_a; do
        s82_finetune "$cfg" "$root/${pair%%:*}" "${pair%%:*}" "${pair##*:}" "$@"
    done
}

# s82_xfit_args NAME ROOT TUNE: sets the array XFIT to eval_real.py's --threshold-from
# arguments choosing model NAME's threshold with the half-split runs of ROOT on fold split
# TUNE (a split's name, or the template {tune} of `eval_real.py paper`).
s82_xfit_args() {
    local name=$1 root=$2 tune=$3
    XFIT=(--threshold-from "$name=$root/${tune}_a/model_final.pth@gzh_s82c_${tune}_b"
          --threshold-from "$name=$root/${tune}_b/model_final.pth@gzh_s82c_${tune}_a")
}
