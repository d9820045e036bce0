"""The clump catalogue: its columns, the rows of one galaxy, and reading it back.

Tables are written by :func:`clump_d2.data.tables.write_table` (atomic; Parquet, CSV, FITS).

One row per clump. A galaxy without clumps, or whose image could not be read, still has one
row (``clump_id`` 0, clump columns empty) so that every input galaxy appears with its
``galaxy_status``:

* ``ok``: clumps found; ``no_clumps``: read and searched, none above the threshold;
* ``unreadable: <reason>``: the image could not be read (missing, corrupt, wrong size...);
* ``failed: <reason>``: the model raised on this galaxy alone.
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
    ("galaxy_status", "string", "ok | no_clumps | unreadable: <reason> | failed: <reason>"),
    ("galaxy_n_clumps", "int64", "clumps of the galaxy in this catalogue"),
    ("sky_source", "string", "wcs | centre+scale | none"),
    ("image_width", "Int64", "image width, px (empty when unreadable)"),
    ("image_height", "Int64", "image height, px"),
    ("file_name", "string", "image path"),
]
COLUMN_NAMES = [c[0] for c in COLUMNS]


def galaxy_rows(record: Dict, status: str, det: Optional[Detections] = None,
                class_names: Sequence[str] = (), sky=None) -> List[Dict]:
    """Catalogue rows of one galaxy (at least one)."""
    width, height = record.get("width"), record.get("height")
    base = {
        "galaxy_id": str(record["galaxy_id"]),
        "galaxy_status": status,
        "sky_source": sky.source if sky is not None else "none",
        "image_width": int(width) if width is not None else None,
        "image_height": int(height) if height is not None else None,
        "file_name": str(record.get("file_name", "")),
    }
    n = 0 if det is None else len(det)
    base["galaxy_n_clumps"] = n
    if n == 0:
        return [dict(base, clump_id=0, class_id=-1, class_name="", score=np.nan, x1=np.nan,
                     y1=np.nan, x2=np.nan, y2=np.nan, x=np.nan, y=np.nan, ra=np.nan,
                     dec=np.nan, on_centre=False, n_merged=0)]
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
        ))
    return rows


def rows_to_frame(rows: Sequence[Dict]) -> pd.DataFrame:
    """Rows -> a DataFrame with exactly :data:`COLUMNS` (names, order, dtypes)."""
    df = pd.DataFrame(list(rows), columns=COLUMN_NAMES)
    return df.astype({name: dtype for name, dtype, _ in COLUMNS})


def galaxy_table(catalogue: pd.DataFrame) -> pd.DataFrame:
    """One row per galaxy (status, clump counts, image) from the clump catalogue, in the
    catalogue's galaxy order."""
    clumps = catalogue[catalogue["clump_id"] > 0]
    first = catalogue.drop_duplicates("galaxy_id", keep="first")
    table = first[["galaxy_id", "galaxy_status", "galaxy_n_clumps", "sky_source", "image_width",
                   "image_height", "file_name"]].rename(columns={"galaxy_n_clumps": "n_clumps"})
    on_centre = clumps[clumps["on_centre"]].groupby("galaxy_id").size()
    table = table.assign(n_on_centre=table["galaxy_id"].map(on_centre).fillna(0).astype("int64"))
    return table.reset_index(drop=True)


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a catalogue written by :func:`~clump_d2.data.tables.write_table` (any of its three
    formats), with the catalogue's text columns kept as text in CSV."""
    if table_format(path) == "csv":
        return pd.read_csv(path, dtype={"galaxy_id": str}, keep_default_na=False,
                           na_values={c: [""] for c in COLUMN_NAMES if c not in
                                      ("galaxy_id", "class_name", "galaxy_status",
                                       "sky_source", "file_name")})
    return data_read_table(path)
