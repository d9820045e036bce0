#!/usr/bin/env python
"""Turn Clump Scout labels into registered clump datasets (COCO JSON + report).

    python tools/convert_clumpscout.py consensus --table train=imageGroups_train.csv \\
        --table val=imageGroups_valid.csv --out datasets/clumpscout [--images PNG_DIR]
    python tools/convert_clumpscout.py export --export classifications.csv \\
        --subjects subjects.csv --out datasets/myclumps --task T0 [--images DIR]
    python tools/convert_clumpscout.py catalog --clumps GZH_S82_Clump_Catalog.fits \\
        --galaxies final_clumpy_sample.fits --images jpegs/ --out datasets/gzh_s82
    python tools/convert_clumpscout.py split --dataset datasets/gzh_s82 --input all \\
        --fractions train=0.8 val=0.1 test=0.1 --seed 0

Each writes ``<out>/annotations/<split>.json`` and ``<split>.report.json`` beside it; the
dataset is then registered as ``<name>_<split>`` (see datasets/README.md).

Outputs are written as one unit (all splits of a run and their images, or none, even if
killed; see ``clump_d2.convert.layout``); every verb first repairs what a killed run left.
Splits that an earlier ``split`` run made from data rewritten now are removed. A missing
``--images`` folder is an error, and so are an input with no rows (a header-only table, a
COCO file without images) and an output that keeps fewer than half of the
images/subjects/galaxies read, unless ``--force`` is given; the existing dataset is kept.
"""
import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

import clump_d2  # noqa: F401  (compat layer before detectron2)
from clump_d2.cli import non_negative_float, positive_float, positive_int, unit_float
from clump_d2.convert.aggregation import AggregationParams, SubjectOptions, convert_export
from clump_d2.convert.catalog import CatalogOptions, convert_catalog
from clump_d2.convert.coco_writer import read_coco
from clump_d2.convert.consensus import ConsensusOptions, convert_consensus_tables
from clump_d2.convert.layout import (LINK_MODES, annotation_path, recover_dataset,
                                     write_dataset)
from clump_d2.convert.splits import split_coco
from clump_d2.convert.zooniverse import ExportOptions
from clump_d2.data.datasets.builtin import check_split_name

logger = logging.getLogger("clump_d2.convert")

#: The tally that counts the dataset's units (one image each) in each command's report.
UNIT_TALLY = {"consensus": "images", "export": "subjects", "catalog": "galaxies"}


#: The tallies that count the rows of each command's input files (none may be empty).
ROW_TALLIES = {"consensus": ("images",), "export": ("classifications",),
               "catalog": ("galaxies", "clumps")}


def check_mostly_kept(command, results, force=False):
    """Refuse (``SystemExit``) an output read from an empty input (a header-only table would
    replace a split with nothing), or one that drops more than half of the units read (a
    mistyped option or folder, most likely), unless ``force``."""
    name = UNIT_TALLY[command]
    for split, (_, report) in results.items():
        for tally in ROW_TALLIES[command]:
            t = report.tallies.get(tally)
            if t is not None and t.read > 0:
                continue
            msg = (f"split {split!r}: no {tally} read from {', '.join(report.sources)} (an "
                   "empty input: header only?); nothing written. Pass --force to write an "
                   "empty split anyway")
            if not force:
                raise SystemExit(f"error: {msg}")
            logger.warning("--force: %s", msg.replace("; nothing written", ""))
        t = report.tallies.get(name)
        if t is None or t.read == 0 or t.kept * 2 >= t.read:
            continue
        msg = (f"split {split!r}: only {t.kept} of {t.read} {name} kept (dropped: "
               f"{dict(t.dropped)}); nothing written. Check the options and folders, or "
               "pass --force to write it anyway")
        if not force:
            raise SystemExit(f"error: {msg}")
        logger.warning("--force: %s", msg.replace("; nothing written", ""))


def _pairs(values, what, default_key="all"):
    """``["train=a.csv", "b.csv"]`` -> ``{"train": "a.csv", "all": "b.csv"}``."""
    out = {}
    for v in values:
        key, sep, val = v.partition("=")
        key, val = (key, val) if sep else (default_key, key)
        if key in out:
            raise SystemExit(f"{what}: {key!r} given twice")
        out[key] = val
    return out


def _size(text):
    """``"400x300"`` -> (400, 300), ``"200"`` -> (200, 200); sides >= 1."""
    w, _, h = text.lower().partition("x")
    return positive_int(w), positive_int(h or w)


#: Catalogue options that are sizes or scales (> 0); the others (rotation_deg) any number.
_POSITIVE = {"pixel_scale_factor", "pixel_scale", "psf_fwhm_arcsec"}


def build_parser():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp):
        sp.add_argument("--out", required=True, help="dataset folder datasets/<name>")
        sp.add_argument("--link", choices=LINK_MODES, default="symlink",
                        help="how images get into <out>/images (default: symlink)")
        sp.add_argument("--strict", action="store_true",
                        help="malformed rows raise an error (default: counted drops)")
        sp.add_argument("--force", action="store_true",
                        help="write the output even if it keeps fewer than half of the "
                             "images/subjects/galaxies read")
        sp.add_argument("-v", "--verbose", action="store_true")

    c = sub.add_parser("consensus", help="consensus tables (x1,x2,y1,y2 boxes per clump)")
    common(c)
    c.add_argument("--table", action="append", required=True, metavar="[SPLIT=]FILE",
                   help="table per split (CSV/TSV/Parquet); repeat for several splits")
    c.add_argument("--images", help="folder of the PNGs; images not found are dropped")
    c.add_argument("--subject-column", default="image_id")
    c.add_argument("--image-key-column", default="local_ids")
    c.add_argument("--label-column", default="label")
    c.add_argument("--box-columns", nargs=4, default=["x1", "x2", "y1", "y2"],
                   metavar=("X1", "X2", "Y1", "Y2"))
    c.add_argument("--labels", nargs="+", default=["1=clump", "2=odd_clump"],
                   metavar="VALUE=CLASS")
    c.add_argument("--file-template", default="{image_key}.png")
    c.add_argument("--image-size", type=_size, default=(400, 400), metavar="WxH")
    c.add_argument("--crop-offset", type=float, nargs=2, default=[100.0, 100.0])
    c.add_argument("--crop-size", type=_size, default=(200, 200), metavar="WxH")
    c.add_argument("--frame", choices=("crop", "full"), default="crop")

    e = sub.add_parser("export", help="raw Zooniverse classification export -> consensus")
    common(e)
    e.add_argument("--export", required=True, help="classification export CSV")
    e.add_argument("--subjects", help="subject table (CSV/Parquet/FITS): file, PSF, size")
    e.add_argument("--split", default="all", help="name of the split written (default all)")
    e.add_argument("--images", help="folder of the subject images; missing ones are dropped")
    e.add_argument("--workflow-id", type=int)
    e.add_argument("--task", help="drawing task key, e.g. T0 (default: any point-mark task)")
    e.add_argument("--subject-id-column", default="subject_id")
    e.add_argument("--file-key", default="file_name")
    e.add_argument("--file-template", default="{subject_id}.png")
    e.add_argument("--psf-key", default="psf_fwhm_px")
    e.add_argument("--default-psf-fwhm-px", type=positive_float)
    e.add_argument("--image-size", type=_size, default=(400, 400), metavar="WxH")
    e.add_argument("--crop", type=non_negative_float, nargs=4, metavar=("X0", "Y0", "W", "H"))
    e.add_argument("--min-classifications", type=positive_int, default=1)
    d = AggregationParams()
    e.add_argument("--cluster-radius-fwhm", type=positive_float, default=d.cluster_radius_fwhm)
    e.add_argument("--min-volunteer-fraction", type=unit_float,
                   default=d.min_volunteer_fraction)
    e.add_argument("--min-volunteers", type=positive_int, default=d.min_volunteers)
    e.add_argument("--odd-tool-fraction", type=unit_float, default=d.odd_tool_fraction)
    e.add_argument("--bulge-radius-fwhm", type=non_negative_float,
                   default=d.bulge_radius_fwhm)

    k = sub.add_parser("catalog", help="sky catalogue (RA/Dec) + galaxy table -> pixel boxes")
    common(k)
    k.add_argument("--clumps", required=True, help="clump catalogue (FITS/CSV/Parquet)")
    k.add_argument("--galaxies", required=True, help="galaxy table (FITS/CSV/Parquet)")
    k.add_argument("--images", required=True, help="folder of the galaxy images")
    k.add_argument("--split", default="all")
    o = CatalogOptions()
    # Each option typed as its field (a float typed str would reach the library as text).
    floats = {f.name for f in dataclasses.fields(CatalogOptions) if "float" in str(f.type)}
    for name, value in vars(o).items():
        if name in ("keep_columns", "east_left", "north_up"):
            continue
        kind = ((positive_float if name in _POSITIVE else float) if name in floats
                else str)
        k.add_argument("--" + name.replace("_", "-"), type=kind, default=value,
                       help=f"(default: {value})")
    k.add_argument("--keep-columns", nargs="*", default=[])
    k.add_argument("--east-right", action="store_true", help="RA increases to the right")
    k.add_argument("--south-up", action="store_true", help="Dec increases downwards")

    s = sub.add_parser("split", help="deterministic stratified train/val/test by galaxy")
    s.add_argument("--dataset", required=True, help="dataset folder datasets/<name>")
    s.add_argument("--input", default="all", help="split to divide (default: all)")
    s.add_argument("--fractions", nargs="+", default=["train=0.8", "val=0.1", "test=0.1"])
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--group-key", default="galaxy_id")
    s.add_argument("--force", action="store_true",
                   help="split an input split that has no images (writes empty splits)")
    s.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    policy = "error" if getattr(args, "strict", False) else "drop"
    names = {"consensus": lambda: _pairs(args.table, "--table"),
             "split": lambda: _pairs(args.fractions, "--fractions")}.get(
        args.command, lambda: {args.split: None})()
    for name in names:  # split names become file names: before any work, a clear error
        try:
            check_split_name(name, f"split {name!r}")
        except ValueError as e:
            raise SystemExit(f"error: {e}") from None
    images = getattr(args, "images", None)
    # First repair what a killed run of any verb left (annotations swap, image journal).
    recover_dataset(args.dataset if args.command == "split" else args.out)
    if images is not None and not Path(images).is_dir():
        raise SystemExit(f"error: --images {images}: no such folder")
    if args.command == "consensus":
        x1, x2, y1, y2 = args.box_columns
        options = ConsensusOptions(
            subject_column=args.subject_column, image_key_column=args.image_key_column,
            label_column=args.label_column, x1_column=x1, x2_column=x2, y1_column=y1,
            y2_column=y2, labels=_pairs(args.labels, "--labels"),
            file_template=args.file_template, image_size=args.image_size,
            crop_offset=tuple(args.crop_offset), crop_size=args.crop_size, frame=args.frame,
            on_bad_row=policy)
        results = convert_consensus_tables(_pairs(args.table, "--table"), options,
                                           image_dir=args.images)
    elif args.command == "export":
        subjects = SubjectOptions(
            subject_table=args.subjects, subject_id_column=args.subject_id_column,
            file_key=args.file_key, file_template=args.file_template, psf_key=args.psf_key,
            default_psf_fwhm_px=args.default_psf_fwhm_px, default_image_size=args.image_size,
            crop=tuple(args.crop) if args.crop else None,
            min_classifications=args.min_classifications)
        params = AggregationParams(
            cluster_radius_fwhm=args.cluster_radius_fwhm,
            min_volunteer_fraction=args.min_volunteer_fraction,
            min_volunteers=args.min_volunteers, odd_tool_fraction=args.odd_tool_fraction,
            bulge_radius_fwhm=args.bulge_radius_fwhm)
        results = {args.split: convert_export(
            args.export, ExportOptions(workflow_id=args.workflow_id, task=args.task,
                                       on_bad_row=policy),
            subjects, params, image_dir=args.images)}
    elif args.command == "catalog":
        fields = {n: getattr(args, n) for n in vars(CatalogOptions()) if hasattr(args, n)}
        fields.update(keep_columns=tuple(args.keep_columns), east_left=not args.east_right,
                      north_up=not args.south_up)
        for key, value in fields.items():  # "" or "none" on the command line: no such column
            if isinstance(value, str) and value.lower() in ("", "none"):
                fields[key] = None
        results = {args.split: convert_catalog(args.clumps, args.galaxies, args.images,
                                               CatalogOptions(**fields))}
    else:
        try:
            coco = read_coco(annotation_path(args.dataset, args.input))
        except (OSError, ValueError) as e:  # the message names the file (and line, column)
            raise SystemExit(f"error: {e}") from e
        if not coco["images"] and not args.force:
            raise SystemExit(f"error: {annotation_path(args.dataset, args.input)} has no "
                             "images (an empty input); nothing written. Pass --force to "
                             "write empty splits anyway")
        fractions = {k: float(v) for k, v in _pairs(args.fractions, "--fractions").items()}
        if args.input in fractions:
            raise SystemExit(f"error: --fractions names the input split {args.input!r}")
        splits, report = split_coco(coco, fractions, seed=args.seed, group_key=args.group_key)
        report.sources = [str(annotation_path(args.dataset, args.input))]
        report.info["derived_from"] = args.input
        write_dataset(args.dataset, {name: (part, report) for name, part in splits.items()})
        print(json.dumps(report.info["splits"], indent=2))
        return 0
    check_mostly_kept(args.command, results, args.force)
    if not images and args.link != "none":
        logger.warning("no --images given: put the images under %s/images yourself", args.out)
    # Images and annotations as one unit: a kill in between is undone by the next run.
    write_dataset(args.out, results, images_from=images, link=args.link)
    for _, report in results.values():
        report.log_summary()
    return 0


if __name__ == "__main__":
    sys.exit(main())
