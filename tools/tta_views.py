#!/usr/bin/env python
"""Choose the number of test-time augmentation views from injection sweeps on validation hosts.

    python tools/tta_views.py --run 8=out/views_8/injection_sweep.json \
        --run 4=out/views_4/injection_sweep.json --run 2=... --output-dir out/views

Each sweep (tools/inject_recover.py --sweep --baseline, one model with TEST.DIHEDRAL_TTA.VIEWS
set) gives that view count's operating point (the lowest score no noisier than the baseline at
its own) and its figures there; the fewest views meeting the targets is the choice. Writes
views.md and views.json; the last line printed is "choice: VIEWS THRESH" (or "choice: none").
scripts/sdss_tta_views.sh runs the sweeps and this. Logic: clump_d2.studies.tta_views.
"""
import argparse
import json
import os
import platform
import shlex
import sys
from pathlib import Path

from clump_d2.studies.tta_views import DEFAULT_TARGETS, views_markdown, views_table


def parse_run(text: str):
    views, sep, path = text.partition("=")
    if not sep or not views.isdigit():
        raise argparse.ArgumentTypeError(f"--run {text!r}: expected VIEWS=injection_sweep.json")
    return int(views), path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=parse_run, action="append", required=True,
                        help="VIEWS=path of that view count's injection_sweep.json")
    parser.add_argument("--output-dir", required=True)
    args = parser.parse_args(argv)
    result = views_table(dict(args.run), DEFAULT_TARGETS)
    command = "python tools/tta_views.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = views_markdown(result, command, f"{os.cpu_count()}-core {platform.machine()} CPU")
    (out / "views.md").write_text(text)
    (out / "views.json").write_text(json.dumps({"command": command, **result}, indent=2))
    print(text)
    choice = result["choice"]
    print(f"choice: {choice['views']} {choice['thresh']:g}" if choice else "choice: none")
    return 0


if __name__ == "__main__":
    sys.exit(main())
