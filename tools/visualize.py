#!/usr/bin/env python
"""Truth and predictions side by side, for the worst, chosen or random galaxies of a dataset.

    python tools/visualize.py --config-file configs/quickstart.yaml --dataset clumpsim_val \
        --select worst-missed --num 16 MODEL.WEIGHTS output/quickstart/model_final.pth
    python tools/visualize.py --config-file ... --dataset clumpsim_val \
        --predictions output/clumps.parquet --select random --num 9

Writes OUTPUT_DIR/vis/<dataset>/NNN_<id>.png and contact_sheet.png. The logic lives in
clump_d2/inference/visualize.py.
"""
import clump_d2  # noqa: F401  (fills detectron2 0.6's gaps before detectron2 is used)
from clump_d2.inference.cli import visualize_main

if __name__ == "__main__":
    visualize_main()
