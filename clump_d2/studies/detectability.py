"""How detectable are a catalogue's clumps in the images a detector sees?

A census, per labelled dataset, in the statistic of the classical baseline
(:func:`clump_d2.baselines.classical.contrast_snr_map`: PSF-matched filter of the
unsharp-masked luminance, in units of its noise off the galaxy), of

* each **labelled clump**'s S/N: the map's maximum within ``max(1.5 px, 0.5 FWHM)`` of the
  catalogue position (positions are good to ~1-2 px);
* the **unlisted peaks**: local maxima inside the galaxy (:func:`census_region`, "the
  segment" below) more than 1.25 PSF FWHM (the distance rule's tolerance) from every
  labelled clump and from the galaxy centre (the bulge is a peak of the unsharp mask too):
  knots the labels leave out, plus noise;
* the **noise peaks** among them, two ways. Noise is symmetric and sources are not, so the
  noise makes as many negative peaks (local minima below -t) as positive ones: (a) *expected*:
  the density of negative peaks on the sky (off the galaxy) times the segment's area,
  right where the segment's noise is the sky's (faint discs; in display images the stretch
  compresses the noise of bright parts, so there it overestimates); (b) *at most*: the
  segment's own negative peaks, which also count the troughs between arms and knots and the
  unsharp mask's negative ring around a bright centre.

Per S/N threshold ``t`` this gives the completeness of an ideal finder that detects every
labelled clump with S/N >= t (``completeness``), the purity of a finder that reports every
peak >= t (``purity_all_peaks``: the labelled fraction of the peaks), and a lower bound on the
real knots the labels leave out (unlisted peaks minus the noise bound). It tells whether a
completeness/purity target is limited by the detector or by what the labels select among
the image's peaks; it is not a bound on every detector: colour and shape, which the luminance
S/N ignores, can separate listed from unlisted knots (the labels' own criteria used deeper
multi-band images; on the GZH S82 JPEGs colour does: see the baseline's ``min_colour``).
"""
from __future__ import annotations

import csv
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
from scipy import ndimage as ndi
from tqdm import tqdm

from clump_d2.baselines.classical import (
    ClassicalParams,
    contrast_snr_map,
    local_extrema,
    peak_colour,
)
from clump_d2.data.mapper import ClumpDatasetMapper
from clump_d2.structures import BOX_HALF_SIDE_PER_FWHM, clump_position

logger = logging.getLogger(__name__)

#: S/N thresholds of the summary table.
DEFAULT_THRESHOLDS = (2.0, 3.0, 4.0, 5.0, 7.0, 10.0)
#: Flux-fraction bins of the per-clump summary (the real-data table's bins).
FLUX_BINS = (0.0, 0.003, 0.01, 0.03, 1.0)
#: A peak belongs to a labelled clump within this many PSF FWHM (the distance rule).
LISTED_FWHM = BOX_HALF_SIDE_PER_FWHM
#: The colour summary compares labelled clumps and unlisted peaks above this S/N.
COLOUR_SNR = 4.0


@dataclass
class ImageCensus:
    """One image: S/N of its labelled clumps, unlisted peaks and negative peaks."""

    file_name: str
    clump_snr: np.ndarray  # (n_clumps,)
    clump_flux_fraction: np.ndarray  # (n_clumps,), NaN where the label has none
    unlisted_snr: np.ndarray  # positive peaks in the segment, not near a clump or the centre
    segment_negative_snr: np.ndarray  # -(S/N) of the segment's local minima (noise, troughs)
    segment_area_px: int
    sky_negative_snr: np.ndarray  # -(S/N) of the sky region's local minima (noise)
    sky_area_px: int
    # (B - R) / G of the contrast (``peak_colour``) at each clump's S/N maximum and at each
    # unlisted peak; NaN for images with fewer than three channels
    clump_colour: np.ndarray
    unlisted_colour: np.ndarray


def image_census(image: np.ndarray, psf_fwhm_px: float, clumps_xy: Sequence[Sequence[float]],
                 flux_fractions: Optional[Sequence[float]] = None, file_name: str = "image",
                 min_snr: float = 1.0, params=None) -> ImageCensus:
    """The census of one image ((H, W) or (H, W, C), the detector's view); ``clumps_xy``
    are continuous pixel positions (pixel i spans [i, i+1))."""
    fwhm = float(psf_fwhm_px)
    m = contrast_snr_map(image, fwhm, params)
    snr = m.snr
    h, w = snr.shape
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    xy = np.asarray(clumps_xy, dtype=np.float64).reshape(-1, 2)
    reach = max(1.5, 0.5 * fwhm)
    clump_snr = np.full(len(xy), np.nan)
    at = np.zeros((len(xy), 2), dtype=int)  # (row, col) of each clump's S/N maximum
    for k, (x, y) in enumerate(xy):
        if 0 <= x < w and 0 <= y < h:
            near = np.where(np.hypot(xx - x, yy - y) <= reach, snr, -np.inf)
            at[k] = np.unravel_index(np.argmax(near), near.shape)
            clump_snr[k] = snr[at[k, 0], at[k, 1]]
    region = census_region(m)
    peaks = local_extrema(snr, fwhm, params) & region & (snr >= min_snr)
    py, px = np.nonzero(peaks)
    cx, cy = m.centre[0] + 0.5, m.centre[1] + 0.5
    far = np.hypot(px + 0.5 - cx, py + 0.5 - cy) > LISTED_FWHM * fwhm
    for x, y in xy:
        far &= np.hypot(px + 0.5 - x, py + 0.5 - y) > LISTED_FWHM * fwhm
    minima = local_extrema(snr, fwhm, params, minima=True) & (snr <= -min_snr)
    sky = m.sky_region & ~m.mask & ~region
    e = (params or ClassicalParams()).edge_px  # the border where no extremum is looked for
    sky[:e], sky[-e:], sky[:, :e], sky[:, -e:] = False, False, False, False
    ff = np.full(len(xy), np.nan) if flux_fractions is None else \
        np.asarray([np.nan if f is None else f for f in flux_fractions], dtype=np.float64)
    py, px = py[far], px[far]
    if np.ndim(image) == 3 and np.shape(image)[2] >= 3:
        clump_colour = np.where(np.isfinite(clump_snr),
                                peak_colour(image, fwhm, at[:, 0], at[:, 1], params), np.nan)
        unlisted_colour = peak_colour(image, fwhm, py, px, params)
    else:
        clump_colour, unlisted_colour = np.full(len(xy), np.nan), np.full(len(py), np.nan)
    return ImageCensus(file_name, clump_snr, ff, snr[py, px], -snr[minima & region],
                       int(region.sum()), -snr[minima & sky], int(sky.sum()),
                       clump_colour, unlisted_colour)


def census_region(m, nsigma: float = 2.0) -> np.ndarray:
    """The galaxy region the census counts peaks in: the connected part holding the centre
    of the unsharp mask's smooth light (sigma 2 FWHM) above ``nsigma`` x its rms on the sky.

    Not the baseline's segment: that one is thresholded on a lightly smoothed image whose
    noise is correlated with the S/N map's, so it favours pixels where the noise happens to
    be positive (a faint disc's segment then holds more positive than negative noise peaks,
    and negative peaks would no longer count the noise). The smooth light carries
    only the low spatial frequencies the unsharp mask removed from the S/N map."""
    ref = m.background[m.sky_region]
    level = float(np.median(ref))
    rms = float(1.4826 * np.median(np.abs(ref - level))) or 1e-9
    labels, n = ndi.label(m.background > level + nsigma * rms)
    if n == 0:
        return np.zeros_like(m.mask)
    cx, cy = int(round(m.centre[0])), int(round(m.centre[1]))
    lab = labels[cy, cx]
    if lab == 0:
        idx = np.argwhere(labels > 0)
        lab = labels[tuple(idx[np.argmin(np.hypot(idx[:, 0] - cy, idx[:, 1] - cx))])]
    return labels == lab


def dataset_census(dataset_dicts: Sequence[Dict], read_image=None,
                   default_fwhm_px: float = 6.9) -> List[ImageCensus]:
    """:func:`image_census` of every record (Detectron2 dicts: ``file_name``, optional
    ``crop``, ``psf_fwhm_px``, ``annotations`` with ``bbox`` (XYWH_ABS) or ``x``/``y``, and
    ``flux_fraction``). ``read_image(record)`` defaults to the data loader's reader (so the
    crop and the FITS stretch are the detector's)."""
    if read_image is None:
        read_image = ClumpDatasetMapper(False, augmentations=[], image_format="RGB").read_image
    out = []
    for rec in tqdm(dataset_dicts, desc="detectability census", unit="image"):
        anns = rec.get("annotations", [])
        out.append(image_census(read_image(rec), float(rec.get("psf_fwhm_px") or default_fwhm_px),
                                [clump_position(a) for a in anns],
                                [a.get("flux_fraction") for a in anns],
                                file_name=os.path.basename(rec["file_name"])))
    return out


def _pooled(census: Sequence[ImageCensus], name: str) -> np.ndarray:
    """One per-image array field of every image, concatenated."""
    return np.concatenate([getattr(c, name) for c in census]) if census else np.zeros(0)


def summarise_census(census: Sequence[ImageCensus],
                     thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> Dict:
    """Per-threshold rows (see the module docstring) and per-flux-bin S/N of the clumps."""
    snr, ff = _pooled(census, "clump_snr"), _pooled(census, "clump_flux_fraction")
    colour = _pooled(census, "clump_colour")
    inside = np.isfinite(snr)
    snr, ff, colour = snr[inside], ff[inside], colour[inside]
    unlisted, unlisted_colour = _pooled(census, "unlisted_snr"), _pooled(census, "unlisted_colour")
    negative = _pooled(census, "segment_negative_snr")
    sky_negative = _pooled(census, "sky_negative_snr")
    sky_area = sum(c.sky_area_px for c in census)
    seg_area = sum(c.segment_area_px for c in census)
    rows = []
    for t in thresholds:
        n = int((snr >= t).sum())
        n_unlisted = int((unlisted >= t).sum())
        noise = int((negative >= t).sum())
        expected = float((sky_negative >= t).sum()) / sky_area * seg_area if sky_area \
            else float("nan")
        rows.append({
            "snr_threshold": float(t), "clumps_above": n, "clumps": int(len(snr)),
            "completeness": n / len(snr) if len(snr) else float("nan"),
            "unlisted_peaks_above": n_unlisted, "noise_peaks_expected": expected,
            "noise_peaks_at_most": noise,
            "unlisted_real_knots_at_least": max(0, n_unlisted - noise),
            "purity_all_peaks": n / (n + n_unlisted) if n + n_unlisted > 0 else float("nan"),
        })
    bins = []
    for lo, hi in zip(FLUX_BINS[:-1], FLUX_BINS[1:]):
        sel = (ff >= lo) & (ff < hi)
        bins.append({"flux_fraction": [lo, hi], "clumps": int(sel.sum()),
                     "median_snr": float(np.median(snr[sel])) if sel.any() else float("nan"),
                     **{f"fraction_snr_ge_{t:g}": float((snr[sel] >= t).mean())
                        if sel.any() else float("nan") for t in (3.0, 5.0)}})
    def bluer(values, sel):  # fraction bluer than grey, among the finite colours selected
        v = values[sel & np.isfinite(values)]
        return float((v > 0).mean()) if len(v) else float("nan")

    t_colour = COLOUR_SNR
    colour_rows = {"snr_threshold": t_colour,
                   "labelled_clumps_bluer_than_grey": bluer(colour, snr >= t_colour),
                   "unlisted_peaks_bluer_than_grey": bluer(unlisted_colour, unlisted >= t_colour)}
    return {"images": len(census), "clumps": int(len(snr)),
            "clumps_outside_image": int((~inside).sum()),
            "clump_snr_percentiles_10_25_50_75_90": np.percentile(snr, [10, 25, 50, 75, 90])
            .round(2).tolist() if len(snr) else [],
            "segment_area_px": int(seg_area), "sky_area_px": int(sky_area),
            "thresholds": rows, "flux_bins": bins, "colour": colour_rows}


def _fmt(v) -> str:
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def write_census(census: Sequence[ImageCensus], summary: Dict,
                 output_dir: str | os.PathLike) -> Dict[str, Path]:
    """``detectability_clumps.csv`` (one row per labelled clump), ``detectability.json``,
    ``detectability.md`` (the two tables) and ``detectability.png``."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "detectability_clumps.csv", "json": out / "detectability.json",
             "md": out / "detectability.md", "png": out / "detectability.png"}
    with open(paths["csv"], "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["file_name", "clump", "flux_fraction", "snr"])
        for c in census:
            for k, (s, fr) in enumerate(zip(c.clump_snr, c.clump_flux_fraction)):
                wr.writerow([c.file_name, k, "" if np.isnan(fr) else f"{fr:.6g}",
                             "" if np.isnan(s) else f"{s:.3f}"])
    paths["json"].write_text(json.dumps(summary, indent=2))
    keys = ["snr_threshold", "clumps_above", "completeness", "unlisted_peaks_above",
            "noise_peaks_expected", "noise_peaks_at_most", "unlisted_real_knots_at_least",
            "purity_all_peaks"]
    lines = ["| S/N >= | labelled clumps above | completeness | unlisted peaks above | of "
             "which noise, expected (sky) | of which noise, at most | real unlisted knots, "
             "at least | purity, every peak |",
             "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(_fmt(r[k]) for k in keys) + " |" for r in summary["thresholds"]]
    lines += ["", "| flux fraction | clumps | median S/N | S/N >= 3 | S/N >= 5 |",
              "|---|---|---|---|---|"]
    lines += [f"| {b['flux_fraction'][0]:g}-{b['flux_fraction'][1]:g} | {b['clumps']} | "
              f"{_fmt(b['median_snr'])} | {_fmt(b['fraction_snr_ge_3'])} | "
              f"{_fmt(b['fraction_snr_ge_5'])} |" for b in summary["flux_bins"]]
    c = summary["colour"]
    lines += ["", f"Bluer than grey ((B - R) / G > 0) at S/N >= {c['snr_threshold']:g}: "
              f"{_fmt(c['labelled_clumps_bluer_than_grey'])} of the labelled clumps, "
              f"{_fmt(c['unlisted_peaks_bluer_than_grey'])} of the unlisted peaks."]
    paths["md"].write_text("\n".join(lines) + "\n")
    _plot(census, paths["png"])
    return paths


def _plot(census, png):
    # Local: the Agg backend must be chosen before pyplot is imported, and only plots need it.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    snr = _pooled(census, "clump_snr")
    snr = snr[np.isfinite(snr)]
    unlisted, negative = _pooled(census, "unlisted_snr"), _pooled(census, "segment_negative_snr")
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    edges = np.arange(-4, 31, 1.0)
    a.hist(np.clip(snr, edges[0], edges[-1]), bins=edges, histtype="step", lw=2,
           label=f"labelled clumps ({len(snr)})")
    a.hist(np.clip(unlisted, edges[0], edges[-1]), bins=edges, histtype="step", lw=2,
           label=f"unlisted peaks ({len(unlisted)})")
    a.hist(np.clip(negative, edges[0], edges[-1]), bins=edges, histtype="step", lw=1.5,
           ls="--", label=f"negative peaks, sign flipped: noise at most ({len(negative)})")
    a.set_xlabel("matched-filter S/N (clipped to [-4, 30])")
    a.set_ylabel("count")
    a.legend(fontsize=8)
    rows = summarise_census(census, np.arange(1.0, 12.01, 0.25))["thresholds"]
    b.plot([r["completeness"] for r in rows], [r["purity_all_peaks"] for r in rows], ".-",
           label="every peak with S/N >= t, t = 1-12")
    for r in rows:
        if r["snr_threshold"] in (2.0, 3.0, 5.0, 8.0):
            b.annotate(f"S/N {r['snr_threshold']:g}", (r["completeness"], r["purity_all_peaks"]),
                       textcoords="offset points", xytext=(4, 6), fontsize=8)
    b.axvline(0.8, color="grey", lw=0.8)
    b.axhline(0.8, color="grey", lw=0.8, label="C = P = 0.8")
    b.set_xlabel("completeness (labelled clumps with S/N >= t)")
    b.set_ylabel("purity (labelled / all peaks >= t)")
    b.set_xlim(0, 1.02)
    b.set_ylim(0, 1.02)
    b.legend(fontsize=8, loc="upper right")
    fig.suptitle("Detectability of the labelled clumps (luminance matched filter)")
    fig.tight_layout()
    fig.savefig(png, dpi=80)
    plt.close(fig)
