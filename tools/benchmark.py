#!/usr/bin/env python
"""Benchmark a clump_d2 config (and, with --vs-paper-pipeline, the paper's pipeline).

    python tools/benchmark.py --config-file configs/quickstart.yaml --vs-paper-pipeline
    python tools/benchmark.py --config-file configs/quickstart.yaml --quick
    python tools/benchmark.py --config-file configs/quickstart.yaml \
        --catalogue-scaling 100 1000 10000 MODEL.WEIGHTS output/quickstart/model_final.pth
    python tools/benchmark.py --config-file configs/quickstart.yaml --skip-speed \
        --catalogue-scaling 50 200 --table docs/benchmark/catalogue_photometry.md

    python tools/benchmark.py --model sdss_lite0 --user-path examples/sdss \
        --table docs/benchmark/sdss_lite0_user_path.md

--user-path times the catalogue as a user runs it (the config's test-time augmentation,
centre crop, post-processing; photometry off and on) against the paper's pipeline on the same
real cut-outs, alternately, in one process.

The catalogue scaling runs tools/predict_catalog.py with photometry off and on in the same
run (--catalogue-photometry on|off for one of them) and reports the on/off throughput ratio.

Writes benchmark.json and benchmark.md to --output (default output/benchmark) and prints the
table. Figures are measurements, not targets; no test asserts a speed.
"""
import argparse
import json
import sys
from pathlib import Path

import clump_d2  # noqa: F401  (compat layer before detectron2)
import clump_d2.modeling  # noqa: F401  (registers the Zoobot backbones)
from clump_d2.cli import positive_int
from clump_d2.studies.benchmark import (PHOTOMETRY_MODES, BenchmarkOptions, catalogue_scaling,
                                       run_benchmark, user_path_benchmark, user_path_table,
                                       write_results, write_scaling_table)
from clump_d2.data.image_io import is_image_file
from clump_d2.engine import add_model_argument, apply_model_argument, build_config
from detectron2.utils.logger import setup_logger


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config-file", default="")
    add_model_argument(p)
    p.add_argument("--user-path", default="", metavar="DIR",
                   help="time the catalogue on the image files of DIR as a user runs it, "
                        "photometry off and on, against the paper's pipeline (alternately)")
    p.add_argument("--vs-paper-pipeline", action="store_true",
                   help="also run torchvision fasterrcnn_resnet50_fpn at 800 px, alternately")
    p.add_argument("--quick", action="store_true",
                   help="tiny counts (a smoke run; figures are not meaningful)")
    p.add_argument("--num-images", type=positive_int, default=32)
    p.add_argument("--batch-size", type=positive_int, default=8)
    p.add_argument("--runs", type=positive_int, default=5)
    p.add_argument("--train-iters", type=positive_int, default=6)
    p.add_argument("--train-batch", type=positive_int, default=4)
    p.add_argument("--paper-min-size", type=positive_int, default=800)
    p.add_argument("--gemm-size", type=positive_int, default=2048)
    p.add_argument("--catalogue-scaling", type=positive_int, nargs="+", default=[], metavar="N",
                   help="also time tools/predict_catalog.py on catalogues of N galaxies each")
    p.add_argument("--pool-size", type=positive_int, default=200,
                   help="distinct synthetic images the scaling catalogues cycle through")
    p.add_argument("--catalogue-photometry", choices=("both", *PHOTOMETRY_MODES),
                   default="both", help="catalogue scaling with photometry off and on "
                   "(both, the default, in the same run) or one of them")
    p.add_argument("--table", default="",
                   help="also write the catalogue-scaling table (Markdown, with the command "
                        "and machine) and its JSON to this path, e.g. docs/benchmark/x.md")
    p.add_argument("--skip-speed", action="store_true",
                   help="only the catalogue scaling (no model speed/FLOPs measurement)")
    p.add_argument("--output", default="output/benchmark")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    args = p.parse_args(argv)
    apply_model_argument(args)
    if not args.config_file:
        p.error("give --config-file or --model")
    return args


def main(argv=None):
    args = parse_args(argv)
    setup_logger(name="clump_d2", abbrev_name="clump_d2")
    cfg = build_config(args.config_file, args.opts)
    command = "python tools/benchmark.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.user_path:
        files = sorted(str(f) for f in Path(args.user_path).iterdir() if is_image_file(f))
        if not files:
            raise SystemExit(f"--user-path {args.user_path}: no image files there")
        result = user_path_benchmark(cfg, files, f"{args.output}/user_path",
                                     runs=args.runs, batch_size=args.batch_size,
                                     paper_min_size=args.paper_min_size)
        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        table = user_path_table(result, command)
        (out / "user_path.json").write_text(json.dumps({"command": command, **result},
                                                       indent=2))
        (out / "user_path.md").write_text(table)
        if args.table:
            Path(args.table).parent.mkdir(parents=True, exist_ok=True)
            Path(args.table).write_text(table)
            Path(args.table).with_suffix(".json").write_text(
                json.dumps({"command": command, **result}, indent=2))
        print(table)
        return result
    options = BenchmarkOptions(
        num_images=args.num_images, batch_size=args.batch_size, runs=args.runs,
        train_iters=args.train_iters, train_batch=args.train_batch,
        paper_min_size=args.paper_min_size, gemm_size=args.gemm_size)
    if args.quick:
        options = BenchmarkOptions(num_images=2, batch_size=2, runs=1, train_iters=1,
                                   train_batch=1, paper_min_size=min(args.paper_min_size, 256),
                                   gemm_size=256)
    result = {"config": {}} if args.skip_speed else run_benchmark(
        cfg, options, vs_paper=args.vs_paper_pipeline)
    result["config"]["file"] = args.config_file
    if args.catalogue_scaling:
        result["catalogue_scaling"] = catalogue_scaling(
            args.config_file, args.catalogue_scaling, f"{args.output}/scaling",
            predict_tool=Path(__file__).resolve().with_name("predict_catalog.py"),
            opts=args.opts, pool_size=args.pool_size,
            image_size=cfg.DATASETS.SYNTHETIC.IMAGE_SIZE,
            photometry=(PHOTOMETRY_MODES if args.catalogue_photometry == "both"
                        else (args.catalogue_photometry,)))
        if args.table:
            write_scaling_table(result, args.table, command)
    paths = write_results(result, args.output)
    print(paths["markdown"].read_text())
    print(f"written: {paths['json']} {paths['markdown']}")
    return result


if __name__ == "__main__":
    main()
