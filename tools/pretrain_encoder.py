#!/usr/bin/env python
"""Pretrain a galaxy encoder (the stand-in for Zoobot) and probe what it learnt.

    # train (resumable: re-run the same command to continue; it skips when done)
    python tools/pretrain_encoder.py train --data ../shared/realdata/gz2_sdss_1400/jpegs \\
        --out output/pretrain/lite0_gz2 --epochs 15 --size 96 --threads 1
    # linear probe, spiral vs non-spiral on the held-out galaxies: random vs ImageNet vs galaxy
    python tools/pretrain_encoder.py probe --data ../shared/realdata/gz2_sdss_1400/jpegs \\
        --encoders random imagenet:efficientnet_lite0 output/pretrain/lite0_gz2 \\
        --out output/pretrain/probe --threads 1

The trained directory is a hub layout: ``MODEL.ZOOBOT.WEIGHTS output/pretrain/lite0_gz2``
with ``MODEL.ZOOBOT.ARCH`` its architecture.
"""
import argparse
import logging

import clump_d2  # noqa: F401  (compat shims before detectron2)
from clump_d2.cli import (fraction, non_negative_float, non_negative_int, open_fraction,
                          positive_float, positive_int)
from clump_d2.pretrain.probe import format_table, run_probe
from clump_d2.pretrain.train import PretrainConfig, pretrain


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("train", "probe"):
        s = sub.add_parser(name)
        s.add_argument("--data", required=True, help="folder with one image sub-folder per class")
        s.add_argument("--out", required=True, help="output directory")
        s.add_argument("--arch", default="tf_efficientnet_lite0", help="timm architecture")
        s.add_argument("--size", type=positive_int, default=96,
                       help="input side (px) after the crop")
        s.add_argument("--crop", type=fraction, default=0.5,
                       help="central crop, fraction of side")
        s.add_argument("--holdout-fraction", type=open_fraction, default=0.3,
                       help="galaxies per class held out of pretraining, for the probe")
        s.add_argument("--seed", type=int, default=0)
        s.add_argument("--threads", type=non_negative_int, default=1,
                       help="torch threads (0: torch default)")
    t = sub.choices["train"]
    t.add_argument("--init", default="random",
                   help="random | imagenet:efficientnet_lite0 | any MODEL.ZOOBOT.WEIGHTS source")
    t.add_argument("--epochs", type=positive_int, default=15)
    t.add_argument("--batch-size", type=positive_int, default=32)
    t.add_argument("--lr", type=positive_float, default=2e-3)
    t.add_argument("--weight-decay", type=non_negative_float, default=1e-4)
    t.add_argument("--sup-weight", type=non_negative_float, default=1.0,
                   help="supervised loss weight")
    t.add_argument("--ssl-weight", type=non_negative_float, default=0.04,
                   help="VICReg loss weight")
    q = sub.choices["probe"]
    q.add_argument("--encoders", nargs="+", required=True,
                   help="random, imagenet:efficientnet_lite0 and/or pretrained directories")
    q.add_argument("--folds", type=positive_int, default=5)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.command == "train":
        pretrain(PretrainConfig(
            data_root=args.data, out_dir=args.out, arch=args.arch, init=args.init,
            size=args.size, crop=args.crop, holdout_fraction=args.holdout_fraction,
            seed=args.seed, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
            weight_decay=args.weight_decay, sup_weight=args.sup_weight,
            ssl_weight=args.ssl_weight, threads=args.threads))
    else:
        run_probe(args.data, args.encoders, args.out, arch=args.arch, size=args.size,
                         crop=args.crop, holdout_fraction=args.holdout_fraction, seed=args.seed,
                         folds=args.folds, threads=args.threads)
        print(format_table(args.out))


if __name__ == "__main__":
    main()
