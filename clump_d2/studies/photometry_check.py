"""Display photometry of real catalogue clumps against the catalogue's own flux ratios.

The GZH Stripe 82 galaxies (``gzh_s82_clumps``: 24 SDSS coadd colour JPEGs and Mehta et al.
2021's clumps, measured by them with SExtractor on PSF-matched u/g/r/i FITS) are prepared by
:func:`clump_d2.convert.gzh_s82.prepare_gzh_s82`; each catalogue clump in the central
200 px crop is measured by :func:`clump_d2.photometry.measure.measure_image` on the whole
424 px JPEG, linearised by undoing the Lupton display stretch (``DisplayStretch``, Q = 10),
host segment from the linearised luminance. The JPEG channels are SDSS (i, r, g) -> (R, G, B),
so the measured G-channel clump/host flux ratio is compared with the catalogue's r-band
``clump_flux_r / gal_flux_r`` (the converter's ``flux_fraction``), and B with g, R with i.

Reported per channel: clumps measured, those with a positive measured ratio, the Spearman
rank correlation, and in dex (log10 measured / catalogue) the median offset, the standard
deviation and the robust scatter (1.4826 x MAD). The JPEG stretch is not known exactly and
the catalogue's host flux is a model magnitude of the whole galaxy (ours: the segment of a
display image), so an offset is expected; the rank correlation and the scatter are the point.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pandas as pd

from clump_d2.convert.gzh_s82 import CROP_OFFSET, gzh_paths, prepare_gzh_s82
from clump_d2.photometry.images import load_photometry_image
from clump_d2.photometry.io import write_table
from clump_d2.photometry.measure import PhotometryOptions, measure_image

logger = logging.getLogger(__name__)

#: JPEG channel -> catalogue band (SDSS gri composites: R = i, G = r, B = g).
CHANNEL_BANDS = {"G": "r", "B": "g", "R": "i"}


def measure_gzh_clumps(gzh_dir: str | os.PathLike, dataset_dir: Optional[str] = None,
                       options: Optional[PhotometryOptions] = None) -> pd.DataFrame:
    """One row per catalogue clump of the crops: the display photometry and the catalogue's
    per-band clump/host flux ratios (``cat_ratio_<band>``)."""
    from astropy.table import Table

    gzh_dir = Path(gzh_dir)
    paths = gzh_paths(gzh_dir)
    with tempfile.TemporaryDirectory() as tmp:
        if dataset_dir and (Path(dataset_dir) / "annotations" / "all.json").is_file():
            json_file = Path(dataset_dir) / "annotations" / "all.json"
        else:
            json_file = prepare_gzh_s82(gzh_dir, Path(tmp) / "gzh_s82c")["all"]
        coco = json.loads(Path(json_file).read_text())
    catalogue = Table.read(paths["clumps"]).to_pandas()
    options = options or PhotometryOptions()
    by_image: Dict[int, List[Dict]] = {}
    for ann in coco["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    rows = []
    for im in coco["images"]:
        anns = by_image.get(im["id"], [])
        if not anns:
            continue
        image = load_photometry_image(paths["images"] / Path(im["file_name"]).name,
                                      display_q=options.display_q)
        x0, y0 = im.get("crop", [CROP_OFFSET, CROP_OFFSET])[:2]
        xy = np.array([[a["x"] + x0, a["y"] + y0] for a in anns])
        centre = (im["centre_x"] + x0, im["centre_y"] + y0)
        phot = measure_image(image, xy, im["psf_fwhm_px"], centre, options)
        for a, (_, p) in zip(anns, phot.iterrows()):
            row = {"galaxy_id": im["galaxy_id"], "clump_id": a.get("clump_id"),
                   "x": a["x"], "y": a["y"], "psf_fwhm_px": im["psf_fwhm_px"],
                   "distance_px": a.get("distance_px"), **p.to_dict()}
            src = catalogue.iloc[int(a["source_row"])]
            for band in "ugriz":
                row[f"cat_ratio_{band}"] = float(src[f"clump_flux_{band}"]
                                                 / src[f"gal_flux_{band}"])
            row["cat_flux_fraction"] = a.get("flux_fraction")
            rows.append(row)
    return pd.DataFrame(rows)


def compare_ratios(df: pd.DataFrame) -> pd.DataFrame:
    """Spearman correlation and scatter (dex) of measured vs catalogue ratios per channel."""
    from scipy.stats import spearmanr

    out = []
    for channel, band in CHANNEL_BANDS.items():
        measured = df[f"flux_ratio_{channel}"].to_numpy(dtype=np.float64)
        cat = df[f"cat_ratio_{band}"].to_numpy(dtype=np.float64)
        finite = np.isfinite(measured) & np.isfinite(cat) & (cat > 0)
        pos = finite & (measured > 0)
        rho = spearmanr(measured[finite], cat[finite]).statistic if finite.sum() > 2 else np.nan
        dex = np.log10(measured[pos] / cat[pos])
        mad = np.median(np.abs(dex - np.median(dex))) if dex.size else np.nan
        out.append({"channel": channel, "catalogue_band": band, "clumps": int(finite.sum()),
                    "positive": int(pos.sum()), "spearman_rho": float(rho),
                    "offset_dex": float(np.median(dex)) if dex.size else np.nan,
                    "std_dex": float(dex.std()) if dex.size else np.nan,
                    "robust_scatter_dex": float(1.4826 * mad)})
    return pd.DataFrame(out)


def run_photometry_check(gzh_dir: str | os.PathLike, dataset_dir: Optional[str] = None,
                         options: Optional[PhotometryOptions] = None,
                         output: Optional[str | os.PathLike] = None) -> pd.DataFrame:
    """Measure, compare, print the table; optionally write the per-clump rows (``output``)."""
    df = measure_gzh_clumps(gzh_dir, dataset_dir, options)
    if output:
        write_table(df, output)
    summary = compare_ratios(df)
    print(f"GZH S82 display photometry: {len(df)} catalogue clumps in "
          f"{df['galaxy_id'].nunique()} galaxies (crop), measured on the linearised JPEGs")
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return summary
