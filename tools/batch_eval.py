#!/usr/bin/env python
"""Evaluate many (config, checkpoint) pairs on many datasets: one table and one plot.

    python tools/batch_eval.py --pairs pairs.yaml --dataset clumpsim_val --output-dir out/batch
    python tools/batch_eval.py \\
        --pair final configs/quickstart.yaml output/quickstart/model_final.pth \\
        --pair early configs/quickstart.yaml output/quickstart/model_0000299.pth \\
        --output-dir out/batch TEST.CLUMP_EVAL.MATCH distance

Re-running the same command skips finished (pair, dataset) units and retries failed ones.
Trailing KEY VALUE pairs override every pair's config. Logic: clump_d2.engine.batch.
"""
import argparse
import logging
import sys

import clump_d2  # noqa: F401  (fills detectron2 0.6's gaps before detectron2 is used)
import clump_d2.data  # noqa: F401  (registers the clump datasets)
from detectron2.utils.logger import setup_logger

from clump_d2.engine.batch import EvalPair, load_pairs, run_batch


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", help="YAML or CSV file of pairs (name, config, weights, opts)")
    parser.add_argument("--pair", nargs=3, action="append", default=[],
                        metavar=("NAME", "CONFIG", "WEIGHTS"), help="one pair (repeatable)")
    parser.add_argument("--dataset", action="append", default=[],
                        help="registered dataset name (repeatable; default: each config's "
                             "DATASETS.TEST)")
    parser.add_argument("--output-dir", required=True, help="where the table and plots go")
    parser.add_argument("--summary", action="store_true",
                        help="add min / median / max rows over the pairs of each dataset (e.g. "
                             "a study of training seeds)")
    parser.add_argument("--no-retry-failed", action="store_true",
                        help="keep recorded failures instead of evaluating them again")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[],
                        help="KEY VALUE config overrides applied to every pair")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    setup_logger(name="clump_d2")
    setup_logger(name="detectron2")
    pairs = load_pairs(args.pairs) if args.pairs else []
    pairs += [EvalPair(name, config, weights) for name, config, weights in args.pair]
    if not pairs:
        sys.exit("no pairs given: use --pairs FILE and/or --pair NAME CONFIG WEIGHTS")
    records = run_batch(pairs, args.dataset, args.output_dir, extra_opts=args.opts,
                        retry_failed=not args.no_retry_failed, summary=args.summary)
    failed = [r for r in records if r["status"] != "ok"]
    for r in failed:
        logging.getLogger("clump_d2").error("%s on %s failed: %s", r["name"], r["dataset"],
                                            r["error"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
