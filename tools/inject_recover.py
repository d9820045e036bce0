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
    # real single-epoch SDSS hosts (held-out galaxies of a pretraining split), each image's
    # PSF from its own compact sources, per host class (parent folder), baseline and network
    # on the same hosts in one run (docs/sdss_domain.md)
    python tools/inject_recover.py \
        --images '../shared/realdata/gz2_sdss_1400/jpegs/*/*.jpg' \
        --ids-from output/pretrain/lite0_gz2_64/split.json:heldout \
        --crop-size 200 --psf-from-image --group-by parent --flux-fractions 0.01 0.03 0.1 \
        --baseline --config-file configs/RealData/sdss_realhosts_r18.yaml \
        --weights output/realdata/sdss_realhosts/model_final.pth --output-dir out

With both --baseline and --config-file, each detector's outputs go to a sub-folder
(baseline/, model/) and the comparison to injection_table.md (+ .json) and
injection_by_group.png: per detector and host group, the recovered fraction per flux
fraction and the false detections per galaxy (detections at the operating point matching no
injected clump and outside the ignore regions: the host's own knots with --psf-from-image,
the dataset's clumps with --dataset). --sweep adds the trade-off at other score thresholds
(injection_sweep.md/.json/.png), from the same detections.

Writes injections.csv, injection_summary.json and injection_recovery.png (recovered fraction
vs clump flux fraction and vs distance from the centre, with counts), and the detector's
selection function, selection_function.csv (+ .json): the recovered fraction with its Wilson
interval and counts per flux fraction x --radius-edges bin x host group (--group-by; and all
hosts), with the margins, which the catalogue reads (INFERENCE.SELECTION_FUNCTION, p_detect;
docs/catalogues.md). A clump is recovered
when a detection at the operating point (TEST.CLUMP_EVAL.SCORE_THRESH, for the network and
the baseline alike) matches it under the evaluator's rule (TEST.CLUMP_EVAL.MATCH ...). The
method is described in clump_d2/studies/injection.py.
"""
import argparse
import dataclasses
import glob
import logging
import os
import platform
import shlex
import sys
from pathlib import Path

import clump_d2  # noqa: F401  (compat first)
import clump_d2.data  # noqa: F401  (registers the datasets)
from detectron2.data import DatasetCatalog

from clump_d2.baselines import ClassicalParams
from clump_d2.cli import non_negative_float, positive_float, positive_int, unit_float
from clump_d2.data.files import json_list
from clump_d2.data.fits_io import FitsReadOptions
from clump_d2.engine import build_config
from clump_d2.structures import clump_position
from clump_d2.sim.inject import load_linear, network_input_fn
from clump_d2.studies.injection import (DEFAULT_SWEEP, InjectionConfig, baseline_detector,
                                        is_operating, model_detector, prepare_host_images,
                                        run_injection, summarise, summarise_groups,
                                        summarise_sweep,
                                        threshold_within_false_rate, write_group_comparison,
                                        write_outputs, write_sweep)

logger = logging.getLogger("inject_recover")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", help="registered dataset (crop, psf_fwhm_px, clumps used)")
    src.add_argument("--images", nargs="+", help="image files or glob patterns")
    ap.add_argument("--psf-fwhm-px", type=positive_float, default=None,
                    help="PSF FWHM in pixels (required with --images unless --psf-from-image; "
                         "with it, the fallback where no compact source qualifies)")
    ap.add_argument("--psf-from-image", action="store_true",
                    help="with --images: real hosts prepared as the real-host dataset does "
                         "(central --crop-size crop, PSF from the image's compact sources, "
                         "else --psf-fwhm-px or a draw over SDSS's seeing range; the host's "
                         "knots avoided and ignored)")
    ap.add_argument("--crop-size", type=positive_int, default=200,
                    help="with --psf-from-image: central crop (px)")
    ap.add_argument("--ignore-snr", type=positive_float, default=6.0,
                    help="with --psf-from-image: host peaks at this S/N are ignore regions")
    ap.add_argument("--ids-from", default=None, metavar="JSON:KEY",
                    help="with --images: only images whose file stem is in this list of a "
                         "JSON file (e.g. a pretraining split.json:heldout)")
    ap.add_argument("--group-by", choices=["parent"], default=None,
                    help="report per group: the image's parent folder (e.g. host class)")
    ap.add_argument("--config-file", help="detector config (with --weights)")
    ap.add_argument("--baseline", action="store_true",
                    help="use the classical finder (with --config-file: both, compared)")
    ap.add_argument("--weights", default="", help="model weights (MODEL.WEIGHTS)")
    ap.add_argument("--model", default="", metavar="NAME",
                    help="a model-zoo model by name (e.g. sdss_lite0): its config and weights, "
                         "instead of --config-file and --weights")
    ap.add_argument("--baseline-colour", type=float, default=None, metavar="C",
                    help="with --baseline: its colour cut (B - R) / G >= C "
                         "(ClassicalParams.min_colour)")
    ap.add_argument("--baseline-thresh", type=unit_float, default=None, metavar="T",
                    help="with --baseline: the baseline's own operating point (default: "
                         "TEST.CLUMP_EVAL.SCORE_THRESH, the network's)")
    ap.add_argument("--flux-fractions", type=positive_float, nargs="+",
                    default=[0.01, 0.02, 0.03, 0.05, 0.1, 0.2])
    ap.add_argument("--radius-edges", type=non_negative_float, nargs="+",
                    default=[0.3, 0.7, 1.2, 2.0],
                    help="bins of distance / host R50 (also the injection range)")
    ap.add_argument("--per-image", type=positive_int, default=3,
                    help="clumps injected per trial")
    ap.add_argument("--trials", type=positive_int, default=2, help="trials per image and flux")
    ap.add_argument("--q", type=positive_float, default=10.0,
                    help="Lupton Q of the display model")
    ap.add_argument("--as-catalogue", action="store_true",
                    help="judge the network's detections as tools/predict_catalog.py lists "
                         "them: after class-agnostic NMS, merging within a PSF FWHM and (with "
                         "INFERENCE.DROP_BULGE True) without those on the galaxy centre")
    ap.add_argument("--sweep", type=unit_float, nargs="*", default=None, metavar="T",
                    help="also judge every trial at these score thresholds (no values: 0.05, "
                         "0.10, ..., 0.95) and write injection_sweep.{md,json,png}: recovered "
                         "fraction against false detections per galaxy, per detector")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-images", type=positive_int, default=None)
    ap.add_argument("--output-dir", required=True)
    ap.add_argument("opts", nargs=argparse.REMAINDER,
                    help="config overrides KEY VALUE ..., e.g. TEST.CLUMP_EVAL.SCORE_THRESH 0.6 "
                         "(the operating point, also of the baseline)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    if args.model:
        if args.config_file or args.weights:
            ap.error("give --model, or --config-file with --weights, not both")
        args.config_file, args.weights = f"zoo:{args.model}", f"zoo:{args.model}"
    if not (args.baseline or args.config_file):
        ap.error("give --config-file (with --weights), --baseline, or both")
    cfg = build_config(args.config_file or "", list(args.opts) + (
        ["MODEL.WEIGHTS", args.weights] if args.weights else []))
    fits_options = FitsReadOptions.from_config(cfg)
    for flag in ("baseline_colour", "baseline_thresh"):
        if getattr(args, flag) is not None and not args.baseline:
            ap.error(f"--{flag.replace('_', '-')} needs --baseline")
    detectors = []  # (name, sub-folder, detector, its operating point or None = the config's)
    if args.baseline:
        detectors.append(("classical baseline" + (
            "" if args.baseline_colour is None else f" + colour cut >= {args.baseline_colour:g}"),
            "baseline", baseline_detector(ClassicalParams(min_colour=args.baseline_colour)),
            args.baseline_thresh))
    if args.config_file:
        detectors.append((args.weights or args.config_file, "model",
                          model_detector(cfg, as_catalogue=args.as_catalogue), None))

    records = []
    if args.dataset:
        for d in DatasetCatalog.get(args.dataset):
            known = [clump_position(a) for a in d.get("annotations", [])]
            records.append({"file_name": d["file_name"], "crop": d.get("crop"),
                            "band_files": d.get("band_files"), "known_xy": known,
                            "psf_fwhm_px": d.get("psf_fwhm_px") or args.psf_fwhm_px})
    else:
        files = sorted(f for pattern in args.images for f in (glob.glob(pattern) or [pattern]))
        if args.ids_from:
            try:  # a bad file or key is named (file, line and column for broken JSON)
                ids = {str(i) for i in json_list(args.ids_from)}
            except (OSError, ValueError) as e:
                ap.error(f"--ids-from: {e}")
            files = [f for f in files if Path(f).stem in ids]
            if not files:
                ap.error(f"no image's stem is in {args.ids_from}")
        records = [{"file_name": f, "psf_fwhm_px": args.psf_fwhm_px,
                    "group": Path(f).parent.name if args.group_by == "parent" else ""}
                   for f in files]
    if args.psf_from_image and not args.images:
        ap.error("--psf-from-image works with --images")
    if not args.psf_from_image and any(not r["psf_fwhm_px"] for r in records):
        ap.error("a PSF FWHM is needed for every image: give --psf-fwhm-px")
    records = records[:args.max_images] if args.max_images else records
    images, kinds = [], set()
    if args.psf_from_image:
        images = prepare_host_images([r["file_name"] for r in records], args.crop_size,
                                     args.psf_fwhm_px, args.ignore_snr, args.q, args.group_by,
                                     args.seed)
        kinds.add("display")
        n_stars = sum(im["psf_source"] == "stars" for im in images)
        logger.info("PSF from the image's compact sources in %d of %d images; the others: %s",
                    n_stars, len(images), f"{args.psf_fwhm_px} px" if args.psf_fwhm_px
                    else "drawn over SDSS's seeing range")
    for r in records if not args.psf_from_image else []:
        linear, kind = load_linear(r["file_name"], r.get("crop"), args.q, fits_options,
                                   r.get("band_files"))
        kinds.add(kind)
        images.append({"name": r["file_name"], "linear": linear,
                       "psf_fwhm_px": float(r["psf_fwhm_px"]), "known_xy": r.get("known_xy", []),
                       "group": r.get("group", "")})
    if len(kinds) > 1:
        ap.error("mix of FITS and PNG/JPEG inputs: run them separately")
    kind = kinds.pop()
    edges = sorted(args.radius_edges)
    # The evaluator's operating point and matching rule (TEST.CLUMP_EVAL).
    icfg = InjectionConfig.from_config(cfg, flux_fractions=tuple(args.flux_fractions),
                                       radius_r50=(edges[0], edges[-1]),
                                       per_image=args.per_image, trials=args.trials, q=args.q,
                                       seed=args.seed)
    # The band of the flux fractions (the reference channel): r for gri JPEGs (G), the FITS
    # band in that place; the selection function names it for the catalogue.
    ref = icfg.ref_channel
    flux_band = (fits_options.bands[ref] if kind == "fits" and len(fits_options.bands) > ref
                 else "r")
    results, sweeps = {}, {}
    base_icfg = icfg
    for name, sub, detector, thresh in detectors:
        icfg = base_icfg if thresh is None else dataclasses.replace(base_icfg,
                                                                    score_thresh=thresh)
        if args.sweep is not None:  # the grid, with this detector's operating point in it
            grid = set(args.sweep or DEFAULT_SWEEP) | {round(icfg.score_thresh, 6)}
            icfg = dataclasses.replace(icfg, sweep_threshs=tuple(sorted(grid)))
        trial_rows = []
        rows = run_injection(images, detector, icfg, network_input_fn(kind, args.q,
                                                                      fits_options),
                             trial_rows=trial_rows)
        summary = summarise(rows, icfg.flux_fractions, edges)
        out_dir = Path(args.output_dir) / sub if len(detectors) > 1 else Path(args.output_dir)
        paths = write_outputs(rows, summary, icfg, out_dir,
                              f"{name}: {len(images)} images, {len(rows)} injected clumps\n"
                              f"recovered = matched at score >= {icfg.score_thresh:.2f}, "
                              f"{icfg.match.describe()}", band=flux_band)
        results[name] = summarise_groups(rows, trial_rows, icfg.flux_fractions,
                                         icfg.score_thresh)
        if args.sweep is not None:
            sweeps[name] = {"operating": round(icfg.score_thresh, 6),
                            "sweep": summarise_sweep(trial_rows, icfg.flux_fractions)}
        print(f"== {name}")
        for b in summary["by_flux_frac"]:
            print(f"flux_frac {b['flux_frac']:g}: recovered {b['recovered']}/{b['n']} "
                  f"= {b['fraction']:.2f}")
        for b in summary["by_radius"]:
            print(f"r/R50 {b['r50_low']:g}-{b['r50_high']:g}: recovered "
                  f"{b['recovered']}/{b['n']}")
        print("\n".join(f"{k}: {v}" for k, v in paths.items()))
    command = "python tools/inject_recover.py " + shlex.join(
        sys.argv[1:] if argv is None else list(argv))
    machine = f"{os.cpu_count()}-core {platform.machine()} CPU, {torch_device_note(cfg)}"
    paths = write_group_comparison(results, args.output_dir, command, machine)
    if sweeps:
        if args.baseline and args.config_file:
            # The network's most complete point no noisier than the baseline at its own.
            base, net = (sweeps[d[0]] for d in detectors)
            ref = next(e for e in base["sweep"] if is_operating(e, base))
            net["within_baseline_false_rate"] = threshold_within_false_rate(
                net["sweep"], ref["false_per_galaxy"])
            pick = net["within_baseline_false_rate"]
            print(f"lowest network threshold with false detections per galaxy <= the "
                  f"baseline's ({ref['false_per_galaxy']:.3f}): "
                  + ("none" if pick is None else f"{pick['thresh']:.2f}"))
        paths.update({f"sweep_{k}": v for k, v in
                      write_sweep(sweeps, args.output_dir, command, machine).items()})
        print(paths["sweep_md"].read_text())
    print(paths["md"].read_text())
    print("\n".join(f"{k}: {v}" for k, v in paths.items()))
    return 0


def torch_device_note(cfg) -> str:
    """The device the detector ran on, for the table's machine line."""
    return "no GPU" if cfg.MODEL.DEVICE == "cpu" else f"device {cfg.MODEL.DEVICE}"


if __name__ == "__main__":
    sys.exit(main())
