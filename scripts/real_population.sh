#!/usr/bin/env bash
# Injected clumps that look like real ones (docs/real_clumps.md, "A real clump population"), end
# to end, for one VARIANT of the real-host set:
#   deep: the clumps reach real clumps' fluxes (0.3-15 % of the host's r light) and radii
#         (from 1 PSF FWHM / 0.15 R50 of the centre): configs/RealData/…_deep.yaml
#   wide: deep, and each clump as wide as the hosts' own knots (FWHM 1-2.5 x the PSF's,
#         log-uniform; tools/measure_clumps.py widths): configs/RealData/…_wide.yaml
# Both with the round-1 self-training pseudo-labels (scripts/self_train.sh makes them). Then the
# measurements of every SDSS model: the operating point on the validation hosts and the held-out
# injection table (scripts/self_train.sh's steps 3-4 -> output/self_train/$VARIANT/), and the
# real catalogued clumps (scripts/real_clumps_eval.sh -> output/sdss_domain/real_clumps_$VARIANT/).
# Resumable: a step whose output exists is skipped.
#
#   VARIANT=deep bash scripts/real_population.sh [path/to/gz2_sdss_1400/jpegs]
set -euo pipefail
cd "$(dirname "$0")/.."
HOSTS=${1:-../shared/realdata/gz2_sdss_1400/jpegs}
PY=${PYTHON:-.venv/bin/python}
VARIANT=${VARIANT:-wide}
DEEP="--clump-frac 0.003 0.15 --psf-full-image --bulge-fwhm 1.0 --radius-r50 0.15 2.0"
case $VARIANT in
    deep) SET_ARGS=$DEEP ;;
    wide) SET_ARGS="$DEEP --width-psf 1.0 2.5" ;;
    *) echo "VARIANT must be deep or wide, not '$VARIANT'" >&2; exit 2 ;;
esac
R=output/self_train/$VARIANT
LABELS=${LABELS:-output/self_train/round1/pseudo_labels.json}
CFG=configs/RealData/sdss_realhosts_lite0_$VARIANT.yaml
OUT=output/realdata/sdss_realhosts_lite0_$VARIANT
mkdir -p "$R"
[ -f "$R/pseudo_labels.json" ] || {
    [ -f "$LABELS" ] || PYTHON=$PY bash scripts/self_train.sh "$HOSTS"
    cp "$LABELS" "$R/pseudo_labels.json"
}
PYTHON=$PY ROUND=$VARIANT R=$R ST=gz2hosts$VARIANT CFG=$CFG OUT=$OUT NAME=sdss_lite0_$VARIANT \
    SET_ARGS="$SET_ARGS" bash scripts/self_train.sh "$HOSTS"
PYTHON=$PY CFG=$CFG E=output/sdss_domain/real_clumps_$VARIANT \
    MODELS="sdss_lite0_$VARIANT=$OUT/model_final.pth" bash scripts/real_clumps_eval.sh
