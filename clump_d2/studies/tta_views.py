"""How many test-time augmentation views a model needs: each view count's operating point and
figures on the validation hosts, and the fewest views that keep the targets.

Input: the injection sweeps (``tools/inject_recover.py --sweep --baseline``) of one model run
with ``TEST.DIHEDRAL_TTA.VIEWS`` 8, 4, 2 (and 1 = TTA off) on the same validation hosts. Each
view count gets its operating point as ``scripts/sdss_eval.sh`` chooses the model's: the lowest
score at which its detections make no more false detections per galaxy than the classical
baseline at its own operating point (``within_baseline_false_rate`` of the sweep). The choice
is the fewest views whose recovered fractions there meet the targets (by default the SDSS
domain's: >= 0.95 at 3 % of the host, >= 0.98 at 10 %).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

from clump_d2.data.tables import markdown_table

#: Recovered fraction required at each injected flux fraction (issue 16's held-out targets).
DEFAULT_TARGETS: Dict[float, float] = {0.03: 0.95, 0.1: 0.98}


def read_sweep(path: str | os.PathLike) -> Tuple[Dict, Dict]:
    """(the network's sweep, the baseline's sweep) of an ``injection_sweep.json`` written with
    ``--baseline`` and a network."""
    sweeps = json.loads(Path(path).read_text())["sweeps"]
    base = next((v for k, v in sweeps.items() if k.startswith("classical baseline")), None)
    net = next((v for k, v in sweeps.items() if not k.startswith("classical baseline")), None)
    if base is None or net is None:
        raise ValueError(f"{path}: needs a network and the classical baseline (--baseline)")
    return net, base


def view_row(views: int, net: Mapping, targets: Mapping[float, float] = DEFAULT_TARGETS
             ) -> Dict:
    """One row: the view count's operating point (``within_baseline_false_rate``), its
    recovered fractions and false detections per galaxy there, and whether the targets hold
    (False when no threshold is as quiet as the baseline)."""
    pick = net.get("within_baseline_false_rate")
    row: Dict = {"views": int(views), "thresh": None, "false_per_galaxy": None,
                 "recovered": {}, "meets_targets": False}
    if not pick:
        return row
    row["thresh"] = float(pick["thresh"])
    row["false_per_galaxy"] = float(pick["false_per_galaxy"])
    row["recovered"] = {float(b["flux_frac"]): float(b["fraction"])
                        for b in pick["by_flux_frac"]}
    row["meets_targets"] = all(row["recovered"].get(f, -1.0) >= t for f, t in targets.items())
    return row


def choose_views(rows: List[Dict]) -> Optional[Dict]:
    """The row with the fewest views that meets the targets (None if none does)."""
    ok = [r for r in rows if r["meets_targets"]]
    return min(ok, key=lambda r: r["views"]) if ok else None


def views_table(runs: Mapping[int, str | os.PathLike],
                targets: Mapping[float, float] = DEFAULT_TARGETS) -> Dict:
    """Rows for each view count's sweep file (``runs``: views -> injection_sweep.json), the
    baseline's false detections per galaxy at its operating point, and the choice."""
    rows, base_false = [], None
    for views in sorted(runs, reverse=True):
        net, base = read_sweep(runs[views])
        ref = next(e for e in base["sweep"] if abs(e["thresh"] - base["operating"]) < 1e-9)
        base_false = float(ref["false_per_galaxy"])
        rows.append(view_row(views, net, targets))
    return {"rows": rows, "baseline_false_per_galaxy": base_false,
            "targets": {str(k): v for k, v in targets.items()}, "choice": choose_views(rows)}


def views_markdown(result: Dict, command: str = "", machine: str = "") -> str:
    """The table of :func:`views_table` as Markdown, with the command and the machine."""
    fracs = sorted({f for r in result["rows"] for f in r["recovered"]})
    header = ["views", "operating point", *[f"recovered at {f:g}" for f in fracs],
              "false det. / galaxy", "meets the targets"]
    table = [{"views": str(r["views"]),
              "operating point": "none" if r["thresh"] is None else f"{r['thresh']:.2f}",
              **{f"recovered at {f:g}": (f"{r['recovered'][f]:.3f}" if f in r["recovered"]
                                          else "") for f in fracs},
              "false det. / galaxy": ("" if r["false_per_galaxy"] is None
                                      else f"{r['false_per_galaxy']:.3f}"),
              "meets the targets": "yes" if r["meets_targets"] else "no"}
             for r in result["rows"]]
    choice = result["choice"]
    lines = [f"Written by `{command}`" + (f" on {machine}." if machine else "."), ""] \
        if command else []
    lines.append(markdown_table(table, header).rstrip("\n"))
    targets = ", ".join(f">= {v:g} at {k}" for k, v in result["targets"].items())
    lines += ["", f"Operating point: the lowest score no noisier than the classical baseline at "
              f"its own point ({result['baseline_false_per_galaxy']:.3f} false detections per "
              f"galaxy). Targets: recovered {targets}. Choice: "
              + (f"**{choice['views']} views at score {choice['thresh']:.2f}**." if choice
                 else "none meets the targets.")]
    return "\n".join(lines) + "\n"
