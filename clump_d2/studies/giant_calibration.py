"""Calibrate the display (PNG/JPEG) giant flags to the u band on real catalogued clumps.

The GZH Stripe 82 galaxies (``gzh_s82_clumps``: SDSS coadd colour JPEGs and Mehta et al.
2021's clumps with per-band clump and host fluxes) are prepared as
:func:`clump_d2.convert.gzh_s82.prepare_gzh_s82` writes them (the central 200 px crop, as the
recommended model's catalogue searches it, ``INFERENCE.CENTRE_CROP 200``; the train / test
split by galaxy). Each catalogue clump of the crops is measured at its catalogue position
as the catalogue measures a detection: the crop read by
:func:`clump_d2.inference.predict.load_image_for_photometry`, the host segmented with the
galaxy's PSF FWHM and centre, all clumps of a galaxy measured together by
:func:`clump_d2.photometry.measure.measure_image` with the catalogue's ``PHOTOMETRY`` options.
The display B (and R) clump/host ratios are then related to the catalogue's u-band fraction
``flux_frac_u`` (:mod:`clump_d2.photometry.calibration`), the fit is cross-validated by
galaxy (leave one galaxy out, and the project's two folds), and the flags it gives are scored
against the paper's definition (u-band fraction >= 3 % / 8 %).
"""
from __future__ import annotations

import json
import logging
import os
import platform
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

from clump_d2.convert.gzh_s82 import gzh_paths, prepare_gzh_s82
from clump_d2.inference.predict import galaxy_centre, load_image_for_photometry
from clump_d2.photometry.calibration import (
    DisplayGiantCalibration,
    cross_validated_estimates,
    fit_display_calibration,
    flag_counts,
    scatter_dex,
)
from clump_d2.photometry.measure import PhotometryOptions, measure_image

logger = logging.getLogger(__name__)

#: The paper's giant clumps lie off the bulge: at least this many PSF FWHM from the centre.
CENTRE_FWHM = 1.0
THRESHOLDS_PCT = (3.0, 8.0)


def measure_catalogue_clumps(gzh_dir: str | os.PathLike,
                             options: Optional[PhotometryOptions] = None,
                             galaxies: Optional[int] = None) -> pd.DataFrame:
    """One row per catalogue clump inside the crops: galaxy, fold (``train``/``test``),
    distance from the centre in PSF FWHM, the catalogue's ``flux_frac_<band>`` and the
    display photometry (``flux_ratio_R/G/B``, ``status``...) at the clump's position.

    Args:
        gzh_dir: the ``gzh_s82_clumps`` folder.
        options: photometry options (default: the catalogue's defaults).
        galaxies: only the first N galaxies by id (tests).
    """
    options = options or PhotometryOptions()
    images_dir = gzh_paths(gzh_dir)["images"]
    with tempfile.TemporaryDirectory() as tmp:
        written = prepare_gzh_s82(gzh_dir, Path(tmp) / "gzh_s82c", galaxies=galaxies)
        coco = json.loads(Path(written["all"]).read_text())
        fold = {}
        for split in ("train", "test"):
            for im in json.loads(Path(written[split]).read_text())["images"]:
                fold[im["id"]] = split
    by_image: Dict[int, List[Dict]] = {}
    for ann in coco["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    rows = []
    for im in sorted(coco["images"], key=lambda r: r["id"]):
        anns = by_image.get(im["id"], [])
        if not anns:
            continue
        record = dict(im, file_name=str(images_dir / Path(im["file_name"]).name))
        image = load_image_for_photometry(record, options)
        xy = np.array([[a["x"], a["y"]] for a in anns], dtype=np.float64)
        centre = galaxy_centre(record)
        phot = measure_image(image, xy, record["psf_fwhm_px"], centre, options)
        for a, (_, p) in zip(anns, phot.iterrows()):
            dist = float(np.hypot(a["x"] - centre[0], a["y"] - centre[1]))
            rows.append({"galaxy_id": str(im["galaxy_id"]), "fold": fold.get(im["id"], ""),
                         "clump_id": a.get("clump_id"), "x": a["x"], "y": a["y"],
                         "psf_fwhm_px": record["psf_fwhm_px"],
                         "distance_fwhm": dist / record["psf_fwhm_px"],
                         **{k: a[k] for k in a if k.startswith("flux_frac_")},
                         **p.to_dict()})
    return pd.DataFrame(rows)


def best_cut(score: np.ndarray, true_fraction: np.ndarray, pct: float,
             mask: np.ndarray) -> Dict[str, float]:
    """The ranking's limit: over every cut on ``score`` (in-sample), the one with the largest
    min(purity, completeness) against ``true_fraction >= pct %`` among ``mask``."""
    s = np.nan_to_num(np.asarray(score, dtype=np.float64)[mask], nan=-np.inf)
    t = np.asarray(true_fraction, dtype=np.float64)[mask] >= pct / 100.0
    order = np.argsort(-s, kind="stable")
    hits = np.cumsum(t[order])
    k = np.arange(1, len(s) + 1)
    purity, completeness = hits / k, hits / max(int(t.sum()), 1)
    best = int(np.argmax(np.minimum(purity, completeness)))
    return {"purity": float(purity[best]), "completeness": float(completeness[best]),
            "n_flagged": int(k[best]), "n_true": int(t.sum())}


def calibrate(df: pd.DataFrame, colour: bool = False, clip_sigma: float = 0.0,
              thresholds_pct: Sequence[float] = THRESHOLDS_PCT,
              centre_fwhm: float = CENTRE_FWHM) -> Dict:
    """Fit, cross-validate and score the calibration on measured clumps
    (:func:`measure_catalogue_clumps` rows).

    The fit uses the off-centre clumps (>= ``centre_fwhm`` PSF FWHM from the centre; near the
    bulge the display flux is mostly the bulge fit's residual); the flags are scored on the
    off-centre clumps (the paper's giants) and on all clumps. ``colour`` and ``clip_sigma``
    go to :func:`~clump_d2.photometry.calibration.fit_display_calibration`.

    Returns:
        ``calibration`` (fitted on every galaxy), ``scatter`` (in-sample / leave-one-galaxy-
        out / two folds, dex), ``rows`` (one per model, estimate, population and threshold:
        counts, purity, completeness), ``limits`` (the best in-sample cut of the display B
        ratio and of the catalogue's own g-band fraction) and the clump counts.
    """
    u = df["flux_frac_u"].to_numpy(np.float64)
    b = df["flux_ratio_B"].to_numpy(np.float64)
    r = df["flux_ratio_R"].to_numpy(np.float64) if colour else None
    off = df["distance_fwhm"].to_numpy(np.float64) >= centre_fwhm
    everyone = np.ones(len(df), dtype=bool)
    cal = fit_display_calibration(u[off], b[off], None if r is None else r[off], colour,
                                  clip_sigma=clip_sigma)
    estimates = {"in-sample (all galaxies)": cal.predict(b, r),
                 "leave one galaxy out": cross_validated_estimates(
                     u, b, df["galaxy_id"], r, colour, fit_mask=off, clip_sigma=clip_sigma)}
    if df["fold"].nunique() > 1:
        estimates["two folds (train <-> test)"] = cross_validated_estimates(
            u, b, df["fold"], r, colour, fit_mask=off, clip_sigma=clip_sigma)
    rows = []
    for name, est in estimates.items():
        for pop, mask in (("off-centre", off), ("all", everyone)):
            for pct in thresholds_pct:
                rows.append({"flag": "calibrated u", "estimate": name, "clumps": pop,
                             "pct": pct, **flag_counts(u, est >= pct / 100.0, pct, mask)})
    for pop, mask in (("off-centre", off), ("all", everyone)):  # the flag before this work
        for pct in thresholds_pct:
            rows.append({"flag": "raw display B", "estimate": "none", "clumps": pop, "pct": pct,
                         **flag_counts(u, np.nan_to_num(b, nan=-1.0) >= pct / 100.0, pct,
                                       mask)})
    scatter = {name: scatter_dex(est[off], u[off]) for name, est in estimates.items()}
    limits = {"display B ratio": best_cut(b, u, thresholds_pct[0], off)}
    if "flux_frac_g" in df:
        limits["catalogue g-band fraction"] = best_cut(df["flux_frac_g"].to_numpy(np.float64),
                                                       u, thresholds_pct[0], off)
    return {"calibration": cal, "colour": colour, "clip_sigma": clip_sigma,
            "scatter": scatter, "rows": rows,
            "limits": limits, "n_clumps": len(df), "n_off_centre": int(off.sum()),
            "n_galaxies": int(df["galaxy_id"].nunique()),
            "n_positive_b": int((np.nan_to_num(b) > 0).sum())}


def _fmt(v, digits: int = 2) -> str:
    return "—" if v is None or (isinstance(v, float) and not np.isfinite(v)) else (
        f"{v:.{digits}f}" if isinstance(v, float) else str(v))


def machine_description() -> str:
    """The machine, in words, for the written table."""
    try:
        import torch

        gpu = (torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")
    except ImportError:  # the photometry does not need torch
        gpu = "GPU unknown"
    return (f"{os.cpu_count()}-core {platform.machine()} CPU ({platform.system()}), {gpu}, "
            f"Python {platform.python_version()}")


def model_name(result: Dict) -> str:
    """``B only`` / ``B + colour``, and the clipping when there is one."""
    name = "B + colour" if result["colour"] else "B only"
    return name + (f", clipped at {result['clip_sigma']:g} sigma" if result["clip_sigma"] else "")


def format_report(results: Sequence[Dict], command: str, machine: str) -> str:
    """Markdown: the calibrations, their scatter and the cross-validated flag table (the
    first result is the shipped model; the raw display B flag is shown once, for reference)."""
    first = results[0]
    lines = [
        "# Giant flags on JPEG/PNG cut-outs: the u-band calibration",
        "",
        "The fit behind `PHOTOMETRY.DISPLAY_GIANT_CALIBRATION` (what it means: "
        "[photometry.md](photometry.md#giant-flags-on-jpegpng-cut-outs-calibrated-to-the-u-band)).",
        "",
        f"Written by `{command}` ({machine}).",
        "",
        f"{first['n_clumps']} catalogue clumps in {first['n_galaxies']} galaxies inside the "
        f"200 px crops ({first['n_off_centre']} off-centre, >= {CENTRE_FWHM:g} PSF FWHM from "
        f"the centre; {first['n_positive_b']} with a positive display B ratio), measured at "
        "their catalogue positions as the catalogue measures a detection. Model: "
        "log10 flux_ratio_B = a + b log10 f_u + c log10(flux_ratio_B / flux_ratio_R), fitted "
        "on the off-centre clumps with positive ratios, inverted for f_u. Scatter: log10 of "
        "predicted / catalogue u-band fraction over those clumps (robust = 1.4826 x MAD; bias "
        "= median).",
        "",
        "| model | a | b | c | clumps fitted (clipped) | scatter, dex: in-sample | "
        "leave one galaxy out | two folds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for res in results:
        cal: DisplayGiantCalibration = res["calibration"]
        sc = res["scatter"]

        def cell(key):
            s = sc.get(key)
            return "—" if s is None else (f"robust {s['robust']:.2f}, std {s['std']:.2f}, "
                                          f"bias {s['median']:+.2f}")

        lines.append(f"| {model_name(res)} | {cal.intercept:.3f} | {cal.slope:.3f} | "
                     f"{cal.colour:.3f} | {cal.n_fit} ({cal.n_clipped}) | "
                     f"{cell('in-sample (all galaxies)')} | {cell('leave one galaxy out')} | "
                     f"{cell('two folds (train <-> test)')} |")
    pairs = list(dict.fromkeys((row["clumps"], row["pct"]) for row in first["rows"]))
    lines += ["", "Flags against the paper's definition (catalogue u-band fraction >= p %). "
              "Each cell: purity (truly >= p % / flagged) and completeness (flagged / truly "
              ">= p %). Cross-validated estimates predict each galaxy with a fit that did not "
              "see it.", "",
              "| flag | estimate | " + " | ".join(
                  f"{pop}, {pct:g} %: purity | completeness" for pop, pct in pairs) + " |",
              "|---|---|" + "---|---|" * len(pairs)]

    def cells(rows):
        by = {(r["clumps"], r["pct"]): r for r in rows}
        out = []
        for key in pairs:
            r = by[key]
            out += [f"{_fmt(r['purity'])} ({r['n_both']} / {r['n_flagged']})",
                    f"{_fmt(r['completeness'])} ({r['n_both']} / {r['n_true']})"]
        return " | ".join(out)

    for res in results:
        for est in dict.fromkeys(r["estimate"] for r in res["rows"]
                                 if r["flag"] == "calibrated u"):
            rows = [r for r in res["rows"] if r["flag"] == "calibrated u" and r["estimate"] == est]
            lines.append(f"| calibrated u, {model_name(res)} | {est} | {cells(rows)} |")
    raw = [r for r in first["rows"] if r["flag"] == "raw display B"]
    lines.append(f"| raw display B ratio >= p % (uncalibrated) | — | {cells(raw)} |")
    lines += ["", f"Best in-sample cut at {first['rows'][0]['pct']:g} % (off-centre clumps): "
              "no threshold on one quantity does better on these galaxies.", ""]
    for name, lim in first["limits"].items():
        lines.append(f"* {name}: purity {lim['purity']:.2f}, completeness "
                     f"{lim['completeness']:.2f} ({lim['n_flagged']} flagged, "
                     f"{lim['n_true']} giants)")
    return "\n".join(lines) + "\n"


def run_giant_calibration(gzh_dir: str | os.PathLike, output: Optional[str | os.PathLike] = None,
                          options: Optional[PhotometryOptions] = None,
                          clumps_output: Optional[str | os.PathLike] = None,
                          command: str = "", galaxies: Optional[int] = None) -> List[Dict]:
    """Measure the GZH S82 clumps, fit the calibrations (B only, the shipped model; B +
    colour; B only clipped at 3 sigma), print the report and write it to ``output``
    (markdown); ``clumps_output`` gets the per-clump rows. Returns the :func:`calibrate`
    results, the shipped model first."""
    df = measure_catalogue_clumps(gzh_dir, options, galaxies)
    if clumps_output:
        from clump_d2.photometry.io import write_table

        write_table(df, clumps_output)
    # the shipped model first; then what was tried beside it, so the choice can be checked
    results = [calibrate(df), calibrate(df, colour=True), calibrate(df, clip_sigma=3.0)]
    text = format_report(results, command or "tools/measure_clumps.py calibrate-giant",
                         machine_description())
    print(text)
    cal = results[0]["calibration"]
    print("PHOTOMETRY.DISPLAY_GIANT_CALIBRATION "
          f"\"({cal.intercept:.3f}, {cal.slope:.3f}, {cal.colour:.3f})\"")
    if output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(text)
        logger.info("wrote %s", output)
    return results
