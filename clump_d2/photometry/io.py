"""Write a photometry table by its extension: Parquet, CSV/TSV, or a FITS binary table whose
header carries each column's unit (``TUNITn``).

(``clump_d2.data.tables`` reads tables; this small writer lives here until it has a writer.)
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Dict, Optional

import pandas as pd

logger = logging.getLogger(__name__)

FITS_SUFFIXES = (".fits", ".fit", ".fts")


def write_table(df: pd.DataFrame, path: str | os.PathLike,
                units: Optional[Dict[str, str]] = None) -> Path:
    """Write ``df`` to ``path`` (format from the suffix); ``units`` go into a FITS header.

    Raises:
        ValueError: an unknown suffix, naming the file.
    """
    path = Path(path)
    name = path.name.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    if name.endswith(".parquet"):
        df.to_parquet(path, index=False)
    elif name.endswith((".csv", ".tsv", ".tab")):
        df.to_csv(path, index=False, sep="\t" if not name.endswith(".csv") else ",")
    elif name.endswith(FITS_SUFFIXES):
        _write_fits(df, path, units or {})
    else:
        raise ValueError(f"cannot write table {path}: use .parquet, .csv, .tsv or .fits")
    logger.info("wrote %d rows to %s", len(df), path)
    return path


def _write_fits(df: pd.DataFrame, path: Path, units: Dict[str, str]) -> None:
    from astropy.io import fits
    from astropy.table import Table

    Table.from_pandas(df.reset_index(drop=True)).write(path, format="fits", overwrite=True)
    # Units as plain TUNITn strings: FITS has no standard name for e.g. nanomaggies, and
    # astropy would drop a unit it cannot write natively.
    with fits.open(path, mode="update") as hdul:
        header = hdul[1].header
        for i in range(1, header["TFIELDS"] + 1):
            unit = units.get(header[f"TTYPE{i}"])
            if unit:
                header[f"TUNIT{i}"] = unit
