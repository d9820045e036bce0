# Sourced by sdss_eval.sh, sdss_tta_views.sh and self_train.sh (needs $PY and $HOSTS, the
# gz2_sdss_1400 jpegs folder): injection-recovery on real single-epoch hosts as the SDSS domain
# measures it (docs/sdss_domain.md): the central 200 px, PSF from the image, clumps at 1, 3 and
# 10 % of the host's r light, one trial, per host class, the selection function's radius bins,
# detections as the catalogue lists them.

# inject_hosts HOSTS_JSON KEY OUTPUT_DIR [ARG ...]: the hosts listed under KEY in HOSTS_JSON,
# results in OUTPUT_DIR; the detector(s) and any other option come as arguments (e.g.
# --model NAME, or --config-file C --weights W; --baseline; --sweep; KEY VALUE overrides last).
inject_hosts() {
    local hosts_json=$1 key=$2 out=$3; shift 3
    $PY tools/inject_recover.py --images "$HOSTS/*/*.jpg" --ids-from "$hosts_json:$key" \
        --crop-size 200 --psf-from-image --group-by parent --flux-fractions 0.01 0.03 0.1 \
        --trials 1 --radius-edges 0.3 0.7 1.2 2.0 --as-catalogue --output-dir "$out" "$@"
}
