"""Read a table (CSV, TSV, Parquet or a FITS binary table) into pandas, naming the file on
failure. Pickles are refused: unpickling runs code (convert them once with
``pandas.read_pickle(p).to_csv(...)`` on a machine you trust)."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd

logger = logging.getLogger(__name__)

FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz")


def read_table(path: str | os.PathLike, **csv_kwargs) -> pd.DataFrame:
    """The table at ``path`` as a DataFrame (format from the file name).

    Raises:
        FileNotFoundError / ValueError: naming ``path``.
    """
    path = Path(path)
    name = path.name.lower()
    if not path.is_file():
        raise FileNotFoundError(f"table {path} does not exist")
    try:
        if name.endswith((".pkl", ".pickle")):
            raise ValueError("pickles are not read (unpickling runs code); convert it to CSV or "
                             "Parquet first")
        if name.endswith(".parquet"):
            return pd.read_parquet(path)
        if name.endswith(FITS_SUFFIXES):
            return _read_fits_table(path)
        sep = "\t" if name.endswith((".tsv", ".tab")) else ","
        return pd.read_csv(path, sep=sep, **csv_kwargs)
    except (FileNotFoundError, ValueError) as e:
        if str(path) in str(e):
            raise
        raise ValueError(f"cannot read table {path}: {e}") from e
    except Exception as e:  # parser errors of pandas/pyarrow/astropy: re-raised with the file
        raise ValueError(f"cannot read table {path}: {type(e).__name__}: {e}") from e


def _read_fits_table(path: Path) -> pd.DataFrame:
    from astropy.table import Table

    table = Table.read(path)
    # Multidimensional columns cannot live in a DataFrame; they are not needed here.
    names = [n for n in table.colnames if len(table[n].shape) <= 1]
    df = table[names].to_pandas()
    for col in df.columns:  # FITS strings arrive as bytes on some astropy versions
        if df[col].dtype == object and len(df) and isinstance(df[col].iloc[0], bytes):
            df[col] = df[col].str.decode("utf-8").str.strip()
    return df
