#!/usr/bin/env python
"""Truth and predictions side by side, for the worst, chosen or random galaxies of a dataset.

    python tools/visualize.py --config-file configs/quickstart.yaml --dataset clumpsim_val \
        --select worst-missed --num 16 MODEL.WEIGHTS output/quickstart/model_final.pth
    python tools/visualize.py --config-file ... --dataset clumpsim_val \
        --predictions output/clumps.parquet --select random --num 9

Writes OUTPUT_DIR/vis/<dataset>/NNN_<id>.png and contact_sheet.png. The logic lives in
clump_d2/inference/visualize.py (visualize_dataset).
"""
import argparse
import os
from typing import Dict, List, Optional

import clump_d2  # noqa: F401  (fills detectron2 0.6's gaps before detectron2 is used)
from clump_d2.cli import positive_float, positive_int
from clump_d2.engine.defaults import (add_model_argument, apply_model_argument, build_config,
                                      prepare_datasets)
from clump_d2.inference.launch import setup_inference_logging
from clump_d2.inference.visualize import SELECTIONS, visualize_dataset


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Draw truth (a registered dataset) and predictions (a model, a COCO results "
                    "JSON or a clump catalogue) side by side with Detectron2's Visualizer; one "
                    "PNG per galaxy and a contact sheet.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", default="", metavar="FILE", help="path to config file")
    add_model_argument(parser)
    parser.add_argument("--dataset", required=True, help="registered dataset, e.g. clumpsim_val")
    parser.add_argument("--predictions", default="model",
                        help="'model' (config + MODEL.WEIGHTS), a COCO results .json, or a "
                             "catalogue .parquet/.csv/.fits")
    parser.add_argument("--select", default="worst-missed", choices=SELECTIONS,
                        help="which galaxies to draw")
    parser.add_argument("--num", type=positive_int, default=16, help="how many galaxies")
    parser.add_argument("--ids", default="", help="comma-separated image ids (--select ids)")
    parser.add_argument("--seed", type=int, default=0, help="seed of --select random")
    parser.add_argument("--scale", type=positive_float, default=2.0, help="zoom of each image")
    parser.add_argument("--columns", type=positive_int, default=None,
                        help="contact sheet columns")
    parser.add_argument("--output-dir", default="", help="default: OUTPUT_DIR/vis/<dataset>")
    parser.add_argument("opts", default=None, nargs=argparse.REMAINDER,
                        help="config overrides as KEY VALUE pairs, e.g. MODEL.WEIGHTS x.pth")
    return parser


def setup(args):
    """The config, with only ``--dataset`` to prepare (generated on first use if it is the
    synthetic one)."""
    cfg = build_config(args.config_file, args.opts, freeze=False)
    cfg.DATASETS.TRAIN = ()
    cfg.DATASETS.TEST = (args.dataset,)
    cfg.freeze()
    prepare_datasets(cfg)
    return cfg


def main(argv: Optional[List[str]] = None) -> Dict:
    args = build_parser().parse_args(argv)
    apply_model_argument(args)
    setup_inference_logging(False)
    cfg = setup(args)
    ids = [i.strip() for i in args.ids.split(",") if i.strip()]
    output_dir = args.output_dir or os.path.join(cfg.OUTPUT_DIR, "vis", args.dataset)
    return visualize_dataset(cfg, args.dataset, output_dir, predictions=args.predictions,
                             select="ids" if ids else args.select, num=args.num, ids=ids,
                             seed=args.seed, scale=args.scale, columns=args.columns)


if __name__ == "__main__":
    main()
