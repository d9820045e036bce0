#!/usr/bin/env python
"""Injection-recovery completeness of a clump detector on real images (PNG/JPEG or FITS).

    # real GZH Stripe 82 galaxies (a registered dataset: crops, PSF and known clumps from it)
    python tools/inject_recover.py --dataset gzh_s82c_test \
        --config-file configs/RealData/finetune_gzh_s82.yaml \
        --weights output/realdata/finetune/model_final.pth --output-dir output/realdata/inject
    # any images with one PSF FWHM (px); FITS cubes or per-band files with {band}
    python tools/inject_recover.py --images 'cutouts/*.fits' --psf-fwhm-px 5.5 \
        --config-file CONFIG --weights MODEL.pth --output-dir out  [KEY VALUE ...]
    # the classical baseline instead of a network, at another operating point
    python tools/inject_recover.py --dataset gzh_s82c_test --baseline --output-dir out \
        TEST.CLUMP_EVAL.SCORE_THRESH 0.6

Writes injections.csv, injection_summary.json and injection_recovery.png (recovered fraction
vs clump flux fraction and vs distance from the centre, with counts). A clump is recovered
when a detection at the operating point (TEST.CLUMP_EVAL.SCORE_THRESH, for the network and
the baseline alike) matches it under the evaluator's rule (TEST.CLUMP_EVAL.MATCH ...). The
method is described in clump_d2/studies/injection.py.
"""
import argparse
import glob
import logging
import sys

import clump_d2  # noqa: F401  (compat first)
import clump_d2.data  # noqa: F401  (registers the datasets)
from detectron2.data import DatasetCatalog

from clump_d2.baselines import ClassicalParams
from clump_d2.data.fits_io import FitsReadOptions
from clump_d2.engine import build_config
from clump_d2.structures import clump_position
from clump_d2.sim.inject import load_linear, network_input_fn
from clump_d2.studies.injection import (InjectionConfig, baseline_detector, model_detector,
                                        run_injection, summarise, write_outputs)

logger = logging.getLogger("inject_recover")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", help="registered dataset (crop, psf_fwhm_px, clumps used)")
    src.add_argument("--images", nargs="+", help="image files or glob patterns")
    ap.add_argument("--psf-fwhm-px", type=float, default=None,
                    help="PSF FWHM in pixels (required with --images)")
    det = ap.add_mutually_exclusive_group(required=True)
    det.add_argument("--config-file", help="detector config (with --weights)")
    det.add_argument("--baseline", action="store_true", help="use the classical finder")
    ap.add_argument("--weights", default="", help="model weights (MODEL.WEIGHTS)")
    ap.add_argument("--baseline-colour", type=float, default=None, metavar="C",
                    help="with --baseline: its colour cut (B - R) / G >= C "
                         "(ClassicalParams.min_colour)")
    ap.add_argument("--flux-fractions", type=float, nargs="+",
                    default=[0.01, 0.02, 0.03, 0.05, 0.1, 0.2])
    ap.add_argument("--radius-edges", type=float, nargs="+", default=[0.3, 0.7, 1.2, 2.0],
                    help="bins of distance / host R50 (also the injection range)")
    ap.add_argument("--per-image", type=int, default=3, help="clumps injected per trial")
    ap.add_argument("--trials", type=int, default=2, help="trials per image and flux")
    ap.add_argument("--q", type=float, default=10.0, help="Lupton Q of the display model")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-images", type=int, default=None)
    ap.add_argument("--output-dir", required=True)
    ap.add_argument("opts", nargs=argparse.REMAINDER,
                    help="config overrides KEY VALUE ..., e.g. TEST.CLUMP_EVAL.SCORE_THRESH 0.6 "
                         "(the operating point, also of the baseline)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    cfg = build_config(args.config_file or "", list(args.opts) + (
        ["MODEL.WEIGHTS", args.weights] if args.weights else []))
    fits_options = FitsReadOptions.from_config(cfg)
    if args.baseline_colour is not None and not args.baseline:
        ap.error("--baseline-colour needs --baseline")
    if args.baseline:
        detector = baseline_detector(ClassicalParams(min_colour=args.baseline_colour))
    else:
        detector = model_detector(cfg)

    records = []
    if args.dataset:
        for d in DatasetCatalog.get(args.dataset):
            known = [clump_position(a) for a in d.get("annotations", [])]
            records.append({"file_name": d["file_name"], "crop": d.get("crop"),
                            "band_files": d.get("band_files"), "known_xy": known,
                            "psf_fwhm_px": d.get("psf_fwhm_px") or args.psf_fwhm_px})
    else:
        files = sorted(f for pattern in args.images for f in (glob.glob(pattern) or [pattern]))
        records = [{"file_name": f, "psf_fwhm_px": args.psf_fwhm_px} for f in files]
    if any(not r["psf_fwhm_px"] for r in records):
        ap.error("a PSF FWHM is needed for every image: give --psf-fwhm-px")
    records = records[:args.max_images] if args.max_images else records
    images, kinds = [], set()
    for r in records:
        linear, kind = load_linear(r["file_name"], r.get("crop"), args.q, fits_options,
                                   r.get("band_files"))
        kinds.add(kind)
        images.append({"name": r["file_name"], "linear": linear,
                       "psf_fwhm_px": float(r["psf_fwhm_px"]), "known_xy": r.get("known_xy", [])})
    if len(kinds) > 1:
        ap.error("mix of FITS and PNG/JPEG inputs: run them separately")
    edges = sorted(args.radius_edges)
    # The evaluator's operating point and matching rule (TEST.CLUMP_EVAL).
    icfg = InjectionConfig.from_config(cfg, flux_fractions=tuple(args.flux_fractions),
                                       radius_r50=(edges[0], edges[-1]),
                                       per_image=args.per_image, trials=args.trials, q=args.q,
                                       seed=args.seed)
    rows = run_injection(images, detector, icfg, network_input_fn(kinds.pop(), args.q,
                                                                  fits_options))
    summary = summarise(rows, icfg.flux_fractions, edges)
    name = (args.weights or args.config_file) if not args.baseline else "classical baseline" + (
        "" if args.baseline_colour is None else f" + colour cut >= {args.baseline_colour:g}")
    paths = write_outputs(rows, summary, icfg, args.output_dir,
                          f"{name}: {len(images)} images, {len(rows)} injected clumps\n"
                          f"recovered = matched at score >= {icfg.score_thresh:.2f}, "
                          f"{icfg.match.describe()}")
    for b in summary["by_flux_frac"]:
        print(f"flux_frac {b['flux_frac']:g}: recovered {b['recovered']}/{b['n']} "
              f"= {b['fraction']:.2f}")
    for b in summary["by_radius"]:
        print(f"r/R50 {b['r50_low']:g}-{b['r50_high']:g}: recovered {b['recovered']}/{b['n']}")
    print("\n".join(f"{k}: {v}" for k, v in paths.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
