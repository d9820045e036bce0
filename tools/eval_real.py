#!/usr/bin/env python
"""Real-galaxy evaluation: baseline vs simulation-only vs fine-tuned detector.

    # 1. data: the GZH Stripe 82 clumps (central 200 px crops, fixed 50/50 split by galaxy)
    python tools/eval_real.py prepare --gzh ../shared/realdata/gzh_s82_clumps \
        --out datasets/gzh_s82c
    # 2. calibrated simulation for the simulation-only model
    python tools/eval_real.py simulate --out datasets/sdsssim
    # 3. train (tools/train_net.py; configs/RealData/*.yaml), then compare on the test split
    python tools/eval_real.py evaluate --output-dir output/realdata/eval \
        --model sim_only=output/realdata/sim_sdss/model_final.pth \
        --model finetuned=output/realdata/finetune/model_final.pth
    # the same galaxies at single-epoch SDSS depth (evaluate/paper/pool: --dataset gzh_s82_1e)
    python tools/eval_real.py degrade --gzh ../shared/realdata/gzh_s82_clumps \
        --single-epoch ../shared/realdata/gz2_sdss_1400/jpegs --out datasets/gzh_s82_1e
    # 4. the paper's definition (u-band flux fraction >= 3 % / 1 %, off-centre; fainter and
    #    central catalogue clumps are ignore regions), both folds, + the giant-flag target
    python tools/eval_real.py paper --output-dir output/realdata/paper \
        [--model finetuned=... --model ...]

The logic lives in :mod:`clump_d2.studies.realdata` (see its docstring for the rules).
"""
import argparse
import logging
import sys
from pathlib import Path

import clump_d2  # noqa: F401  (compat first)
import clump_d2.data  # noqa: F401  (registers the datasets)
from detectron2.data import DatasetCatalog

from clump_d2.baselines import ClassicalParams
from clump_d2.cli import (non_negative_int, open_fraction, positive_float, positive_int,
                          unit_float)
from clump_d2.convert.coco_writer import atomic_write_text
from clump_d2.convert.gzh_s82 import DEFAULT_SEED, orientation_scores, prepare_gzh_s82
from clump_d2.convert.gzh_s82_degrade import DEFAULT_SNR_MIN, make_degraded_dataset
from clump_d2.data.files import read_json
from clump_d2.data.tables import markdown_table
from clump_d2.sim.synthetic import SIM_PRESETS, simulate_sdss
from clump_d2.studies.detectability import dataset_census, summarise_census, write_census
from clump_d2.photometry import PhotometryOptions
from clump_d2.studies.realdata import (
    PAPER_FLUX_LIMITS,
    GiantTarget,
    Method,
    calibrated_u_flags,
    evaluate_methods,
    evaluate_paper_definition,
    pool_folds,
)

BASE_CONFIG = "configs/RealData/sim_sdss_r18.yaml"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="GZH S82 catalogue -> crop-frame COCO splits")
    p.add_argument("--gzh", required=True, help="the gzh_s82_clumps folder")
    p.add_argument("--out", default="datasets/gzh_s82c", help="dataset folder")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="split seed")
    p.add_argument("--train-fraction", type=open_fraction, default=0.5,
                   help="fraction of galaxies for fine-tuning (the rest is the test split)")
    p.add_argument("--galaxies", type=positive_int, default=None,
                   help="first N galaxies only")
    o = sub.add_parser("orientation", help="per galaxy of a prepared GZH S82 set: the image's "
                       "mean grey under its clump positions turned 0/90/180/270 degrees "
                       "(positions turned the wrong way fall off the galaxy)")
    o.add_argument("--dataset-dir", default="datasets/gzh_s82c", help="a prepared set")
    o.add_argument("--output", default=None, help="Markdown table (default: printed only)")
    g = sub.add_parser("degrade", help="the GZH S82 galaxies degraded to single-epoch SDSS "
                       "depth and seeing (calibrated on single-epoch images) -> the splits of "
                       "prepare, clumps below the S/N limit as ignore regions")
    g.add_argument("--gzh", required=True, help="the gzh_s82_clumps folder")
    g.add_argument("--single-epoch", default=None, metavar="DIR",
                   help="single-epoch SDSS JPEGs to calibrate on (e.g. "
                        "../shared/realdata/gz2_sdss_1400/jpegs)")
    g.add_argument("--calibration", default=None, metavar="JSON",
                   help="reuse the calibration.json of an earlier run instead")
    g.add_argument("--single-epoch-limit", type=positive_int, default=None, metavar="N",
                   help="calibrate on a seeded random N of the single-epoch images")
    g.add_argument("--out", default="datasets/gzh_s82_1e", help="dataset folder")
    g.add_argument("--realisations", type=positive_int, default=3,
                   help="noise draws per galaxy (at most 100)")
    g.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seeds every noise draw")
    g.add_argument("--galaxies", nargs="+", default=None, metavar="ID",
                   help="galaxy ids (survey_id) to write; folds stay those of all galaxies")
    g.add_argument("--snr-min", type=positive_float, default=DEFAULT_SNR_MIN,
                   help="clumps below this S/N in the degraded image are ignore regions")
    g.add_argument("--depth-factor", type=positive_float, default=None,
                   help="fix the depth factor (point-source noise / the coadd's) instead "
                        "of calibrating it (e.g. 6.3: 2 mag shallower)")
    g.add_argument("--seeing-arcsec", type=positive_float, default=None,
                   help="fix the single-epoch seeing FWHM instead of calibrating it")
    s = sub.add_parser("simulate", help="write the calibrated SDSS-preset simulation")
    s.add_argument("--out", default="datasets/sdsssim")
    s.add_argument("--num-train", type=positive_int, default=600)
    s.add_argument("--num-val", type=non_negative_int, default=150)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--preset", choices=SIM_PRESETS, default="clumpscout",
                   help="label population: Clump Scout's (>= ~3%% of the host) or the "
                        "Mehta et al. catalogue's (median 0.33%%)")
    e = sub.add_parser("evaluate", help="baseline + models on the real test split -> table")
    e.add_argument("--tune-split", default="train", help="split choosing each threshold")
    e.add_argument("--test-split", default="test")
    e.add_argument("--output-dir", default="output/realdata/eval")
    q = sub.add_parser("paper", help="the paper's definition (u-band flux fraction limits, "
                       "off-centre), both folds pooled, + the giant-flag target -> table")
    q.add_argument("--limits", type=positive_float, nargs="+", default=list(PAPER_FLUX_LIMITS),
                   help="u-band flux-fraction limits, one table block each")
    q.add_argument("--flag-pct", type=flag_spec, nargs="+", default=[3.0, 1.2],
                   help="giant-flag thresholds (%% of the host, display B channel) of the "
                        "target; 1.2 = 3 %% less the ~0.4 dex by which display ratios read "
                        "low; 'calibrated' (or 'calibrated:P'): the catalogue's own flag, "
                        "u-band fraction predicted by PHOTOMETRY.DISPLAY_GIANT_CALIBRATION "
                        ">= 3 %% (P %%)")
    q.add_argument("--flag-recall", type=unit_float, default=0.9,
                   help="one more giant flag, its threshold chosen per fold on the tuning "
                        "split: the largest that flags this fraction of its catalogue "
                        "clumps at or above the limit (0 = none)")
    q.add_argument("--giant-select-purity", type=unit_float, default=0.8,
                   help="also count the target for a giant catalogue with its own score "
                        "threshold, chosen on the tuning split: the lowest at which this "
                        "fraction of the flagged detections lie on a catalogued clump (0 = "
                        "none)")
    q.add_argument("--giant-ceiling-purity", type=unit_float, default=0.8,
                   help="also the target's ceiling: the best score and flag thresholds chosen "
                        "on the test fold itself with at least this flagged purity, an upper "
                        "bound on any threshold choice (0 = none)")
    q.add_argument("--giant-raw", action="store_true",
                   help="count the giant target on the detector's raw output instead of the "
                        "catalogue a user gets (default: each method's INFERENCE "
                        "post-processing as predict_catalog.py applies it: NMS, merging "
                        "within a PSF FWHM, the bulge rule)")
    q.add_argument("--output-dir", default="output/realdata/paper")
    for a in (e, q):  # the methods: baseline(s) and models
        a.add_argument("--dataset", default="gzh_s82c", help="registered dataset prefix")
        a.add_argument("--config", default=BASE_CONFIG, help="config of the models")
        a.add_argument("--model", action="append", default=[], metavar="NAME=WEIGHTS",
                       help="a model to evaluate (repeatable)")
        a.add_argument("--psf-boxes", action="store_true",
                       help="also evaluate each model with its boxes re-sized to 2.5 x the "
                            "image's PSF FWHM (rows '<name>+psf_boxes')")
        a.add_argument("--threshold-from", action="append", default=[],
                       metavar="NAME=WEIGHTS@DATASET",
                       help="choose model NAME's threshold on DATASET scored by WEIGHTS "
                            "instead of on the tuning split (repeatable; counts pooled): "
                            "cross-fitting, e.g. a model fine-tuned on train_a scored on "
                            "train_b and vice versa")
        a.add_argument("--no-baseline", action="store_true",
                       help="skip the classical baseline")
        a.add_argument("--baseline-colour", type=float, default=None, metavar="C",
                       help="add a row 'classical_baseline+colour': the baseline with its "
                            "colour cut (B - R) / G >= C (ClassicalParams.min_colour)")
        a.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    f = sub.add_parser("pool", help="pool evaluate runs on complementary splits -> table")
    f.add_argument("--fold", action="append", default=[], metavar="LABEL=DIR", required=True,
                   help="an evaluate --output-dir and its label (repeatable)")
    f.add_argument("--output-dir", required=True)
    for q in (p, g):
        q.add_argument("--rotate-galaxy", action="append", default=[], type=rotation_spec,
                       metavar="GALAXY_ID=QUARTER_TURNS",
                       help="turn a galaxy's catalogue positions by quarter turns about the "
                            "image centre before anything else (off by default: the catalogue "
                            "as published; see `orientation`); repeatable")
    d = sub.add_parser("detectability", help="S/N census of a labelled dataset's clumps, "
                       "unlisted peaks and noise peaks (clump_d2.studies.detectability)")
    d.add_argument("--dataset", default="gzh_s82c_all", help="registered dataset")
    d.add_argument("--output-dir", default="output/realdata/detectability")
    return parser


def rotation_spec(text: str):
    """``GALAXY_ID=QUARTER_TURNS`` -> (id, turns in 0-3)."""
    gid, sep, turns = text.partition("=")
    if not sep or not gid or turns not in ("0", "1", "2", "3"):
        raise argparse.ArgumentTypeError(f"{text!r} is not GALAXY_ID=QUARTER_TURNS (turns 0-3)")
    return gid, int(turns)


def flag_spec(text: str):
    """``--flag-pct`` item: a per cent (float), or ``calibrated[:P]`` -> ("calibrated", P)."""
    name, _, pct = text.partition(":")
    if name == "calibrated":
        return ("calibrated", positive_float(pct) if pct else 3.0)
    return positive_float(text)


def build_methods(args, parser):
    """The methods of ``evaluate`` / ``paper``: baseline(s), then each model."""
    threshold_from = {}
    for spec in args.threshold_from:
        name, sep, rest = spec.partition("=")
        weights, at, dataset = rest.rpartition("@")
        if not (sep and at and weights and dataset):
            parser.error(f"--threshold-from {spec!r}: expected NAME=WEIGHTS@DATASET")
        threshold_from.setdefault(name, []).append((weights, dataset))
    unknown = set(threshold_from) - {m.partition("=")[0] for m in args.model}
    if unknown:
        parser.error(f"--threshold-from names no --model: {sorted(unknown)}")
    methods = [] if args.no_baseline else [
        Method("classical_baseline", kind="baseline", opts=list(args.opts))]
    if args.baseline_colour is not None:
        methods.append(Method("classical_baseline+colour", kind="baseline",
                              opts=list(args.opts),
                              baseline_params=ClassicalParams(min_colour=args.baseline_colour)))
    for spec in args.model:
        name, sep, weights = spec.partition("=")
        if not sep:
            parser.error(f"--model {spec!r}: expected NAME=WEIGHTS")
        pairs = threshold_from.get(name, [])
        methods.append(Method(name, config=args.config, weights=weights,
                              opts=list(args.opts), threshold_from=pairs))
        if args.psf_boxes:
            methods.append(Method(f"{name}+psf_boxes", config=args.config,
                                  weights=weights, opts=list(args.opts), psf_boxes=True,
                                  threshold_from=pairs))
    return methods


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    if args.command == "prepare":
        f = args.train_fraction
        paths = prepare_gzh_s82(args.gzh, args.out, {"train": f, "test": 1 - f}, args.seed,
                                galaxies=args.galaxies, rotations=dict(args.rotate_galaxy))
        print("\n".join(f"{k}: {v}" for k, v in paths.items()))
    elif args.command == "orientation":
        ann = Path(args.dataset_dir) / "annotations" / "all.json"
        rows = orientation_scores(read_json(ann, "--dataset-dir"),
                                  Path(args.dataset_dir) / "images")
        table = markdown_table(rows, ["galaxy_id", "clumps", "grey_0", "grey_1", "grey_2",
                                      "grey_3", "best_turns", "gain"],
                               formats={k: "{:.1f}".format for k in
                                        ("grey_0", "grey_1", "grey_2", "grey_3", "gain")})
        text = (f"Mean grey level (0-255) of each galaxy's image under its clump positions "
                f"turned by 0-3 quarter turns (`python tools/eval_real.py orientation "
                f"--dataset-dir {args.dataset_dir}`):\n\n" + table)
        if args.output:
            atomic_write_text(args.output, text)
        print(text)
    elif args.command == "degrade":
        if not (args.single_epoch or args.calibration):
            parser.error("degrade needs --single-epoch DIR or --calibration JSON")
        paths = make_degraded_dataset(
            args.gzh, args.out, args.single_epoch, args.calibration, args.single_epoch_limit,
            args.depth_factor, args.seeing_arcsec, args.realisations, args.seed, args.galaxies,
            args.snr_min, rotations=dict(args.rotate_galaxy))
        print("\n".join(f"{k}: {v}" for k, v in paths.items()))
    elif args.command == "simulate":
        paths = simulate_sdss(args.out, args.num_train, args.num_val, args.seed,
                              preset=args.preset)
        print("\n".join(f"{k}: {v}" for k, v in paths.items()))
    elif args.command == "detectability":
        census = dataset_census(DatasetCatalog.get(args.dataset))
        paths = write_census(census, summarise_census(census), args.output_dir)
        print(paths["md"].read_text())
    elif args.command == "pool":
        folds = {}
        for spec in args.fold:
            label, sep, path = spec.partition("=")
            if not sep:
                parser.error(f"--fold {spec!r}: expected LABEL=DIR")
            folds[label] = path
        pool_folds(folds, args.output_dir)
        print(open(f"{args.output_dir}/real_eval_folds.md").read())
    elif args.command == "paper":
        methods = build_methods(args, parser)
        calibrated = [f[1] for f in args.flag_pct if isinstance(f, tuple)]
        target = GiantTarget(flag_pcts=tuple(f for f in args.flag_pct if not isinstance(f, tuple)),
                             photometry=PhotometryOptions(),
                             named_flags=calibrated_u_flags(calibrated),
                             calibrate_recall=args.flag_recall or None,
                             select_purity=args.giant_select_purity or None,
                             as_catalogue=not args.giant_raw,
                             ceiling_purity=args.giant_ceiling_purity or None)
        rows = evaluate_paper_definition(methods, args.dataset, args.output_dir, args.config,
                                         limits=args.limits, target=target)
        print(open(f"{args.output_dir}/paper_eval.md").read())
        return 0 if rows else 1
    else:
        methods = build_methods(args, parser)
        rows = evaluate_methods(methods, f"{args.dataset}_{args.tune_split}",
                                f"{args.dataset}_{args.test_split}", args.output_dir,
                                args.config)
        print(open(f"{args.output_dir}/real_eval.md").read())
        return 0 if rows else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
