#!/usr/bin/env python
"""The paper's transfer-learning comparison: backbones x training-set sizes, one schedule.

    python tools/transfer_study.py --output-dir output/transfer \
        --backbones random imagenet galaxy imagenet_galaxy --sizes 100 300 880 \
        --max-iter 300 --threads 1 --copy-table docs/transfer_table.md \
        --copy-figure docs/figures/transfer.png [KEY VALUE ...]

Resumable: a run whose ``model_final.pth`` exists is not retrained, its cached predictions are
re-used, and the table is rewritten after every run. The logic lives in
:mod:`clump_d2.studies.transfer` (see its docstring for the rules).
"""
import argparse
import os
import platform
import sys

import clump_d2  # noqa: F401  (compat first)
import clump_d2.data  # noqa: F401  (registers the datasets)
import clump_d2.modeling  # noqa: F401  (registers the backbones and heads)
import torch
from detectron2.utils.logger import setup_logger

from clump_d2.cli import positive_int
from clump_d2.studies.transfer import BACKBONES, BASE_CONFIG, TransferSpec, run_study


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output-dir", default="output/transfer")
    p.add_argument("--config-file", default=BASE_CONFIG)
    p.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=list(BACKBONES))
    p.add_argument("--sizes", nargs="+", type=positive_int, default=[100, 300, 880],
                   help="numbers of training host galaxies (nested subsets)")
    p.add_argument("--seed", type=int, default=0, help="seed of the host subsets")
    p.add_argument("--max-iter", type=positive_int, default=None,
                   help="SOLVER.MAX_ITER of every run (LR steps at 2/3 and 7/8 of it)")
    p.add_argument("--train-dataset", default="gz2hosts_train")
    p.add_argument("--val-dataset", default="gz2hosts_val")
    p.add_argument("--test", action="append", default=[], metavar="LABEL=DATASET",
                   help="a test column (repeatable; default hosts=gz2hosts_test, "
                        "gzh_s82=gzh_s82c_all at full depth, gzh_s82_giant=gzh_s82c_all at "
                        "the paper's giant definition, sim=clumpsim_val)")
    p.add_argument("--test-limit", action="append", default=[], metavar="LABEL=N",
                   help="evaluate only N images of a test, evenly spaced in image-id order "
                        "(repeatable)")
    p.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads")
    p.add_argument("--copy-table", default="",
                   help="also copy transfer.md here after every run")
    p.add_argument("--copy-figure", default="",
                   help="also copy transfer.png here after every run")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    return p.parse_args(argv)


def _pairs(items, kind):
    out = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"--{kind} expects LABEL=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        out[k] = v
    return out


def machine() -> str:
    """The machine, in words, for the table's caption."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{os.cpu_count()}-core {platform.machine()} CPU, {gpu}"


def spec_from_args(args, argv=None) -> TransferSpec:
    """The study's :class:`TransferSpec` from the parsed arguments (schedule from
    ``--max-iter``: LR steps at 2/3 and 7/8 of it, warm-up 1/10 up to 50, a checkpoint every
    third of it up to 100 iterations, so an interruption loses little)."""
    opts = list(args.opts)
    caption = ""
    if argv is not None:
        caption = (f"Written by `python tools/transfer_study.py {' '.join(argv)}` on "
                   f"{machine()}.")
    if args.max_iter:
        m = args.max_iter
        steps = sorted({s for s in (2 * m // 3, 7 * m // 8) if 0 < s < m})
        opts += ["SOLVER.MAX_ITER", str(m),
                 "SOLVER.STEPS", "(" + "".join(f"{s}," for s in steps) + ")",
                 "SOLVER.WARMUP_ITERS", str(min(50, max(1, m // 10))),
                 "SOLVER.CHECKPOINT_PERIOD", str(max(1, min(100, m // 3)))]
    spec = TransferSpec(output_dir=args.output_dir, backbones=args.backbones, sizes=args.sizes,
                        train_dataset=args.train_dataset, val_dataset=args.val_dataset,
                        config_file=args.config_file, opts=opts, seed=args.seed,
                        test_limits={k: int(v) for k, v in
                                     _pairs(args.test_limit, "test-limit").items()},
                        copy_table=args.copy_table, copy_figure=args.copy_figure,
                        caption=caption)
    if args.test:
        spec.tests = _pairs(args.test, "test")
    return spec


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    setup_logger(name="clump_d2")
    setup_logger(name="detectron2")
    torch.set_num_threads(max(1, args.threads))
    return run_study(spec_from_args(args, argv))


if __name__ == "__main__":
    main(sys.argv[1:])
