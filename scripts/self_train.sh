#!/usr/bin/env bash
# One round of self-training on the real hosts' own knots (docs/sdss_domain.md, "Learning from
# real clumps: self-training"), end to end:
#   1. label: the current model (MODEL, with its config's TTA, detections as the catalogue
#      lists them) and the classical finder vote on the knots of the train hosts of
#      datasets/$SRC (tools/self_train.py label) -> $R/pseudo_labels.json;
#   2. data: datasets/$ST, the same hosts, splits, seed and injected clumps as datasets/$SRC,
#      with the agreed knots of train hosts as clump labels (make_real_hosts.py
#      --pseudo-labels); its hosts.json must equal $SRC's;
#   3. train CFG on it (configs/RealData/sdss_realhosts_lite0_st.yaml) -> $OUT;
#   4. measure the new model as scripts/sdss_eval.sh measures the recommended one: the
#      classical baseline's F1-best point on the validation hosts, the injection sweep on the
#      100 validation hosts (the network's operating point: the lowest score no noisier than
#      the baseline there), then the injection table on the 420 held-out hosts.
#
#   bash scripts/self_train.sh [path/to/gz2_sdss_1400/jpegs]
#   # round 2, labelled by the round-1 model:
#   ROUND=round2 MODEL=output/realdata/sdss_realhosts_lite0_st/model_final.pth \
#       ST=gz2hosts1pc_st2 OUT=output/realdata/sdss_realhosts_lite0_st2 bash scripts/self_train.sh
#
# A step whose output exists is skipped (delete it to redo it). Results under
# output/self_train/$ROUND/: pseudo_labels.json, hosts_eval/real_eval.md,
# inject_val/injection_sweep.md (operating point), inject/injection_table.md (+ sweep); compare
# with output/sdss_domain/inject/injection_table.md (scripts/sdss_eval.sh, the model before).
set -euo pipefail
cd "$(dirname "$0")/.."
HOSTS=${1:-../shared/realdata/gz2_sdss_1400/jpegs}
PY=${PYTHON:-.venv/bin/python}
ROUND=${ROUND:-round1}
R=${R:-output/self_train/$ROUND}
# The labelling model: the shipped one by default (clump_d2/model_zoo/sdss_lite0), with the
# config whose TTA and post-processing it runs with; LABEL_ARGS e.g. "--min-score 0.65".
MODEL=${MODEL:-zoo:sdss_lite0}
LABEL_CFG=${LABEL_CFG:-configs/RealData/sdss_realhosts_lite0.yaml}
LABEL_ARGS=${LABEL_ARGS:-}
# The real-host set the labels are for and its settings (as scripts/sdss_eval.sh makes it).
SRC=${SRC:-gz2hosts1pc}
SET_ARGS=${SET_ARGS---clump-frac 0.01 0.15 --psf-full-image}
ST=${ST:-gz2hosts1pc_st}
CFG=${CFG:-configs/RealData/sdss_realhosts_lite0_st.yaml}
OUT=${OUT:-output/realdata/sdss_realhosts_lite0_st}
TRAIN_OPTS=${TRAIN_OPTS:-}
NAME=${NAME:-sdss_realhosts_lite0_$ROUND}
LABELS=$R/pseudo_labels.json

# shellcheck disable=SC2086
[ -f datasets/$SRC/hosts.json ] ||
    $PY tools/make_real_hosts.py --hosts "$HOSTS" --out datasets/$SRC \
        --pretrain-holdout 0.3 --val 100 $SET_ARGS
[ -f datasets/sdss1e/annotations/train.json ] ||
    $PY tools/eval_real.py simulate --out datasets/sdss1e --preset single_epoch \
        --num-train 800 --num-val 100

# 1. Pseudo-labels of the train hosts only (validation and test hosts are refused in step 2).
# shellcheck disable=SC2086
[ -f $LABELS ] ||
    $PY tools/self_train.py label --config-file $LABEL_CFG --weights "$MODEL" \
        --hosts "$HOSTS" --ids-from datasets/$SRC/hosts.json:train --out $LABELS $LABEL_ARGS

# 2. The dataset with them; a dataset made from another label file is an error, not reused.
sha_of() {
    $PY -c "import hashlib,sys; print(hashlib.sha256(open(sys.argv[1], 'rb').read()).hexdigest())" \
        "$1"
}
# shellcheck disable=SC2086
[ -f datasets/$ST/split.json ] ||
    $PY tools/make_real_hosts.py --hosts "$HOSTS" --out datasets/$ST \
        --pretrain-holdout 0.3 --val 100 $SET_ARGS --pseudo-labels $LABELS
MADE_WITH=$($PY -c "import json,sys; print(json.load(open(sys.argv[1])).get('pseudo_labels',
    {}).get('sha256', 'none'))" datasets/$ST/split.json)
if [ "$MADE_WITH" != "$(sha_of $LABELS)" ]; then
    echo "datasets/$ST was made from other pseudo-labels (sha256 $MADE_WITH), not $LABELS:" \
         "delete it, or set ST to a new name" >&2
    exit 1
fi
cmp -s datasets/$SRC/hosts.json datasets/$ST/hosts.json || {
    echo "datasets/$ST/hosts.json differs from datasets/$SRC/hosts.json: not the same hosts" >&2
    exit 1
}

# 3. Training (from the config's initial weights, as the recommended model was trained).
# shellcheck disable=SC2086
[ -f $OUT/model_final.pth ] ||
    $PY tools/train_net.py --config-file $CFG DATASETS.TRAIN "('${ST}_train','sdss1e_train')" \
        DATASETS.TEST "('${ST}_val',)" OUTPUT_DIR $OUT $TRAIN_OPTS
W=$OUT/model_final.pth

# 4. Operating points on the validation hosts, then the held-out injection table, exactly as
# scripts/sdss_eval.sh (inject_vs_baseline, the threshold choice) does for the recommended one.
# shellcheck source=scripts/inject_hosts.sh
. scripts/inject_hosts.sh
# (Without the config's test-time augmentation, as sdss_eval.sh's step 1.)
[ -f $R/hosts_eval/real_eval.json ] ||
    $PY tools/eval_real.py evaluate --dataset $ST --tune-split val --test-split test \
        --config $CFG --model $NAME=$W --output-dir $R/hosts_eval TEST.DIHEDRAL_TTA.ENABLED False
BASE_T=$(baseline_thresh $R/hosts_eval/real_eval.json)
[ -f $R/inject_val/injection_sweep.json ] ||
    inject_vs_baseline datasets/$ST/hosts.json $CFG $W val $R/inject_val --baseline-thresh "$BASE_T"
# (none at or below the baseline's false rate: the network's F1-best of the step above)
NET_T=$(network_thresh $R/inject_val/injection_sweep.json $R/hosts_eval/real_eval.json $NAME)
echo "operating points: classical baseline $BASE_T, network $NET_T"
[ -f $R/inject/injection_table.md ] ||
    inject_vs_baseline datasets/$ST/hosts.json $CFG $W test $R/inject \
       --baseline-thresh "$BASE_T" TEST.CLUMP_EVAL.SCORE_THRESH "$NET_T"

echo "pseudo-labels:        $LABELS"
echo "dataset:              datasets/$ST (split.json: the label file's sha256 and counts)"
echo "model:                $W"
echo "operating point:      $R/inject_val/injection_sweep.md (score $NET_T)"
echo "held-out hosts:       $R/inject/injection_table.md, $R/hosts_eval/real_eval.md"
echo "the model before:     output/sdss_domain/inject/injection_table.md (scripts/sdss_eval.sh)"
