"""Write a photometry table by its extension (Parquet, CSV, FITS) with
:func:`clump_d2.data.tables.write_table`; a FITS table also gets each column's unit in its
header (``TUNITn``)."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Dict, Optional

import pandas as pd

from clump_d2.data.tables import table_format
from clump_d2.data.tables import write_table as _write_table

logger = logging.getLogger(__name__)


def write_table(df: pd.DataFrame, path: str | os.PathLike,
                units: Optional[Dict[str, str]] = None) -> Path:
    """Write ``df`` to ``path`` (format from the suffix); ``units`` go into a FITS header.

    Raises:
        ValueError: an unknown suffix, naming the file.
    """
    path = _write_table(df, path)
    if units and table_format(path) == "fits":
        _add_fits_units(path, units)
    logger.info("wrote %d rows to %s", len(df), path)
    return path


def _add_fits_units(path: Path, units: Dict[str, str]) -> None:
    """Units as plain ``TUNITn`` strings: FITS has no standard name for e.g. nanomaggies, and
    astropy drops a unit it cannot write natively."""
    from astropy.io import fits

    with fits.open(path, mode="update") as hdul:
        header = hdul[1].header
        for i in range(1, header["TFIELDS"] + 1):
            unit = units.get(header[f"TTYPE{i}"])
            if unit:
                header[f"TUNIT{i}"] = unit
