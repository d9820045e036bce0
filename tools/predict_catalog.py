#!/usr/bin/env python
"""Clump catalogue of a folder of images, a COCO JSON or a galaxy catalogue.

    python tools/predict_catalog.py --config-file configs/quickstart.yaml \
        --input datasets/clumpsim/images/val --output output/clumps.parquet \
        MODEL.WEIGHTS output/quickstart/model_final.pth
    python tools/predict_catalog.py --model sdss_lite0 --input examples/sdss \
        --output output/examples/clumps.csv    # the shipped SDSS model, by name
    python tools/predict_catalog.py ... --input galaxies.fits --band-columns g=g,r=r,i=i \
        --num-gpus 8            # or --num-workers 4 on CPUs; re-run the same line to resume

Every detection is measured (fluxes per band, host segment, giant flags; docs/catalogues.md)
unless --no-photometry.

The logic lives in clump_d2.inference (predict.py: catalogue_main, run_catalogue).
"""
import argparse
from typing import Dict, List, Optional

import clump_d2  # noqa: F401  (fills detectron2 0.6's gaps before detectron2 is used)
from clump_d2.cli import non_negative_int, positive_float, positive_int
from clump_d2.engine import add_model_argument, apply_model_argument
from clump_d2.inference.inputs import CatalogueColumns
from clump_d2.inference.launch import launch_inference
from clump_d2.inference.predict import CatalogueJob, catalogue_main


def parse_band_columns(text: str) -> Dict[str, str]:
    """``"g=file_g,r=file_r"`` -> ``{"g": "file_g", "r": "file_r"}`` (band order kept)."""
    out: Dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in part:
            raise argparse.ArgumentTypeError(f"--band-columns: {part!r} is not BAND=COLUMN")
        band, column = part.split("=", 1)
        out[band.strip()] = column.strip()
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Run a clump detector over a folder of images, a COCO JSON or a galaxy "
                    "catalogue (CSV/Parquet/FITS table) and write a clump catalogue (Parquet, "
                    "CSV or FITS).", formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", default="", metavar="FILE", help="path to config file")
    add_model_argument(parser)
    parser.add_argument("--input", required=True,
                        help="folder of images, COCO .json, or catalogue .csv/.parquet/.fits")
    parser.add_argument("--output", default="",
                        help="catalogue path: .parquet (default OUTPUT_DIR/clumps.parquet), "
                             ".csv or .fits")
    parser.add_argument("--image-root", default=None,
                        help="folder of relative image paths (default: the JSON's images/ or "
                             "the catalogue's folder)")
    parser.add_argument("--id-column", default=None, help="catalogue: galaxy id column")
    parser.add_argument("--image-column", default=None, help="catalogue: image path column")
    parser.add_argument("--band-columns", type=parse_band_columns, default={},
                        help="catalogue: one FITS file per band, e.g. g=file_g,r=file_r,i=file_i")
    parser.add_argument("--ra-column", default=None, help="catalogue: RA (deg) of the centre")
    parser.add_argument("--dec-column", default=None, help="catalogue: Dec (deg) of the centre")
    parser.add_argument("--pixel-scale-column", default=None,
                        help="catalogue: pixel scale (arcsec/px, times --pixel-scale-factor)")
    parser.add_argument("--pixel-scale-factor", type=positive_float, default=1.0,
                        help="multiplies the pixel-scale column (Galaxy Zoo: 0.02 x PETROR90_R)")
    parser.add_argument("--psf-column", default=None, help="catalogue: PSF FWHM in pixels")
    parser.add_argument("--overwrite", action="store_true",
                        help="discard the shards of an earlier run instead of resuming it")
    parser.add_argument("--max-shards", type=positive_int, default=None,
                        help="stop after this many shards per process (resume later)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--no-photometry", action="store_true",
                        help="boxes and scores only: no photometry, host segment or giant "
                             "flags (the same as PHOTOMETRY.ENABLED False)")
    parser.add_argument("--contact-sheet", default="", metavar="IMAGE",
                        help="also draw the first 64 galaxies with their clumps (giants blue) "
                             "to this .png/.jpg")
    parser.add_argument("--verbose", action="store_true",
                        help="debug logging (tracebacks of unreadable images)")
    parser.add_argument("--num-gpus", type=non_negative_int, default=0, help="GPUs per machine")
    parser.add_argument("--num-workers", type=positive_int, default=1,
                        help="CPU processes per machine when --num-gpus is 0 (gloo)")
    parser.add_argument("--num-machines", type=positive_int, default=1, help="total machines")
    parser.add_argument("--machine-rank", type=non_negative_int, default=0,
                        help="this machine's rank")
    parser.add_argument("--dist-url", default="auto",
                        help="tcp://host:port of the main machine ('auto': a free local port)")
    parser.add_argument("opts", default=None, nargs=argparse.REMAINDER,
                        help="config overrides as KEY VALUE pairs, e.g. MODEL.WEIGHTS x.pth")
    return parser


def main(argv: Optional[List[str]] = None) -> None:
    args = build_parser().parse_args(argv)
    apply_model_argument(args)
    columns = CatalogueColumns(
        id=args.id_column, image=args.image_column, band_files=args.band_columns,
        ra=args.ra_column, dec=args.dec_column, pixel_scale=args.pixel_scale_column,
        pixel_scale_factor=args.pixel_scale_factor, psf_fwhm_px=args.psf_column,
        image_root=args.image_root)
    opts = list(args.opts or []) + (["PHOTOMETRY.ENABLED", "False"] if args.no_photometry
                                    else [])
    job = CatalogueJob(args.config_file, opts, args.input, args.output, columns,
                       args.image_root, args.overwrite, args.max_shards, not args.no_progress,
                       args.verbose, args.contact_sheet)
    launch_inference(catalogue_main, (job,), num_gpus=args.num_gpus,
                     num_workers=args.num_workers, num_machines=args.num_machines,
                     machine_rank=args.machine_rank, dist_url=args.dist_url)


if __name__ == "__main__":
    main()
