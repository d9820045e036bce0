#!/usr/bin/env python
"""The model zoo: list, rebuild, measure, package and check trained models addressed by name.

    python tools/model_zoo.py list
    python tools/model_zoo.py show sdss_lite0                 # the model card
    python tools/model_zoo.py rebuild sdss_lite0              # data + training, resumable
    python tools/model_zoo.py check sdss_lite0 --weights output/zoo/sdss_lite0/model_final.pth
    python tools/model_zoo.py package sdss_lite0 --weights output/zoo/sdss_lite0/model_final.pth

``check`` measures the weights on the card's held-out test and compares with the card, within
its tolerances (exit status 1 when a figure does not meet it). ``package`` measures the
weights in float32 and float16 and writes the entry (complete config, weights, card, and the
held-out measurement's selection function for the catalogue's p_detect) into the package.
The logic is in clump_d2.studies.model_zoo; reading entries in clump_d2.model_zoo.
"""
import argparse
import json
import logging
import sys
from pathlib import Path

import clump_d2  # noqa: F401  (fills detectron2 0.6's gaps before detectron2 is used)
from clump_d2 import model_zoo
from clump_d2.data.tables import markdown_table
from clump_d2.studies import model_zoo as zoo_study


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="verb", required=True)
    sub.add_parser("list", help="every model of the zoo, one line each")
    show = sub.add_parser("show", help="a model's card")
    show.add_argument("name")
    for verb, text in (("rebuild", "make the model again: data + training (resumable)"),
                       ("check", "measure weights on the card's held-out test, compare"),
                       ("package", "write the zoo entry from trained weights")):
        p = sub.add_parser(verb, help=text)
        p.add_argument("name")
        p.add_argument("--shared", default=zoo_study.DEFAULT_SHARED,
                       help="the real-data folder (default ../shared/realdata)")
        p.add_argument("--output-dir", default="",
                       help="default: output/zoo/<name> (rebuild), output/zoo/<name>/check "
                            "(check), output/zoo/<name>/package (package)")
        if verb == "rebuild":
            p.add_argument("opts", nargs=argparse.REMAINDER,
                           help="training config overrides KEY VALUE ... (e.g. SOLVER.MAX_ITER)")
        else:
            p.add_argument("--weights", default="",
                           help="trained checkpoint (check: default the shipped weights)")
        if verb == "package":
            p.add_argument("--training-log", default="",
                           help="the training's log.txt (its total training time goes into "
                                "the card; default: log.txt beside --weights)")
            p.add_argument("--load", default="",
                           help="what else ran on the machine during training, for the card")
            p.add_argument("--float32", action="store_true",
                           help="ship float32 without measuring float16")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.verb == "list":
        print(model_zoo.registry.describe())
        return 0
    if args.verb == "show":
        entry = model_zoo.get_entry(args.name)
        card_md = entry.folder / "MODEL_CARD.md"
        print(card_md.read_text() if card_md.is_file() else json.dumps(entry.card, indent=2))
        return 0
    out = Path(args.output_dir or f"output/zoo/{args.name}")
    if args.verb == "rebuild":
        final = zoo_study.rebuild(args.name, out, args.shared, list(args.opts or []))
        print(f"rebuilt {args.name}: {final}\ncheck it against its card with:\n"
              f"  python tools/model_zoo.py check {args.name} --weights {final}")
        return 0
    if args.verb == "check":
        entry = model_zoo.get_entry(args.name)
        weights = args.weights or model_zoo.ZOO_PREFIX + entry.name
        out = Path(args.output_dir) if args.output_dir else out / "check"
        measured = zoo_study.measure(args.name, weights, out / "heldout", args.shared,
                                     config=str(entry.config_file))
        rows = zoo_study.compare_to_card(entry.card["heldout"]["figures"], measured,
                                         entry.card["heldout"]["tolerances"])
        table = markdown_table(rows, ["figure", "card", "measured", "tolerance", "meets"])
        report = {"name": entry.name, "weights": weights, "rows": rows,
                  "meets_card": all(r["meets"] for r in rows), "measured": measured}
        out.mkdir(parents=True, exist_ok=True)
        (out / "check.json").write_text(json.dumps(report, indent=2))
        (out / "check.md").write_text(f"Written by `python tools/model_zoo.py check "
                                      f"{args.name} --weights {weights}` on "
                                      f"{measured.get('machine', '')}.\n\n{table}")
        print(table)
        print("meets its model card" if report["meets_card"] else
              "does NOT meet its model card")
        return 0 if report["meets_card"] else 1
    # package
    if not args.weights:
        raise SystemExit("package needs --weights (a trained checkpoint)")
    out = Path(args.output_dir) if args.output_dir else out / "package"
    figures = zoo_study.measure(args.name, args.weights, out / "fp32", args.shared)
    fp16 = None if args.float32 else zoo_study.fp16_figures_for(args.name, args.weights,
                                                                 out / "fp16", args.shared)
    log = Path(args.training_log) if args.training_log else Path(args.weights).parent / "log.txt"
    training = {"seconds": zoo_study.training_time_from_log(log),
                "machine": zoo_study.machine_description()}
    if args.load:
        training["load"] = args.load
    # The selection function of the float32 measurement, whose figures the card shows.
    table = zoo_study.heldout_selection_function(out / "fp32")
    if table is None:
        logging.getLogger("model_zoo").warning("%s holds no injections: the entry gets no "
                                               "selection function", out / "fp32")
    folder = zoo_study.package(args.name, args.weights, figures, fp16, training=training,
                               selection_function=table)
    print(f"wrote {folder}:\n" + (folder / "MODEL_CARD.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
