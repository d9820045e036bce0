#!/usr/bin/env bash
# How many test-time augmentation views the shipped SDSS model needs (docs/speed.md): the
# injection sweep on the 100 validation hosts with TEST.DIHEDRAL_TTA.VIEWS 8, 4, 2 and 1 (TTA
# off), each view count's operating point chosen there as scripts/sdss_eval.sh chooses the
# model's (the lowest score no noisier than the classical baseline at its F1-best point, 0.31),
# the fewest views meeting the held-out targets on the validation hosts (tools/tta_views.py),
# then that choice measured on the 420 held-out hosts.
#
#   bash scripts/sdss_tta_views.sh [path/to/gz2_sdss_1400/jpegs]
#
# Resumable (finished steps are skipped). Results under output/sdss_domain/views/. About 20 min
# on a 2-core CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
HOSTS=${1:-../shared/realdata/gz2_sdss_1400/jpegs}
PY=${PYTHON:-.venv/bin/python}
MODEL=${MODEL:-sdss_lite0}
SET=${SET:-gz2hosts1pc}
BASE_T=${BASE_T:-0.31}  # the baseline's F1-best point on the validation hosts (sdss_eval.sh)
E=${E:-output/sdss_domain/views}
# shellcheck source=scripts/inject_hosts.sh
. scripts/inject_hosts.sh
inject() {  # hosts key, output dir, then arguments
    local key=$1 out=$2; shift 2
    inject_hosts datasets/$SET/hosts.json "$key" "$out" --model "$MODEL" "$@"
}
RUNS=()
for V in 8 4 2 1; do
    TTA=(TEST.DIHEDRAL_TTA.VIEWS "$V")
    [ "$V" = 1 ] && TTA=(TEST.DIHEDRAL_TTA.ENABLED False)
    [ -f $E/val_$V/injection_sweep.json ] ||
        inject val $E/val_$V --sweep --baseline --baseline-thresh "$BASE_T" "${TTA[@]}"
    RUNS+=(--run "$V=$E/val_$V/injection_sweep.json")
done
CHOICE=$($PY tools/tta_views.py "${RUNS[@]}" --output-dir $E | tail -1)
echo "$CHOICE"
read -r _ V T <<< "$CHOICE"
if [ "$V" != none ]; then
    TTA=(TEST.DIHEDRAL_TTA.VIEWS "$V")
    [ "$V" = 1 ] && TTA=(TEST.DIHEDRAL_TTA.ENABLED False)
    [ -f $E/test_$V/injection_table.md ] ||
        inject test $E/test_$V TEST.CLUMP_EVAL.SCORE_THRESH "$T" "${TTA[@]}"
    cat $E/test_$V/injection_table.md
fi
