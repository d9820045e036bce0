"""The clump catalogue: its columns, the rows of one galaxy, and reading it back.

Tables are written by :func:`clump_d2.data.tables.write_table` (atomic; Parquet, CSV, FITS).

One row per clump. A galaxy without clumps, or whose image could not be read, still has one
row (``clump_id`` 0, clump columns empty) so that every input galaxy appears with its
``galaxy_status``:

* ``ok``: clumps found; ``no_clumps``: read and searched, none above the threshold;
* ``unreadable: <reason>``: the image could not be read (missing, corrupt, wrong size...);
* ``failed: <reason>``: the model raised on this galaxy alone;
* ``bad_sky: <reason>``: searched as usual (``galaxy_n_clumps`` clumps), but its input sky
  values are impossible (``clump_d2.inference.inputs.sky_problem``: file, row, column), so
  it has no RA/Dec.

Photometry (``PHOTOMETRY.ENABLED``, :mod:`clump_d2.photometry`) adds the fixed columns of
:data:`COLUMNS` from ``phot_status`` on, and per band ``<b>`` of the image the columns of
:data:`BAND_COLUMNS` (FITS: the ``INPUT.FITS.BANDS``; PNG/JPEG: ``R``, ``G``, ``B``), then
``colour_<a>_<b>`` (FITS with zero points) and one ``is_giant_<p>pct`` per
``PHOTOMETRY.GIANT_THRESHOLDS_PCT``. :func:`column_units` gives every column's unit (the
``TUNITn`` of a FITS catalogue).
"""
from __future__ import annotations

import logging
import os
from typing import Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

from clump_d2.data.tables import read_table as data_read_table
from clump_d2.data.tables import table_format, write_table  # noqa: F401  (write_table: API)

from .postprocess import Detections

logger = logging.getLogger(__name__)

STATUS_OK = "ok"
STATUS_NO_CLUMPS = "no_clumps"
STATUS_UNREADABLE = "unreadable"
STATUS_FAILED = "failed"
STATUS_BAD_SKY = "bad_sky"
#: Record key of the reason a galaxy's sky values are impossible (set by inference.inputs).
SKY_PROBLEM_KEY = "sky_problem"

#: (name, dtype, meaning) of every catalogue column, in order; the README lists them.
COLUMNS = [
    ("galaxy_id", "string", "galaxy id from the input (catalogue id, COCO image id, or path)"),
    ("clump_id", "int64", "1..n within the galaxy by decreasing score; 0: galaxy row, no clump"),
    ("class_id", "int64", "contiguous class id (0 clump, 1 odd_clump); -1 on galaxy rows"),
    ("class_name", "string", "class name (MetadataCatalog thing_classes)"),
    ("score", "float64", "detection score"),
    ("x1", "float64", "box left edge, px (continuous coordinates: pixel i spans [i, i+1))"),
    ("y1", "float64", "box top edge, px"),
    ("x2", "float64", "box right edge, px"),
    ("y2", "float64", "box bottom edge, px"),
    ("x", "float64", "box centre, px"),
    ("y", "float64", "box centre, px (rows, downwards)"),
    ("ra", "float64", "RA of the box centre, deg (NaN without WCS or centre + pixel scale)"),
    ("dec", "float64", "Dec of the box centre, deg"),
    ("on_centre", "bool", "within INFERENCE.BULGE_FWHM x PSF FWHM of the galaxy centre"),
    ("n_merged", "int64", "detections merged into this one (closer than a PSF FWHM)"),
    ("galaxy_status", "string",
     "ok | no_clumps | unreadable: <reason> | failed: <reason> | bad_sky: <reason>"),
    ("galaxy_n_clumps", "int64", "clumps of the galaxy in this catalogue"),
    ("sky_source", "string", "wcs | centre+scale | none"),
    ("image_width", "Int64", "image width, px (empty when unreadable)"),
    ("image_height", "Int64", "image height, px"),
    ("crop_x0", "int64", "left edge of the part searched (INFERENCE.CENTRE_CROP), px: box and "
     "centre x in the whole image are x + crop_x0; 0 without a crop"),
    ("crop_y0", "int64", "top edge of the part searched, px (y + crop_y0 in the whole image)"),
    ("file_name", "string", "image path"),
    ("galaxy_n_outside_host", "int64",
     "detections of the galaxy dropped off its host (PHOTOMETRY.DROP_OUTSIDE_HOST), else 0"),
    ("phot_status", "string", "photometry of the clump: ok | nan_in_aperture | "
     "partial_aperture | no_host | no_psf | error: <message naming the file>; empty: not "
     "measured (galaxy row, or PHOTOMETRY.ENABLED False)"),
    ("photometry_kind", "string", "fits_ab (AB zero points known) | fits (stored units, no "
     "zero point) | display (PNG/JPEG, relative fluxes after undoing the display stretch)"),
    ("flux_unit", "string", "unit of every flux column of the row (BUNIT, 'stored units', or "
     "'display intensity (relative)')"),
    ("aperture_radius_px", "float64", "aperture radius, px (PHOTOMETRY.APERTURE_FWHM x FWHM)"),
    ("aperture_correction", "float64", "fraction of a point source inside the aperture"),
    ("in_host", "bool", "the clump centre lies on the host galaxy's segment"),
    ("phot_flag_nan", "bool", "a NaN/inf pixel inside the aperture: this clump's fluxes NaN"),
    ("phot_flag_partial", "bool", "the aperture crosses the image edge (flux from the part in)"),
    ("giant_band", "string", "band of the is_giant flags (e.g. u; 'u (calibrated from display)' "
     "for PNG/JPEG with PHOTOMETRY.DISPLAY_GIANT_CALIBRATION, else 'B (display)')"),
    ("flux_ratio_u_est", "float64", "PNG/JPEG: the u-band clump/host fraction predicted from "
     "the display B ratio (PHOTOMETRY.DISPLAY_GIANT_CALIBRATION, fitted on real catalogued "
     "clumps; scatter ~0.2-0.3 dex, docs/photometry.md); the is_giant flags cut it. NaN for "
     "FITS input (true photometry), without a calibration, or for a ratio <= 0"),
    ("host_r50_px", "float64", "host half-light radius, px: half of the host segment's light "
     "on its detection image lies within it (at least the PSF FWHM, as in the injections); "
     "NaN when not measured or no host"),
    ("distance_r50", "float64", "distance of the clump centre from the galaxy centre, in "
     "host_r50_px"),
    ("p_detect", "float64", "estimated detection probability: the selection function's "
     "completeness (INFERENCE.SELECTION_FUNCTION) at the clump's flux fraction in its band "
     "(r: flux_ratio_G of gri JPEGs) and distance_r50, host class from the input's host_class "
     "(else all hosts); NaN without a selection function or photometry. Completeness-"
     "corrected count: sum of 1 / p_detect over clumps with p_detect >= 0.5"),
]
COLUMN_NAMES = [c[0] for c in COLUMNS]

#: (template, unit, meaning) of the per-band photometry columns; ``<b>`` is the band.
BAND_COLUMNS = [
    ("flux_<b>", "flux_unit", "clump flux, aperture-corrected, local host background removed"),
    ("flux_err_<b>", "flux_unit", "its 1-sigma error from the sky noise"),
    ("flux_psf_<b>", "flux_unit", "PSF-fit flux (Gaussian PSF, joint with the background)"),
    ("mag_<b>", "mag", "AB magnitude (NaN without a zero point or for flux <= 0)"),
    ("mag_err_<b>", "mag", "its error"),
    ("host_flux_<b>", "flux_unit", "flux of the host galaxy's segment"),
    ("flux_ratio_<b>", "", "clump / host flux (a fraction, not per cent)"),
    ("colour_<a>_<b>", "mag", "mag_<a> - mag_<b> of neighbouring bands (zero points known)"),
    ("is_giant_<p>pct", "", "flux_ratio in giant_band >= p per cent (calibrated PNG/JPEG: "
     "flux_ratio_u_est >= p per cent; False when not measured)"),
]
_FLOAT_PREFIXES = ("flux_", "flux_err_", "flux_psf_", "mag_", "mag_err_", "host_flux_",
                   "flux_ratio_", "colour_")
_TEXT_DEFAULTS = {"phot_status": "", "photometry_kind": "", "flux_unit": "", "giant_band": ""}


def is_band_column(name: str) -> bool:
    """Whether ``name`` is a per-band photometry column (:data:`BAND_COLUMNS`)."""
    return name not in COLUMN_NAMES and (name.startswith(_FLOAT_PREFIXES)
                                         or name.startswith("is_giant_"))


def column_units(columns: Sequence[str], flux_unit: str = "") -> Dict[str, str]:
    """Unit of each catalogue column that has one (FITS ``TUNITn``): pixels, degrees, the
    flux unit (when one for the whole catalogue), magnitudes."""
    units = {c: "pix" for c in ("x1", "y1", "x2", "y2", "x", "y", "image_width",
                                "image_height", "crop_x0", "crop_y0", "aperture_radius_px",
                                "host_r50_px")}
    units.update(ra="deg", dec="deg")
    for col in columns:
        if col.startswith(("mag_", "colour_")):
            units[col] = "mag"
        elif flux_unit and col.startswith(("flux_", "host_flux_")) and not col.startswith(
                ("flux_ratio_", "flux_unit")):
            units[col] = flux_unit
    return {c: u for c, u in units.items() if c in set(columns)}


def galaxy_rows(record: Dict, status: str, det: Optional[Detections] = None,
                class_names: Sequence[str] = (), sky=None,
                photometry: Optional[pd.DataFrame] = None, n_outside_host: int = 0
                ) -> List[Dict]:
    """Catalogue rows of one galaxy (at least one).

    Args:
        photometry: one row per detection of ``det`` (:func:`clump_d2.photometry.measure_image`
            columns, its ``status`` becoming ``phot_status``), or None (not measured).
        n_outside_host: detections dropped off the host before ``det``.

    A searched galaxy (``ok`` / ``no_clumps``) whose record carries :data:`SKY_PROBLEM_KEY` and
    has no WCS to fall back on gets ``bad_sky: <reason>`` instead: its RA/Dec would be wrong.
    """
    width, height = record.get("width"), record.get("height")
    if (record.get(SKY_PROBLEM_KEY) and sky is None
            and status in (STATUS_OK, STATUS_NO_CLUMPS)):
        status = f"{STATUS_BAD_SKY}: {record[SKY_PROBLEM_KEY]}"
    base = {
        "galaxy_id": str(record["galaxy_id"]),
        "galaxy_status": status,
        "sky_source": sky.source if sky is not None else "none",
        "image_width": int(width) if width is not None else None,
        "image_height": int(height) if height is not None else None,
        "crop_x0": int(record["crop"][0]) if record.get("crop") else 0,
        "crop_y0": int(record["crop"][1]) if record.get("crop") else 0,
        "file_name": str(record.get("file_name", "")),
        "galaxy_n_outside_host": int(n_outside_host),
    }
    n = 0 if det is None else len(det)
    base["galaxy_n_clumps"] = n
    if n == 0:
        return [dict(base, clump_id=0, class_id=-1, class_name="", score=np.nan, x1=np.nan,
                     y1=np.nan, x2=np.nan, y2=np.nan, x=np.nan, y=np.nan, ra=np.nan,
                     dec=np.nan, on_centre=False, n_merged=0)]
    phot_rows: List[Dict] = [{}] * n
    if photometry is not None:
        if len(photometry) != n:
            raise ValueError(f"galaxy {record['galaxy_id']}: {len(photometry)} photometry rows "
                             f"for {n} detections")
        phot_rows = photometry.rename(columns={"status": "phot_status"}).to_dict("records")
    centres = det.centres
    if sky is not None:
        ra, dec = sky(centres[:, 0], centres[:, 1])
    else:
        ra = dec = np.full(n, np.nan)
    rows = []
    for k in range(n):
        cls = int(det.classes[k])
        rows.append(dict(
            base, clump_id=k + 1, class_id=cls,
            class_name=class_names[cls] if 0 <= cls < len(class_names) else str(cls),
            score=float(det.scores[k]), x1=float(det.boxes[k, 0]), y1=float(det.boxes[k, 1]),
            x2=float(det.boxes[k, 2]), y2=float(det.boxes[k, 3]), x=float(centres[k, 0]),
            y=float(centres[k, 1]), ra=float(ra[k]), dec=float(dec[k]),
            on_centre=bool(det.on_centre[k]), n_merged=int(det.n_merged[k]),
            **phot_rows[k],
        ))
    return rows


def rows_to_frame(rows: Sequence[Dict]) -> pd.DataFrame:
    """Rows -> a DataFrame with :data:`COLUMNS` (names, order, dtypes) followed by the
    per-band photometry columns the rows have (:func:`conform`)."""
    rows = list(rows)
    extra: Dict[str, None] = {}  # ordered set: band columns in order of first appearance
    for row in rows:
        for key in row:
            if key not in extra and is_band_column(key):
                extra[key] = None
    return conform(pd.DataFrame(rows, columns=COLUMN_NAMES + list(extra)))


def conform(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with :data:`COLUMNS` first and their dtypes; per-band columns after, as
    float64 (missing: NaN) or bool (``is_giant_*``, missing: False); texts missing -> "".
    Merging shards whose galaxies had different bands (or none measured) gives one schema."""
    df = df.copy()
    for name in COLUMN_NAMES:
        if name not in df:
            df[name] = np.nan
    for name, default in _TEXT_DEFAULTS.items():
        df[name] = df[name].where(df[name].notna(), default)
    for name in ("in_host", "phot_flag_nan", "phot_flag_partial"):
        df[name] = df[name].where(df[name].notna(), False)
    df["galaxy_n_outside_host"] = df["galaxy_n_outside_host"].fillna(0)
    extra = [c for c in df.columns if c not in COLUMN_NAMES]
    dtypes = {name: dtype for name, dtype, _ in COLUMNS}
    for c in extra:
        if c.startswith("is_giant_"):
            df[c] = df[c].where(df[c].notna(), False)
            dtypes[c] = "bool"
        else:
            dtypes[c] = "float64"
    return df[COLUMN_NAMES + extra].astype(dtypes)


def galaxy_table(catalogue: pd.DataFrame) -> pd.DataFrame:
    """One row per galaxy (status, clump counts, image) from the clump catalogue, in the
    catalogue's galaxy order."""
    clumps = catalogue[catalogue["clump_id"] > 0]
    first = catalogue.drop_duplicates("galaxy_id", keep="first")
    table = first[["galaxy_id", "galaxy_status", "galaxy_n_clumps", "sky_source", "image_width",
                   "image_height", "file_name", "galaxy_n_outside_host"]].rename(
        columns={"galaxy_n_clumps": "n_clumps", "galaxy_n_outside_host": "n_outside_host"})
    on_centre = clumps[clumps["on_centre"]].groupby("galaxy_id").size()
    table = table.assign(n_on_centre=table["galaxy_id"].map(on_centre).fillna(0).astype("int64"))
    for flag in [c for c in catalogue.columns if c.startswith("is_giant_")]:
        counts = clumps[clumps[flag]].groupby("galaxy_id").size()
        table[f"n_{flag[3:]}"] = table["galaxy_id"].map(counts).fillna(0).astype("int64")
    return table.reset_index(drop=True)


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a catalogue written by :func:`~clump_d2.data.tables.write_table` (any of its three
    formats), with the catalogue's text columns kept as text in CSV."""
    if table_format(path) == "csv":
        header = pd.read_csv(path, nrows=0).columns
        text = ("galaxy_id", "class_name", "galaxy_status", "sky_source", "file_name",
                *_TEXT_DEFAULTS)
        return pd.read_csv(path, dtype={c: str for c in text if c in header},
                           keep_default_na=False,
                           na_values={c: [""] for c in header if c not in text})
    return data_read_table(path)
