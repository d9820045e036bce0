#!/usr/bin/env python
"""Clump catalogue of a folder of images, a COCO JSON or a galaxy catalogue.

    python tools/predict_catalog.py --config-file configs/quickstart.yaml \
        --input datasets/clumpsim/images/val --output output/clumps.parquet \
        MODEL.WEIGHTS output/quickstart/model_final.pth
    python tools/predict_catalog.py ... --input galaxies.fits --band-columns g=g,r=r,i=i \
        --num-gpus 8            # or --num-workers 4 on CPUs; re-run the same line to resume

The logic lives in clump_d2.inference (cli.py, predict.py).
"""
import clump_d2  # noqa: F401  (fills detectron2 0.6's gaps before detectron2 is used)
from clump_d2.inference.cli import run_predict

if __name__ == "__main__":
    run_predict()
