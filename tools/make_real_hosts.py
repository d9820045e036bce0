#!/usr/bin/env python
"""Simulated clumps injected into real host galaxies -> a registered clump dataset.

    # gz2_sdss_1400 hosts; test hosts = a pretraining run's held-out galaxies
    python tools/make_real_hosts.py --hosts ../shared/realdata/gz2_sdss_1400/jpegs \
        --out datasets/gz2hosts --split-json output/pretrain/lite0_gz2_64/split.json --val 100
    # the same test hosts without the pretraining run (its split: held-out fraction 0.3,
    # seed 0), the split written to datasets/gz2hosts/split.json
    python tools/make_real_hosts.py --hosts ../shared/realdata/gz2_sdss_1400/jpegs \
        --out datasets/gz2hosts --pretrain-holdout 0.3 --val 100
    # or split by fractions of the hosts
    python tools/make_real_hosts.py --hosts DIR --out datasets/myhosts --fractions train=0.7 val=0.1 test=0.2
    # self-training: the train hosts' knots that a model and the classical finder agree on
    # become labels (tools/self_train.py label writes the file; docs/sdss_domain.md)
    python tools/make_real_hosts.py --hosts ../shared/realdata/gz2_sdss_1400/jpegs \
        --out datasets/gz2hosts1pc_st --pretrain-holdout 0.3 --val 100 \
        --clump-frac 0.01 0.15 --psf-full-image --pseudo-labels PSEUDO_LABELS.json
    # a clump population like the real one (docs/real_clumps.md): fainter, nearer the centre,
    # wider than the PSF
    python tools/make_real_hosts.py ... --clump-frac 0.003 0.15 --bulge-fwhm 1.0 \
        --radius-r50 0.15 2.0 --width-psf 1.0 2.5

Registers as ``<out folder name>_<split>``. Logic: :mod:`clump_d2.sim.real_hosts`.
"""
import argparse
import json
import logging
from pathlib import Path

import numpy as np

import clump_d2  # noqa: F401  (compat first)
from clump_d2.cli import (non_negative_float, non_negative_int, open_fraction, positive_float,
                          positive_int, split_fraction)
from clump_d2.data.files import read_json
from clump_d2.pretrain.images import list_image_folder, split_by_galaxy, write_split
from clump_d2.sim.real_hosts import (PseudoLabelError, RealHostParams, load_pseudo_labels,
                                     make_real_host_dataset)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", required=True, help="folder of host JPEG/PNG images")
    parser.add_argument("--out", required=True, help="dataset folder, e.g. datasets/gz2hosts")
    parser.add_argument("--fractions", nargs="+", type=split_fraction,
                        default=[("train", 0.7), ("val", 0.1), ("test", 0.2)],
                        metavar="SPLIT=F", help="split fractions by host (ignored with "
                        "--split-json); split names are plain identifiers")
    parser.add_argument("--split-json", default="",
                        help="a pretraining run's split.json: its 'heldout' galaxies are the test "
                             "hosts, its 'train' galaxies the train (and val) hosts")
    parser.add_argument("--pretrain-holdout", type=open_fraction, default=None, metavar="F",
                        help="instead of --split-json: the split a pretraining run "
                             "(tools/pretrain_encoder.py train --holdout-fraction F, the same "
                             "--seed) makes, without running it; written to OUT/split.json")
    parser.add_argument("--val", type=non_negative_int, default=100,
                        help="with --split-json / --pretrain-holdout: this many of its train "
                             "galaxies form val")
    parser.add_argument("--versions", type=positive_int,
                        default=RealHostParams.versions_per_host,
                        help="injected versions per host")
    parser.add_argument("--clump-frac", type=positive_float, nargs=2, metavar=("LO", "HI"),
                        default=RealHostParams.clump_frac,
                        help="injected clumps' r flux / host r flux, log-uniform (default: "
                             "Clump Scout depth, %(default)s)")
    parser.add_argument("--bulge-fwhm", type=non_negative_float,
                        default=RealHostParams.bulge_fwhm,
                        help="no injected clump within this many PSF FWHM of the centre "
                             "(default %(default)s)")
    parser.add_argument("--radius-r50", type=non_negative_float, nargs=2, metavar=("LO", "HI"),
                        default=RealHostParams.radius_r50,
                        help="injected clumps' distance from the centre, uniform in this "
                             "range x the host's R50 (default %(default)s)")
    parser.add_argument("--width-psf", type=positive_float, nargs=2, metavar=("LO", "HI"),
                        default=RealHostParams.width_psf,
                        help="injected clumps' FWHM in PSF FWHMs, log-uniform (default "
                             "%(default)s: point-like)")
    parser.add_argument("--psf-full-image", action="store_true",
                        help="measure each PSF on the whole image, not the crop (as "
                             "inject_recover.py --psf-from-image does; more images qualify)")
    parser.add_argument("--max-pixels", type=positive_int, default=RealHostParams.max_pixels,
                        help="host images declaring more pixels (width x height) are skipped, "
                             "named, before decoding (default %(default)s, the default of "
                             "INPUT.MAX_PIXELS)")
    parser.add_argument("--pseudo-labels", default="", metavar="FILE",
                        help="self-training: a file of tools/self_train.py label; the train "
                             "hosts' knots it marks positive become clump labels (source "
                             "pseudo_label), the others stay ignore regions; refused if it "
                             "names a val/test host or was made with other host settings")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=positive_int, default=None,
                        help="first N hosts only")
    args = parser.parse_args(argv)
    if args.clump_frac[0] > args.clump_frac[1]:
        parser.error(f"--clump-frac: LO {args.clump_frac[0]} > HI {args.clump_frac[1]}")
    if args.width_psf[0] > args.width_psf[1]:
        parser.error(f"--width-psf: LO {args.width_psf[0]} > HI {args.width_psf[1]}")
    if args.radius_r50[0] > args.radius_r50[1]:
        parser.error(f"--radius-r50: LO {args.radius_r50[0]} > HI {args.radius_r50[1]}")
    fractions = dict(args.fractions)
    if len(fractions) != len(args.fractions):
        parser.error("--fractions: a split is named twice")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    params = RealHostParams(versions_per_host=args.versions, seed=args.seed,
                            clump_frac=tuple(args.clump_frac),
                            psf_full_image=args.psf_full_image, max_pixels=args.max_pixels,
                            bulge_fwhm=args.bulge_fwhm, radius_r50=tuple(args.radius_r50),
                            width_psf=tuple(args.width_psf))
    if args.split_json and args.pretrain_holdout is not None:
        parser.error("give --split-json or --pretrain-holdout, not both")
    split, lists = None, None
    if args.pretrain_holdout is not None:
        # The same function and arguments as the pretraining run: its held-out galaxies.
        split = split_by_galaxy(list_image_folder(args.hosts)[0], args.pretrain_holdout,
                                args.seed)
    elif args.split_json:
        split = read_json(args.split_json, "--split-json")  # errors name file, line, column
    if split is not None:
        lists = host_lists(split, args.val, args.seed)
    labels, meta = None, {}
    if args.pseudo_labels:
        try:
            labels = load_pseudo_labels(args.pseudo_labels)
        except (FileNotFoundError, PseudoLabelError) as e:
            parser.error(f"--pseudo-labels: {e}")
        meta["pseudo_labels"] = labels.record()  # split.json says which labels it learnt
    # A file for val/test hosts or other host settings is refused before any write; one
    # whose knot a host lacks (other images) stops before that split's JSON is written.
    try:
        written = make_real_host_dataset(args.hosts, args.out, fractions, params,
                                         limit=args.limit, host_lists=lists,
                                         pseudo_labels=labels)
    except PseudoLabelError as e:
        parser.error(f"--pseudo-labels: {e}")
    if args.pretrain_holdout is not None:  # after the dataset, which replaces its folder
        written["split"] = write_split(split, args.out, holdout_fraction=args.pretrain_holdout,
                                       seed=args.seed, **meta)
    if lists is not None:  # the hosts of each split, e.g. for inject_recover --ids-from
        written["hosts"] = str(Path(args.out) / HOST_LISTS_FILE)
        Path(written["hosts"]).write_text(json.dumps(lists, indent=1))
    for name, path in written.items():
        print(f"{name}: {path}")
    return written


#: The dataset's host lists per split (``{"train": [...], "val": [...], "test": [...]}``).
HOST_LISTS_FILE = "hosts.json"


def host_lists(split: dict, n_val: int, seed: int) -> dict:
    """Train / val / test host ids from a pretraining split: its held-out galaxies are the
    test hosts; ``n_val`` of its training galaxies (a seeded draw) are the validation hosts."""
    train = sorted(split["train"])
    np.random.default_rng(seed).shuffle(train)
    return {"train": sorted(train[n_val:]), "val": sorted(train[:n_val]),
            "test": sorted(split["heldout"])}


if __name__ == "__main__":
    main()
