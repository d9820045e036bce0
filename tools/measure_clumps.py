#!/usr/bin/env python
"""Clump photometry of a table of clump positions, or the real-data photometry check.

    # every row of clumps.csv (galaxy_id, x, y, psf_fwhm_px, file_name) with photometry:
    python tools/measure_clumps.py measure --input clumps.csv --output clumps_phot.fits
    python tools/measure_clumps.py measure --input clumps.parquet --output out.parquet \
        --band-columns u=u_file,g=g_file,r=r_file --bands u,g,r PHOTOMETRY.GIANT_BAND u
    # display photometry of the GZH S82 catalogue clumps vs the catalogue's flux ratios:
    python tools/measure_clumps.py check-gzh --gzh ../shared/realdata/gzh_s82_clumps
    # fit the u-band calibration of the PNG/JPEG giant flags on the same clumps, cross-validate
    # it by galaxy, write the table (PHOTOMETRY.DISPLAY_GIANT_CALIBRATION's default):
    python tools/measure_clumps.py calibrate-giant --gzh ../shared/realdata/gzh_s82_clumps \
        --output docs/giant_calibration.md
    # how wide real clumps and a real-host set's own knots are, in PSF FWHMs:
    python tools/measure_clumps.py widths --output output/widths/widths.md \
        --set "GZH S82 catalogue=datasets/gzh_s82c/annotations/all.json" \
        --set "GZ2 host knots=datasets/gz2hosts1pc/annotations/train.json:knots:stars"

Positions are Detectron2's continuous pixel coordinates; the image column holds a path (PNG,
JPEG, FITS, or a FITS ``{band}`` template). Trailing ``KEY VALUE`` pairs set config keys
(``PHOTOMETRY.*``, ``INPUT.FITS.*``). The logic lives in clump_d2.photometry and
clump_d2.studies.photometry_check.
"""
import argparse
import logging
import sys

import clump_d2  # noqa: F401  (fills detectron2 0.6's gaps before detectron2 is used)
from clump_d2.cli import non_negative_float, positive_int
from clump_d2.config import add_clump_config
from clump_d2.photometry.measure import PhotometryOptions, measure_table_file
from clump_d2.studies.clump_widths import write_widths
from clump_d2.studies.giant_calibration import run_giant_calibration
from clump_d2.studies.photometry_check import run_photometry_check
from detectron2.config import get_cfg


def build_options(args) -> PhotometryOptions:
    cfg = add_clump_config(get_cfg())
    if args.config_file:
        cfg.merge_from_file(args.config_file)
    opts = list(args.opts)
    if args.bands is not None:
        opts += ["INPUT.FITS.BANDS", [b for b in args.bands.split(",") if b]]
    cfg.merge_from_list(opts)
    cfg.freeze()
    return PhotometryOptions.from_config(cfg)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure", help="photometry of a table of clump positions")
    m.add_argument("--input", required=True, help="clump table (.csv/.tsv/.parquet/.fits)")
    m.add_argument("--output", required=True, help="output table (.csv/.tsv/.parquet/.fits)")
    m.add_argument("--image-column", default=None, help="image path column (default: found)")
    m.add_argument("--band-columns", default="",
                   help="per-band FITS path columns, e.g. g=g_file,r=r_file")
    m.add_argument("--image-root", default=None,
                   help="folder of relative image paths (default: the table's folder)")
    m.add_argument("--bands", default=None,
                   help="FITS bands, comma-separated (default INPUT.FITS.BANDS; '' = all planes)")
    m.add_argument("--psf-fwhm-px", type=non_negative_float, default=0.0,
                   help="PSF FWHM (px) for rows without psf_fwhm_px")
    m.add_argument("--strict", action="store_true",
                   help="stop at the first unreadable image instead of a status per row")
    c = sub.add_parser("check-gzh", help="display photometry vs the GZH S82 catalogue ratios")
    c.add_argument("--gzh", default="../shared/realdata/gzh_s82_clumps")
    c.add_argument("--dataset-dir", default=None,
                   help="a prepared gzh_s82c folder (default: prepared in a temporary folder)")
    c.add_argument("--output", default=None, help="per-clump rows (.csv/.parquet/.fits)")
    g = sub.add_parser("calibrate-giant",
                       help="fit and cross-validate the u-band calibration of display giant "
                            "flags on the GZH S82 catalogue clumps")
    g.add_argument("--gzh", default="../shared/realdata/gzh_s82_clumps")
    g.add_argument("--output", default=None,
                   help="markdown report (e.g. docs/giant_calibration.md)")
    g.add_argument("--clumps-output", default=None,
                   help="per-clump rows (.csv/.parquet/.fits): display photometry and truth")
    w = sub.add_parser("widths", help="how wide real clumps (or a real-host set's own knots) "
                                      "are, in PSF FWHMs (clump_d2.studies.clump_widths)")
    w.add_argument("--set", action="append", required=True, metavar="NAME=JSON[:knots][:stars]",
                   help="a COCO dataset whose images carry psf_fwhm_px; ':knots' measures its "
                        "host_knot ignore regions, ':stars' only images whose PSF was "
                        "measured on stars; repeat for several rows")
    w.add_argument("--output", required=True, help="Markdown table (+ .json with every clump)")
    w.add_argument("--limit", type=positive_int, default=None,
                   help="the first N images of each set with something to measure")
    for q in (m, c, g):
        q.add_argument("--config-file", default="", help="YAML config (PHOTOMETRY.* keys)")
        q.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # the command as typed, for the written tables
    words = ["python", "tools/measure_clumps.py", *(argv if argv is not None else sys.argv[1:])]
    if args.command == "widths":
        try:
            out = write_widths(args.set, args.output, " ".join(words), args.limit)
        except ValueError as e:
            p.error(str(e))
        print(out.read_text())
        return 0
    if args.command == "calibrate-giant":
        args.bands = None
        run_giant_calibration(args.gzh, args.output, build_options(args), args.clumps_output,
                              command=" ".join(words))
        return 0
    if args.command == "check-gzh":
        args.bands = None
        run_photometry_check(args.gzh, args.dataset_dir, build_options(args), args.output)
        return 0
    band_columns = dict(kv.split("=", 1) for kv in args.band_columns.split(",") if kv)
    out = measure_table_file(args.input, args.output, build_options(args),
                             image_column=args.image_column, band_columns=band_columns or None,
                             image_root=args.image_root, psf_fwhm_px=args.psf_fwhm_px,
                             on_error="raise" if args.strict else "status")
    counts = out["status"].value_counts().to_dict()
    print(f"{len(out)} clumps -> {args.output}; status: {counts}")
    return 0 if (out["status"] == "ok").any() or out.empty else 1


if __name__ == "__main__":
    sys.exit(main())
