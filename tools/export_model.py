#!/usr/bin/env python
"""Export a trained clump detector as TorchScript (see clump_d2/inference/export.py for why
TorchScript and not ONNX).

    python tools/export_model.py --config-file configs/quickstart.yaml \
        --output output/quickstart/model.ts MODEL.WEIGHTS output/quickstart/model_final.pth

Load it anywhere with torch:  boxes, classes, scores, size = torch.jit.load("model.ts")(image)
"""
import argparse
import os
from typing import Dict, List, Optional

import clump_d2  # noqa: F401  (fills detectron2 0.6's gaps before detectron2 is used)
from clump_d2.engine.defaults import (add_model_argument, apply_model_argument, build_config,
                                      prepare_datasets)
from clump_d2.inference.export import export_main, first_images_of
from clump_d2.inference.launch import setup_inference_logging


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Export a trained clump detector as TorchScript (traced), check that it "
                    "reproduces the PyTorch boxes on the given images, and write <output>.json "
                    "beside it.", formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", default="", metavar="FILE", help="path to config file")
    add_model_argument(parser)
    parser.add_argument("--output", default="", help="default: OUTPUT_DIR/model.ts")
    parser.add_argument("--image", action="append", default=[],
                        help="image to trace on (first) and check on (all); repeatable. "
                             "Default: the first two images of DATASETS.TEST[0]")
    parser.add_argument("opts", default=None, nargs=argparse.REMAINDER,
                        help="config overrides as KEY VALUE pairs, e.g. MODEL.WEIGHTS x.pth")
    return parser


def main(argv: Optional[List[str]] = None) -> Dict:
    args = build_parser().parse_args(argv)
    apply_model_argument(args)
    setup_inference_logging(False)
    cfg = build_config(args.config_file, args.opts)
    images = args.image
    if not images:
        test_only = cfg.clone()
        test_only.defrost()
        test_only.DATASETS.TRAIN = ()  # only the test images are needed
        prepare_datasets(test_only)
        images = first_images_of(cfg.DATASETS.TEST[0], 2)
    return export_main(cfg, args.output or os.path.join(cfg.OUTPUT_DIR, "model.ts"), images)


if __name__ == "__main__":
    main()
