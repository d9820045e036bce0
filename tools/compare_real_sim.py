#!/usr/bin/env python
"""Real SDSS cutouts vs the calibrated simulation: a figure and the numbers behind it.

    python tools/compare_real_sim.py --real ../shared/realdata/gzh_s82_clumps/jpegs \
        --out docs/figures/real_vs_sim.png

Central 200 px crops of the real images against ``--num-sim`` galaxies of
``SyntheticParams.sdss()``; prints (and writes next to the PNG as JSON) the 10/50/90th
percentiles of each calibrated statistic (clump_d2.sim.statistics.cutout_statistics).
"""
import argparse
import json
import sys
from pathlib import Path

import clump_d2  # noqa: F401
from clump_d2.studies.realism import real_crops, realism_figure, simulated_crops


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--real", required=True, help="folder of real JPEG/PNG cutouts")
    ap.add_argument("--out", default="docs/figures/real_vs_sim.png")
    ap.add_argument("--num-sim", type=int, default=48)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    real = real_crops(args.real)
    sim = simulated_crops(args.num_sim, args.seed)
    stats = realism_figure(real, sim, args.out)
    Path(args.out).with_suffix(".json").write_text(json.dumps(stats, indent=2))
    print(f"{'statistic':18s} {'real 10/50/90 %':>24s} {'sim 10/50/90 %':>24s}")
    for k in stats["real"]:
        if k == "n":
            continue
        r, s = stats["real"][k], stats["sim"][k]
        print(f"{k:18s} {' '.join(f'{v:7.3f}' for v in r):>24s} "
              f"{' '.join(f'{v:7.3f}' for v in s):>24s}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
