#!/usr/bin/env python
"""Self-training on real hosts: pseudo-labels for the hosts' own knots (docs/sdss_domain.md).

    # label the real-host dataset's train hosts with the shipped model (its TTA, as the
    # catalogue lists detections), then rebuild the dataset with them
    python tools/self_train.py label --model sdss_lite0 \
        --hosts ../shared/realdata/gz2_sdss_1400/jpegs \
        --ids-from datasets/gz2hosts1pc/hosts.json:train \
        --out output/self_train/round1/pseudo_labels.json
    python tools/make_real_hosts.py --hosts ../shared/realdata/gz2_sdss_1400/jpegs \
        --out datasets/gz2hosts1pc_st --pretrain-holdout 0.3 --val 100 \
        --clump-frac 0.01 0.15 --psf-full-image \
        --pseudo-labels output/self_train/round1/pseudo_labels.json
    # or any trained weights with their config
    python tools/self_train.py label --config-file configs/RealData/sdss_realhosts_lite0.yaml \
        --weights output/realdata/sdss_realhosts_lite0/model_final.pth --hosts DIR \
        --ids-from datasets/gz2hosts1pc/hosts.json:train --out labels.json [KEY VALUE ...]

A knot (the classical finder's peak at S/N >= 6, as in the dataset) is positive when a
detection at score >= --min-score lies within --match-fwhm PSF FWHM of it, its S/N is
>= --min-snr and it is at least --bulge-fwhm FWHM from the host centre; every other knot stays
an ignore region. The hosts are cropped and measured as the dataset does: give the dataset's
--crop-size / --psf-on / --ignore-snr / --seed (the defaults are datasets/gz2hosts1pc's);
make_real_hosts.py refuses a file made with other settings. The whole-round script:
scripts/self_train.sh. Logic: clump_d2/studies/self_training.py.
"""
import argparse
import logging

import clump_d2  # noqa: F401  (compat first)
from clump_d2.cli import non_negative_float, positive_float, positive_int, unit_float
from clump_d2.data.files import json_list
from clump_d2.engine import add_model_argument, apply_model_argument, build_config
from clump_d2.sim.real_hosts import RealHostParams
from clump_d2.studies.injection import model_detector
from clump_d2.studies.self_training import (PseudoLabelParams, pseudo_label_hosts,
                                            resolve_hosts, write_pseudo_labels)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("label", help="pseudo-label the hosts' knots with a model + the "
                                     "classical finder", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", default="", metavar="FILE", help="the model's config")
    add_model_argument(p)
    p.add_argument("--weights", default="",
                   help="with --config-file: the weights (MODEL.WEIGHTS; zoo:NAME allowed)")
    p.add_argument("--hosts", required=True, help="folder of host JPEG/PNG images")
    p.add_argument("--ids-from", default=None, metavar="JSON:KEY",
                   help="only these hosts (names or ids), e.g. "
                        "datasets/gz2hosts1pc/hosts.json:train (default: every host)")
    p.add_argument("--out", required=True, help="the pseudo-label JSON file to write")
    rule = PseudoLabelParams()
    p.add_argument("--min-score", type=unit_float, default=rule.min_score,
                   help="a detection confirms a knot at this score or above (%(default)s)")
    p.add_argument("--min-snr", type=non_negative_float, default=rule.min_snr,
                   help="knots below this S/N stay ignored (%(default)s)")
    p.add_argument("--match-fwhm", type=positive_float, default=rule.match_fwhm,
                   help="detection within this many PSF FWHM of the knot (%(default)s)")
    p.add_argument("--bulge-fwhm", type=non_negative_float, default=rule.bulge_fwhm,
                   help="knots closer to the host centre are the nucleus (%(default)s FWHM)")
    p.add_argument("--network-only-score", type=unit_float, default=None, metavar="S",
                   help="also make detections at score >= S near no knot positives "
                        "(default: off)")
    p.add_argument("--raw-detections", action="store_true",
                   help="the model's raw detections instead of the catalogue's (NMS, PSF "
                        "merging, bulge rule: INFERENCE.*)")
    p.add_argument("--crop-size", type=positive_int, default=200,
                   help="central crop (px), as the dataset's")
    p.add_argument("--psf-on", choices=["image", "crop"], default="image",
                   help="PSF measured on the whole image (make_real_hosts.py "
                        "--psf-full-image, as gz2hosts1pc) or on the crop")
    p.add_argument("--ignore-snr", type=positive_float, default=RealHostParams.ignore_snr,
                   help="the dataset's knot S/N limit (%(default)s)")
    p.add_argument("--max-pixels", type=positive_int, default=RealHostParams.max_pixels,
                   help="host images declaring more pixels are skipped, named")
    p.add_argument("--seed", type=int, default=0, help="the dataset's seed")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("opts", nargs=argparse.REMAINDER,
                   help="config overrides KEY VALUE ..., e.g. TEST.DIHEDRAL_TTA.ENABLED False")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.model and args.weights:
        parser.error("give --model NAME, or --config-file with --weights, not both")
    apply_model_argument(args)
    if not args.config_file:
        parser.error("give --model NAME or --config-file (with --weights)")
    names = None
    if args.ids_from:
        try:  # a bad file or key is named (file, line and column for broken JSON)
            names = [str(i) for i in json_list(args.ids_from)]
        except (OSError, ValueError) as e:
            parser.error(f"--ids-from: {e}")
    try:  # a listed name that is no host image, two files for one host: named
        hosts = resolve_hosts(args.hosts, names)
    except (OSError, ValueError) as e:
        parser.error(f"--hosts: {e}")
    cfg = build_config(args.config_file, list(args.opts) + (
        ["MODEL.WEIGHTS", args.weights] if args.weights else []))
    detector = model_detector(cfg, as_catalogue=not args.raw_detections)
    host_params = RealHostParams(crop_size=args.crop_size, psf_full_image=args.psf_on == "image",
                                 ignore_snr=args.ignore_snr, seed=args.seed,
                                 max_pixels=args.max_pixels)
    rule = PseudoLabelParams(args.min_score, args.min_snr, args.match_fwhm, args.bulge_fwhm,
                             args.network_only_score)
    doc = pseudo_label_hosts(hosts, detector, rule, host_params,
                             detector_name=args.weights or cfg.MODEL.WEIGHTS or args.config_file,
                             host_dir=args.hosts, show_progress=not args.no_progress)
    print(f"pseudo-labels: {write_pseudo_labels(doc, args.out)}")
    print("counts: " + ", ".join(f"{k} {v}" for k, v in doc["counts"].items()))
    return doc


if __name__ == "__main__":
    main()
