#!/usr/bin/env python
"""Real SDSS cutouts vs the calibrated simulation: a figure and the numbers behind it.

    python tools/compare_real_sim.py --real ../shared/realdata/gzh_s82_clumps/jpegs \
        --out docs/figures/real_vs_sim.png

    # single-epoch SDSS (Galaxy Zoo 2 cut-outs) against SyntheticParams.sdss_single_epoch()
    python tools/compare_real_sim.py --real '../shared/realdata/gz2_sdss_1400/jpegs/*/*.jpg' \
        --limit 200 --preset single_epoch --out docs/figures/real_vs_sim_single_epoch.png

Central 200 px crops of the real images (a folder or a glob pattern; ``--limit`` of them,
chosen at random with ``--seed``) against ``--num-sim`` galaxies of the ``--preset``
(``sdss``: ``SyntheticParams.sdss()``, ``single_epoch``: ``SyntheticParams.sdss_single_epoch()``);
prints (and writes next to the PNG as JSON, and as a Markdown table) the 10/50/90th
percentiles of each calibrated statistic (clump_d2.sim.statistics.cutout_statistics).
"""
import argparse
import json
import os
import platform
import shlex
import sys
from pathlib import Path

import clump_d2  # noqa: F401
from clump_d2.cli import positive_int
from clump_d2.data.tables import markdown_table
from clump_d2.studies.realism import (REALISM_PRESETS, real_crops, realism_figure,
                                      simulated_crops)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--real", required=True,
                    help="folder of real JPEG/PNG cutouts, or a glob pattern (quote it)")
    ap.add_argument("--limit", type=positive_int, default=None,
                    help="at most this many real images")
    ap.add_argument("--preset", choices=sorted(REALISM_PRESETS), default="sdss",
                    help="simulation preset compared")
    ap.add_argument("--out", default="docs/figures/real_vs_sim.png")
    ap.add_argument("--num-sim", type=positive_int, default=48)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    real = real_crops(args.real, limit=args.limit,
                      seed=args.seed if args.limit else None)
    sim = simulated_crops(args.num_sim, args.seed, REALISM_PRESETS[args.preset]())
    stats = realism_figure(real, sim, args.out, real_label=f"real ({args.real})",
                           sim_label=f"simulated ({args.preset})")
    Path(args.out).with_suffix(".json").write_text(json.dumps(stats, indent=2))
    command = "python tools/compare_real_sim.py " + shlex.join(
        sys.argv[1:] if argv is None else list(argv))
    rows = [{"statistic": k, "real": " / ".join(f"{v:.3f}" for v in stats["real"][k]),
             "sim": " / ".join(f"{v:.3f}" for v in stats["sim"][k])}
            for k in stats["real"] if k != "n"]
    Path(args.out).with_suffix(".md").write_text(
        f"Written by `{command}` on {os.cpu_count()}-core {platform.machine()} CPU, no GPU: "
        f"10/50/90th percentiles over {stats['real']['n']} real and {stats['sim']['n']} "
        f"simulated 200 px crops.\n\n"
        + markdown_table(rows, ["statistic", "real", "sim"],
                         ["statistic", "real 10 / 50 / 90 %", f"sim ({args.preset}) 10 / 50 / 90 %"]))
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
