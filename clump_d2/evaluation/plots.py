"""PNG plots of completeness and purity (matplotlib, Agg canvas: no display needed).

Figures are built on ``matplotlib.figure.Figure`` with an Agg canvas, so plotting neither
needs nor changes the global pyplot backend.
"""
from __future__ import annotations

import logging
import os
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter, FuncFormatter

logger = logging.getLogger(__name__)

#: Axis labels (with units) of the annotation attributes clump_d2's readers write.
ATTRIBUTE_LABELS = {
    "flux_frac": "clump flux / host galaxy flux (r band)",
    "flux_r": "clump r-band flux [sky noise sigma units]",
    "box_size": "true box side [px]",
    "distance_px": "distance from galaxy centre [px]",
    "psf_fwhm_px": "PSF FWHM [px]",
    "mag_r": "clump r magnitude [mag]",
    "agreement": "volunteer agreement [fraction of volunteers]",
}
#: Attributes whose bins are best shown on a logarithmic axis.
LOG_ATTRIBUTES = {"flux_frac", "flux_r"}
_SCOPE_STYLE = {"all": dict(color="black", lw=2.0)}
_CLASS_COLOURS = ["tab:blue", "tab:red", "tab:green", "tab:purple"]


def attribute_label(name: str) -> str:
    """Axis label with units for an annotation attribute (its name if unknown)."""
    return ATTRIBUTE_LABELS.get(name, f"{name} [units of the annotation file]")


def _minor_log_label(value, _pos) -> str:
    """Label minor log ticks at 2, 3 and 5 x 10^k only (all nine crowd the axis)."""
    if value <= 0:
        return ""
    mantissa = value / 10 ** np.floor(np.log10(value))
    return f"{value:g}" if round(mantissa) in (2, 3, 5) else ""


def _new_figure(width=6.4, height=4.8):
    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(1, 1, 1)


def _save(fig, path: str) -> str:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    logger.info("wrote %s", path)
    return path


def _scope_style(scope: str, index: int) -> Dict:
    return _SCOPE_STYLE.get(scope, dict(color=_CLASS_COLOURS[index % len(_CLASS_COLOURS)],
                                         lw=1.2, alpha=0.8))


def plot_vs_threshold(path: str, thresholds: Sequence[float], curves: Mapping[str, Dict],
                      score_thresh: float, equal: Optional[tuple] = None,
                      title: str = "") -> str:
    """Completeness (solid) and purity (dashed) vs score threshold, one colour per scope.

    Args:
        curves: scope name ("all", "clump", ...) -> {"completeness": array, "purity": array,
            "F1": array}; "all" is also drawn with its F1 (dotted).
        equal: (threshold, value) where class-agnostic completeness = purity, marked.
    """
    fig, ax = _new_figure()
    for i, (scope, c) in enumerate(curves.items()):
        style = _scope_style(scope, i - 1)
        ax.plot(thresholds, c["completeness"], ls="-", label=f"completeness ({scope})", **style)
        ax.plot(thresholds, c["purity"], ls="--", label=f"purity ({scope})", **style)
        if scope == "all":
            ax.plot(thresholds, c["F1"], ls=":", label="F1 (all)", **style)
    ax.axvline(score_thresh, color="grey", lw=1, ls="-.",
               label=f"operating threshold {score_thresh:g}")
    if equal is not None and np.isfinite(equal[0]):
        ax.plot([equal[0]], [equal[1]], "o", color="tab:orange", ms=7,
                label=f"completeness = purity = {equal[1]:.2f} at {equal[0]:.2f}")
    ax.set(xlabel="detection score threshold (keep score >= threshold)",
           ylabel="fraction (0-1)", xlim=(0, 1), ylim=(0, 1.02), title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best", framealpha=0.85)
    return _save(fig, path)


def plot_purity_vs_completeness(path: str, curves: Mapping[str, Dict],
                                operating: Mapping[str, tuple], score_thresh: float,
                                title: str = "") -> str:
    """Purity vs completeness as the score threshold sweeps, one curve per scope, with the
    operating point marked and the completeness = purity diagonal."""
    fig, ax = _new_figure(5.6, 5.2)
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":", label="completeness = purity")
    for i, (scope, c) in enumerate(curves.items()):
        style = _scope_style(scope, i - 1)
        ax.plot(c["completeness"], c["purity"], label=scope, **style)
        if scope in operating and all(np.isfinite(operating[scope])):
            ax.plot(*operating[scope], "o", color=style["color"], ms=6)
    ax.plot([], [], "o", color="grey", label=f"score >= {score_thresh:g}")
    ax.set(xlabel="completeness (matched true clumps / true clumps)",
           ylabel="purity (matched detections / detections)", xlim=(0, 1.02), ylim=(0, 1.02),
           title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best", framealpha=0.85)
    return _save(fig, path)


def plot_binned_completeness(path: str, attribute: str, bins: List[Dict], score_thresh: float,
                             title: str = "") -> str:
    """Completeness per bin of a true-clump attribute, with Wilson 68 % intervals and the
    number of true clumps per bin written above each point."""
    fig, ax = _new_figure()
    bins = [b for b in bins if b["n_true"] > 0]
    lo = np.array([b["lo"] for b in bins])
    hi = np.array([b["hi"] for b in bins])
    log = attribute in LOG_ATTRIBUTES and len(lo) and np.all(lo > 0)
    centre = np.sqrt(lo * hi) if log else (lo + hi) / 2
    comp = np.array([b["completeness"] for b in bins])
    yerr = np.array([[c - b["ci_lo"] for c, b in zip(comp, bins)],
                     [b["ci_hi"] - c for c, b in zip(comp, bins)]]).reshape(2, -1)
    xerr = np.array([centre - lo, hi - centre]).reshape(2, -1)
    ax.errorbar(centre, comp, xerr=xerr, yerr=yerr, fmt="o", color="tab:blue", capsize=3,
                label=f"completeness at score >= {score_thresh:g} (68 % interval)")
    for x, c, b in zip(centre, comp, bins):
        top = b["ci_hi"] if np.isfinite(b["ci_hi"]) else c
        ax.annotate(f"n={b['n_true']}", (x, top), textcoords="offset points",
                    xytext=(0, 4), ha="center", va="bottom", fontsize=7)
    if log:
        ax.set_xscale("log")
        # plain numbers (0.03, 0.1, ...) read better than 3 x 10^-2 for flux fractions
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(FuncFormatter(_minor_log_label))
        ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set(xlabel=attribute_label(attribute), ylabel="completeness (matched / true)",
           ylim=(0, 1.12), title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best", framealpha=0.85)
    return _save(fig, path)


def plot_comparison(path: str, rows: List[Dict], title: str = "") -> str:
    """Batch comparison: purity vs completeness curves, one panel per dataset, one curve
    per (config, checkpoint) pair, its operating point marked.

    Args:
        rows: dicts with "name", "dataset", "completeness", "purity" (operating point) and
            optionally "curve" = {"completeness": [...], "purity": [...]}.
    """
    datasets = sorted({r["dataset"] for r in rows})
    # one colour per pair, the same in every panel
    names = list(dict.fromkeys(r["name"] for r in rows))
    n = max(1, len(datasets))
    fig = Figure(figsize=(5.0 * n, 4.8), dpi=110)
    FigureCanvasAgg(fig)
    for j, dataset in enumerate(datasets):
        ax = fig.add_subplot(1, n, j + 1)
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
        for r in (r for r in rows if r["dataset"] == dataset):
            colour = f"C{names.index(r['name']) % 10}"
            curve = r.get("curve")
            if curve:
                ax.plot(curve["completeness"], curve["purity"], color=colour, lw=1.2)
            c, p = r.get("completeness"), r.get("purity")
            if c is not None and p is not None and np.isfinite(c) and np.isfinite(p):
                ax.plot([c], [p], "o", color=colour, label=r["name"])
            else:
                ax.plot([], [], "o", color=colour, label=f"{r['name']} (purity undefined)")
        ax.set(xlabel="completeness", ylabel="purity", xlim=(0, 1.02), ylim=(0, 1.02),
               title=f"{title} {dataset}".strip())
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left", title="pair (dot: operating point)",
                  title_fontsize=7)
    return _save(fig, path)
