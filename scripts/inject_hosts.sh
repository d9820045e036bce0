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

# inject_vs_baseline HOSTS_JSON CONFIG WEIGHTS KEY OUTPUT_DIR [ARG ...]: a model (its config
# and weights) beside the classical finder, judged at every score (--sweep), as
# sdss_eval.sh and self_train.sh choose and check an operating point.
inject_vs_baseline() {
    local hosts_json=$1 cfg=$2 weights=$3 key=$4 out=$5; shift 5
    inject_hosts "$hosts_json" "$key" "$out" --sweep --baseline --config-file "$cfg" \
        --weights "$weights" "$@"
}

# baseline_thresh REAL_EVAL_JSON: the classical finder's F1-best score on the validation hosts
# (tools/eval_real.py evaluate --tune-split val), its operating point.
baseline_thresh() {
    $PY -c "import json,sys; print(round(next(r['thresh'] for r in json.load(open(sys.argv[1]))
    if r['method'] == 'classical_baseline'), 4))" "$1"
}

# network_thresh SWEEP_JSON REAL_EVAL_JSON METHOD: the network's operating point, from the
# injection sweep on the validation hosts: the lowest score no noisier than the baseline at its
# point; when none is, METHOD's F1-best score in REAL_EVAL_JSON.
network_thresh() {
    $PY -c "import json,sys; s = json.load(open(sys.argv[1]))['sweeps']
pick = next(v['within_baseline_false_rate'] for k, v in s.items() if k != 'classical baseline')
print(pick['thresh'] if pick else round(next(r['thresh'] for r in json.load(open(sys.argv[2]))
    if r['method'] == sys.argv[3]), 4))" "$1" "$2" "$3"
}
