#!/usr/bin/env python
"""Forward time per 200 px image of each backbone of configs/ClumpScout on this machine.

    python tools/backbone_speed.py [--repeats 7] [--threads 1]

Logic in :mod:`clump_d2.studies.backbone_speed`.
"""
import argparse
from pathlib import Path

import torch

from clump_d2.cli import positive_int
from clump_d2.studies.backbone_speed import speed_table

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "ClumpScout"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=positive_int, default=7,
                        help="timed runs; the fastest counts")
    parser.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads")
    parser.add_argument("--configs", default=str(CONFIGS), help="folder of the backbone configs")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch threads: {args.threads}; fastest of {args.repeats} after 2 warm-up runs")
    for row in speed_table(args.configs, args.repeats):
        print(row, flush=True)


if __name__ == "__main__":
    main()
