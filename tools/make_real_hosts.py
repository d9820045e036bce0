#!/usr/bin/env python
"""Simulated clumps injected into real host galaxies -> a registered clump dataset.

    # gz2_sdss_1400 hosts; test hosts = a pretraining run's held-out galaxies
    python tools/make_real_hosts.py --hosts ../shared/realdata/gz2_sdss_1400/jpegs \
        --out datasets/gz2hosts --split-json output/pretrain/lite0_gz2_64/split.json --val 100
    # or split by fractions of the hosts
    python tools/make_real_hosts.py --hosts DIR --out datasets/myhosts --fractions train=0.7 val=0.1 test=0.2

Registers as ``<out folder name>_<split>``. Logic: :mod:`clump_d2.sim.real_hosts`.
"""
import argparse
import json
import logging

import numpy as np

import clump_d2  # noqa: F401  (compat first)
from clump_d2.sim.real_hosts import RealHostParams, make_real_host_dataset


def _fractions(items):
    out = {}
    for item in items:
        name, _, value = item.partition("=")
        out[name] = float(value)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", required=True, help="folder of host JPEG/PNG images")
    parser.add_argument("--out", required=True, help="dataset folder, e.g. datasets/gz2hosts")
    parser.add_argument("--fractions", nargs="+", default=["train=0.7", "val=0.1", "test=0.2"],
                        help="split fractions by host (ignored with --split-json)")
    parser.add_argument("--split-json", default="",
                        help="a pretraining run's split.json: its 'heldout' galaxies are the test "
                             "hosts, its 'train' galaxies the train (and val) hosts")
    parser.add_argument("--val", type=int, default=100,
                        help="with --split-json: this many of its train galaxies form val")
    parser.add_argument("--versions", type=int, default=RealHostParams.versions_per_host,
                        help="injected versions per host")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="first N hosts only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    params = RealHostParams(versions_per_host=args.versions, seed=args.seed)
    lists = None
    if args.split_json:
        split = json.loads(open(args.split_json).read())
        train = sorted(split["train"])
        np.random.default_rng(args.seed).shuffle(train)
        lists = {"train": sorted(train[args.val:]), "val": sorted(train[:args.val]),
                 "test": sorted(split["heldout"])}
    written = make_real_host_dataset(args.hosts, args.out, _fractions(args.fractions), params,
                                     limit=args.limit, host_lists=lists)
    for split, path in written.items():
        print(f"{split}: {path}")
    return written


if __name__ == "__main__":
    main()
